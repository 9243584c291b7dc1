package agent

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/picketmon/picket/events"
)

// Redacted replaces the value of every redacted label and annotation in the entity sent.
const Redacted = "REDACTED"

// entityState is the agent's entity: what its configuration says, and what an
// entity_config from a backend changed of it.
type entityState struct {
	cfg *Config

	mu            sync.Mutex
	subscriptions []string
	labels        map[string]string
	annotations   map[string]string
	backendOwned  bool
}

func newEntityState(cfg *Config) *entityState {
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ManagedByLabel] = ManagedByAgent
	return &entityState{
		cfg:           cfg,
		subscriptions: events.WithEntitySubscription(cfg.Subscriptions, cfg.Name),
		labels:        labels,
		annotations:   maps.Clone(cfg.Annotations),
	}
}

// Subscriptions returns the subscriptions the agent reports.
func (s *entityState) Subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.subscriptions)
}

// Entity returns the entity to send now, with redacted labels and annotations.
func (s *entityState) Entity() *events.Entity {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg
	e := &events.Entity{
		EntityClass:       events.EntityAgent,
		System:            c.System,
		Subscriptions:     slices.Clone(s.subscriptions),
		LastSeen:          time.Now().Unix(),
		Deregister:        c.Deregister,
		User:              c.User,
		Redact:            slices.Clone(c.Redact),
		SensuAgentVersion: c.Version,
		KeepaliveHandlers: slices.Clone(c.KeepaliveHandlers),
	}
	if c.Deregister {
		e.Deregistration.Handler = c.DeregistrationHandler
	}
	e.Metadata.Name = c.Name
	e.Metadata.Namespace = c.Namespace
	e.Metadata.Labels = redact(s.labels, c.Redact)
	e.Metadata.Annotations = redact(s.annotations, c.Redact)
	return e
}

// redact copies m, replacing the values of keys listed in keys (case-insensitively).
func redact(m map[string]string, keys []string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		for _, r := range keys {
			if strings.EqualFold(k, r) {
				v = Redacted
				break
			}
		}
		out[k] = v
	}
	return out
}

// Apply takes an entity_config from a backend into account and reports whether it
// changed anything (see the package documentation for the rule).
func (s *entityState) Apply(e *events.Entity) bool {
	if e == nil || e.Metadata.Name != s.cfg.Name {
		return false
	}
	if e.Metadata.Labels[ManagedByLabel] == ManagedByAgent || e.System.Hostname == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backendOwned = true
	s.subscriptions = events.WithEntitySubscription(e.Subscriptions, s.cfg.Name)
	s.labels = maps.Clone(e.Metadata.Labels)
	s.annotations = maps.Clone(e.Metadata.Annotations)
	// A redacted value coming back must not replace the real one.
	for k, v := range s.cfg.Labels {
		if s.labels[k] == Redacted {
			s.labels[k] = v
		}
	}
	for k, v := range s.cfg.Annotations {
		if s.annotations[k] == Redacted {
			s.annotations[k] = v
		}
	}
	return true
}
