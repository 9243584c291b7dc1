package events

import (
	"encoding/json"
	"fmt"
)

// Event is what Picket processes and stores: an entity, the check that ran on it with its
// result, and any metrics. It has no name of its own; it is stored as
// "<entity name>/<check name>" (see StoreName).
type Event struct {
	Metadata  ObjectMeta          `json:"metadata"`
	Timestamp int64               `json:"timestamp"`
	Entity    *Entity             `json:"entity,omitempty"`
	Check     *Check              `json:"check,omitempty"`
	Metrics   *Metrics            `json:"metrics,omitempty"`
	ID        string              `json:"id,omitempty"`
	Sequence  int64               `json:"sequence,omitempty"`
	Pipelines []ResourceReference `json:"pipelines"`

	extra map[string]json.RawMessage
}

// Metrics are the measurements an event carries and the handlers that receive them.
type Metrics struct {
	Handlers []string      `json:"handlers"`
	Points   []MetricPoint `json:"points"`
}

// MetricPoint is one measurement.
type MetricPoint struct {
	Name      string      `json:"name"`
	Value     float64     `json:"value"`
	Timestamp int64       `json:"timestamp"`
	Tags      []MetricTag `json:"tags"`
}

// MetricTag is a name/value pair attached to a metric point (or, in a check definition's
// output_metric_tags, to every point the check produces).
type MetricTag struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Meta returns the event's own metadata. When its namespace is empty it takes the
// entity's, since an event lives in its entity's namespace.
func (e *Event) Meta() *ObjectMeta {
	if e.Metadata.Namespace == "" && e.Entity != nil {
		e.Metadata.Namespace = e.Entity.Metadata.Namespace
	}
	return &e.Metadata
}

// StoreName is the event's key within its namespace, "<entity name>/<check name>".
func (e *Event) StoreName() string {
	var entity, check string
	if e.Entity != nil {
		entity = e.Entity.Metadata.Name
	}
	if e.Check != nil {
		check = e.Check.Metadata.Name
	}
	return entity + "/" + check
}

// HasMetrics reports whether the event carries metrics.
func (e *Event) HasMetrics() bool { return e.Metrics != nil }

// MarshalJSON writes every field, including unknown ones read earlier.
func (e Event) MarshalJSON() ([]byte, error) { return marshalKeeping(&e, e.extra) }

// UnmarshalJSON reads an event and keeps keys it does not know.
func (e *Event) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, e)
	e.extra = extra
	return err
}

// Validate reports every problem with the event: it needs an entity and a check, both
// named, in the event's namespace.
func (e *Event) Validate() error {
	var p problems
	p.namespace("", e.Metadata)
	if e.Timestamp < 0 {
		p.add("timestamp", "must be a unix time in seconds (got %d)", e.Timestamp)
	}
	if e.Entity == nil {
		p.add("entity", "required; set entity.metadata.name to the entity the event is about")
	} else {
		p.name("entity.metadata.name", e.Entity.Metadata.Name, nameRE)
		p.namespace("entity.", e.Entity.Metadata)
		if ns := e.Entity.Metadata.Namespace; ns != "" && e.Metadata.Namespace != "" && ns != e.Metadata.Namespace {
			p.add("entity.metadata.namespace", "%q differs from the event's namespace %q; use the same namespace", ns, e.Metadata.Namespace)
		}
	}
	if e.Check == nil {
		p.add("check", "required; set check.metadata.name to the check the result is for")
	} else {
		e.Check.validate(&p, "check.")
	}
	if e.Metrics != nil {
		for i, pt := range e.Metrics.Points {
			if pt.Name == "" {
				p.add(fmt.Sprintf("metrics.points[%d].name", i), "required; name the measurement")
			}
		}
	}
	return p.err()
}
