package events

import (
	"encoding/json"
	"slices"
	"strings"
)

// Entity classes Sensu itself creates, in Entity.EntityClass. Any other non-empty class
// (the reference documentation uses "service") is accepted too.
const (
	EntityAgent   = "agent"
	EntityProxy   = "proxy"
	EntityBackend = "backend"
)

// DefaultRedact returns the attribute names an entity redacts when it sets none itself.
func DefaultRedact() []string {
	return []string{
		"password", "passwd", "pass", "api_key", "api_token", "access_key", "secret_key", "private_key", "secret",
	}
}

// Entity is something monitored: an agent's host, a proxy for a remote thing, a backend.
type Entity struct {
	Metadata          ObjectMeta     `json:"metadata"`
	EntityClass       string         `json:"entity_class"`
	System            System         `json:"system"`
	Subscriptions     []string       `json:"subscriptions"`
	LastSeen          int64          `json:"last_seen"`
	Deregister        bool           `json:"deregister"`
	Deregistration    Deregistration `json:"deregistration"`
	User              string         `json:"user,omitempty"`
	Redact            []string       `json:"redact,omitempty"`
	SensuAgentVersion string         `json:"sensu_agent_version"`
	KeepaliveHandlers []string       `json:"keepalive_handlers,omitempty"`

	extra map[string]json.RawMessage
}

// System describes an entity's host, as its agent reports it.
type System struct {
	Hostname        string  `json:"hostname,omitempty"`
	OS              string  `json:"os,omitempty"`
	Platform        string  `json:"platform,omitempty"`
	PlatformFamily  string  `json:"platform_family,omitempty"`
	PlatformVersion string  `json:"platform_version,omitempty"`
	Network         Network `json:"network"`
	Arch            string  `json:"arch,omitempty"`
	ARMVersion      int32   `json:"arm_version,omitempty"`
	LibCType        string  `json:"libc_type"`
	VMSystem        string  `json:"vm_system"`
	VMRole          string  `json:"vm_role"`
	// CloudProvider and Processes are kept as given (the agent reports "", null or objects).
	CloudProvider json.RawMessage `json:"cloud_provider"`
	FloatType     string          `json:"float_type,omitempty"`
	Processes     json.RawMessage `json:"processes"`

	extra map[string]json.RawMessage
}

// Network lists an entity's network interfaces.
type Network struct {
	Interfaces []NetworkInterface `json:"interfaces"`
}

// NetworkInterface is one network interface of an entity.
type NetworkInterface struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac,omitempty"`
	Addresses []string `json:"addresses"`
}

// Deregistration names the handler that runs when an entity is deregistered.
type Deregistration struct {
	Handler string `json:"handler,omitempty"`
}

// Meta returns the entity's metadata.
func (e *Entity) Meta() *ObjectMeta { return &e.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (e Entity) MarshalJSON() ([]byte, error) { return marshalKeeping(&e, e.extra) }

// UnmarshalJSON reads an entity and keeps keys it does not know.
func (e *Entity) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, e)
	e.extra = extra
	return err
}

// MarshalJSON writes every field, including unknown ones read earlier.
func (s System) MarshalJSON() ([]byte, error) { return marshalKeeping(&s, s.extra) }

// UnmarshalJSON reads system facts and keeps keys it does not know.
func (s *System) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, s)
	s.extra = extra
	return err
}

// Validate reports every problem with the entity.
func (e *Entity) Validate() error {
	var p problems
	e.validate(&p, "")
	return p.err()
}

func (e *Entity) validate(p *problems, prefix string) {
	p.meta(prefix, e.Metadata)
	if e.EntityClass == "" {
		p.add(prefix+"entity_class", "required; set agent, proxy or another class such as service")
	}
	p.nonEmptyItems(prefix+"subscriptions", e.Subscriptions)
}

// EntitySubscription is the subscription every entity has to itself, "entity:<name>".
func EntitySubscription(name string) string { return "entity:" + name }

// WithEntitySubscription returns subs trimmed, without empty entries and duplicates, in
// order, with the entity's own subscription added when missing.
func WithEntitySubscription(subs []string, name string) []string {
	out := []string{}
	for _, s := range subs {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if own := EntitySubscription(name); !slices.Contains(out, own) {
		out = append(out, own)
	}
	return out
}

// setDefaults adds the entity's own subscription and the default redact list.
func (e *Entity) setDefaults() {
	if e.Metadata.Name != "" {
		own := EntitySubscription(e.Metadata.Name)
		if !slices.Contains(e.Subscriptions, own) {
			e.Subscriptions = append(e.Subscriptions, own)
		}
	}
	if len(e.Redact) == 0 {
		e.Redact = DefaultRedact()
	}
}
