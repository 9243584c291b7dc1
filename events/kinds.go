package events

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

func init() {
	// The order is the order of dump: what others refer to comes first.
	register(Kind{Type: "Namespace", Plural: "namespaces", Aliases: []string{"namespace", "ns"},
		New: func() Resource { return &Namespace{} }})
	register(Kind{Type: "User", Plural: "users", Aliases: []string{"user"},
		New: func() Resource { return &User{} }})
	register(Kind{Type: "APIKey", Plural: "apikeys", Aliases: []string{"apikey", "api-key", "api_key"},
		New: func() Resource { return &APIKey{} }})
	register(Kind{Type: "CheckConfig", Plural: "checks", Aliases: []string{"check", "checkconfig"}, Namespaced: true,
		New: func() Resource { return &CheckConfig{} }})
	register(Kind{Type: "HookConfig", Plural: "hooks", Aliases: []string{"hook", "hookconfig"}, Namespaced: true,
		New: func() Resource { return &HookConfig{} }})
	register(Kind{Type: "Asset", Plural: "assets", Aliases: []string{"asset"}, Namespaced: true,
		New: func() Resource { return &Asset{} }})
	register(Kind{Type: "Handler", Plural: "handlers", Aliases: []string{"handler"}, Namespaced: true,
		New: func() Resource { return &Handler{} }})
	register(Kind{Type: "EventFilter", Plural: "filters", Aliases: []string{"filter", "eventfilter"}, Namespaced: true,
		New: func() Resource { return &EventFilter{} }})
	register(Kind{Type: "Mutator", Plural: "mutators", Aliases: []string{"mutator"}, Namespaced: true,
		New: func() Resource { return &Mutator{} }})
	register(Kind{Type: "Entity", Plural: "entities", Aliases: []string{"entity"}, Namespaced: true,
		New: func() Resource { return &Entity{} }})
	register(Kind{Type: "Silenced", Plural: "silenced", Aliases: []string{"silence", "silences"}, Namespaced: true,
		New: func() Resource { return &Silenced{} }})
	register(Kind{Type: "Event", Plural: "events", Aliases: []string{"event"}, Namespaced: true,
		New: func() Resource { return &Event{} }})
}

// KindOf returns the registered kind of r.
func KindOf(r Resource) (Kind, bool) {
	t := reflect.TypeOf(r)
	for _, k := range kinds {
		if reflect.TypeOf(k.New()) == t {
			return k, true
		}
	}
	return Kind{}, false
}

// typeNames lists the wrapped type names, for error messages.
func typeNames() []string {
	out := make([]string, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k.Type)
	}
	sort.Strings(out)
	return out
}

// SetDefaults fills in what Picket assumes when a resource leaves it out: the namespace
// (namespace, or "default" when that is empty too) for namespaced kinds, an entity's own
// "entity:<name>" subscription and default redact list, a silence's derived name, and an
// event's namespace from its entity, and a silence's expire_at when it has an expire
// (expire seconds after begin or now). It does not touch an event's timestamp.
func SetDefaults(r Resource, namespace string) {
	if namespace == "" {
		namespace = "default"
	}
	k, ok := KindOf(r)
	if !ok {
		return
	}
	switch v := r.(type) {
	case *Entity:
		v.setDefaults()
	case *Silenced:
		if v.Subscription != "" || v.Check != "" {
			v.Metadata.Name = SilencedName(v.Subscription, v.Check)
		}
		v.setExpireAt(time.Now())
	case *Event:
		m := v.Meta() // takes the entity's namespace when the event has none
		if m.Namespace == "" {
			m.Namespace = namespace
		}
		if v.Entity != nil {
			if v.Entity.Metadata.Namespace == "" {
				v.Entity.Metadata.Namespace = m.Namespace
			}
			v.Entity.setDefaults()
		}
		if v.Check != nil && v.Check.Metadata.Namespace == "" {
			v.Check.Metadata.Namespace = m.Namespace
		}
	}
	if k.Namespaced && r.Meta().Namespace == "" {
		r.Meta().Namespace = namespace
	}
}

// UnsupportedFields describes the Sensu fields the resource sets that Picket reads but
// does not act on, one line each ("runtime_assets: …"): the resource works without them,
// which its author should know. Sensu 6.14's subdues, an unknown field, is among them.
func UnsupportedFields(r Resource) []string {
	var assets []string
	var secrets int
	subdues := false
	switch v := r.(type) {
	case *CheckConfig:
		assets, secrets = v.RuntimeAssets, len(v.Secrets)
		subdues = slices.Contains(UnknownFields(v), "subdues")
	case *Handler:
		assets, secrets = v.RuntimeAssets, len(v.Secrets)
	case *Mutator:
		assets, secrets = v.RuntimeAssets, len(v.Secrets)
	case *EventFilter:
		assets = v.RuntimeAssets
	case *HookConfig:
		assets = v.RuntimeAssets
	}
	var out []string
	if len(assets) > 0 {
		out = append(out, "runtime_assets: assets are not supported; the command runs without "+strings.Join(assets, ", ")+", from the PATH of the process that runs it")
	}
	if secrets > 0 {
		out = append(out, "secrets: secrets providers are not supported; the environment variables they name are not set")
	}
	if subdues {
		out = append(out, "subdues: not supported (Picket reads the older subdue); the check is not subdued by it")
	}
	return out
}

// UnknownFields lists the JSON paths of fields the resource was read with but does not
// know, relative to the resource (the spec, in the wrapped format), e.g. "subdues" or
// "check.scheduled_by". They are kept and written back as they were.
func UnknownFields(r Resource) []string {
	var out []string
	unknownFieldPaths(reflect.ValueOf(r), "", &out)
	sort.Strings(out)
	return out
}
