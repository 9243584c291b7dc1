package events

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Handler types, in Handler.Type. An empty type means pipe.
const (
	HandlerPipe = "pipe"
	HandlerTCP  = "tcp"
	HandlerUDP  = "udp"
	HandlerSet  = "set"
)

// Handler acts on events: runs a command (pipe), sends them to a socket (tcp, udp), or
// passes them to other handlers (set).
type Handler struct {
	Metadata      ObjectMeta `json:"metadata"`
	Type          string     `json:"type"`
	Mutator       string     `json:"mutator,omitempty"`
	Command       string     `json:"command,omitempty"`
	Timeout       int64      `json:"timeout"`
	Socket        *Socket    `json:"socket,omitempty"`
	Handlers      []string   `json:"handlers"`
	Filters       []string   `json:"filters"`
	EnvVars       []string   `json:"env_vars"`
	RuntimeAssets []string   `json:"runtime_assets"`
	Secrets       []Secret   `json:"secrets,omitempty"`

	extra map[string]json.RawMessage
}

// Socket is where a tcp or udp handler sends events.
type Socket struct {
	Host string `json:"host"`
	Port uint32 `json:"port"`
}

// Meta returns the handler's metadata.
func (h *Handler) Meta() *ObjectMeta { return &h.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (h Handler) MarshalJSON() ([]byte, error) { return marshalKeeping(&h, h.extra) }

// UnmarshalJSON reads a handler and keeps keys it does not know.
func (h *Handler) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, h)
	h.extra = extra
	return err
}

// Validate reports every problem with the handler.
func (h *Handler) Validate() error {
	var p problems
	p.meta("", h.Metadata)
	p.nonNegative("timeout", h.Timeout)
	switch h.Type {
	case "", HandlerPipe:
		if h.Command == "" {
			p.add("command", "required for a pipe handler; set the command that receives the event on stdin")
		}
	case HandlerTCP, HandlerUDP:
		switch {
		case h.Socket == nil:
			p.add("socket", "required for a %s handler; set socket.host and socket.port", h.Type)
		default:
			if h.Socket.Host == "" {
				p.add("socket.host", "required for a %s handler; set the host to send events to", h.Type)
			}
			if h.Socket.Port < 1 || h.Socket.Port > 65535 {
				p.add("socket.port", "must be a port from 1 to 65535 (got %d)", h.Socket.Port)
			}
		}
	case HandlerSet:
		if len(h.Handlers) == 0 {
			p.add("handlers", "a set handler needs at least one handler to pass events to")
		}
		if h.Command != "" {
			p.add("command", "a set handler runs no command; remove command or use type pipe")
		}
	default:
		p.add("type", "%q is not a handler type; use pipe, tcp, udp or set", h.Type)
	}
	p.nonEmptyItems("handlers", h.Handlers)
	p.nonEmptyItems("filters", h.Filters)
	for i, n := range h.Handlers {
		if h.Type == HandlerSet && n == h.Metadata.Name && n != "" {
			p.add(fmt.Sprintf("handlers[%d]", i), "a set handler cannot contain itself")
		}
	}
	for i, s := range h.Secrets {
		if s.Name == "" || s.Secret == "" {
			p.add(fmt.Sprintf("secrets[%d]", i), "needs both name and secret")
		}
	}
	return p.err()
}

// Event filter actions, in EventFilter.Action.
const (
	FilterAllow = "allow"
	FilterDeny  = "deny"
)

// EventFilter decides whether an event reaches a handler. allow passes an event only if
// every expression is true; deny drops it if any expression is true.
type EventFilter struct {
	Metadata      ObjectMeta `json:"metadata"`
	Action        string     `json:"action"`
	Expressions   []string   `json:"expressions"`
	RuntimeAssets []string   `json:"runtime_assets"`
	// When is a time window (Sensu's legacy "when" days); kept as given.
	When json.RawMessage `json:"when,omitempty"`

	extra map[string]json.RawMessage
}

// Meta returns the filter's metadata.
func (f *EventFilter) Meta() *ObjectMeta { return &f.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (f EventFilter) MarshalJSON() ([]byte, error) { return marshalKeeping(&f, f.extra) }

// UnmarshalJSON reads a filter and keeps keys it does not know.
func (f *EventFilter) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, f)
	f.extra = extra
	return err
}

// Validate reports every problem with the filter, compiling each expression so that one
// that does not compile is reported at expressions[i] with its position.
func (f *EventFilter) Validate() error {
	var p problems
	p.meta("", f.Metadata)
	switch f.Action {
	case FilterAllow, FilterDeny:
	case "":
		p.add("action", "required; set allow or deny")
	default:
		p.add("action", "%q is not a filter action; use allow or deny", f.Action)
	}
	if len(f.Expressions) == 0 {
		p.add("expressions", "at least one expression is required, e.g. event.check.occurrences == 1")
	}
	p.nonEmptyItems("expressions", f.Expressions)
	validateExpressions(&p, "expressions", f.Expressions)
	if err := checkWindowKeys(f.When); err != nil {
		p.add("when", "%s", err)
	} else if _, err := parseWhen(f.When); err != nil {
		p.add("when", "%s", strings.TrimPrefix(err.Error(), "when: "))
	}
	return p.err()
}

// Mutator types, in Mutator.Type. An empty type means pipe.
const (
	MutatorPipe       = "pipe"
	MutatorJavaScript = "javascript"
)

// Mutator transforms an event before a handler sees it.
type Mutator struct {
	Metadata      ObjectMeta `json:"metadata"`
	Command       string     `json:"command"`
	Timeout       int64      `json:"timeout"`
	EnvVars       []string   `json:"env_vars"`
	RuntimeAssets []string   `json:"runtime_assets"`
	Secrets       []Secret   `json:"secrets"`
	Type          string     `json:"type,omitempty"`
	Eval          string     `json:"eval"`

	extra map[string]json.RawMessage
}

// Meta returns the mutator's metadata.
func (m *Mutator) Meta() *ObjectMeta { return &m.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (m Mutator) MarshalJSON() ([]byte, error) { return marshalKeeping(&m, m.extra) }

// UnmarshalJSON reads a mutator and keeps keys it does not know.
func (m *Mutator) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, m)
	m.extra = extra
	return err
}

// Validate reports every problem with the mutator.
func (m *Mutator) Validate() error {
	var p problems
	p.meta("", m.Metadata)
	p.nonNegative("timeout", m.Timeout)
	switch m.Type {
	case "", MutatorPipe:
		if m.Command == "" {
			p.add("command", "required for a pipe mutator; set the command that reads the event on stdin")
		}
	case MutatorJavaScript:
		if m.Eval == "" {
			p.add("eval", "required for a javascript mutator; set the script that returns the new event")
		} else if _, err := compileMutatorScript(m.Eval); err != nil {
			p.add("eval", "does not compile: %v", err)
		}
	default:
		p.add("type", "%q is not a mutator type; use pipe or javascript", m.Type)
	}
	for i, s := range m.Secrets {
		if s.Name == "" || s.Secret == "" {
			p.add(fmt.Sprintf("secrets[%d]", i), "needs both name and secret")
		}
	}
	return p.err()
}
