// Package events holds Picket's domain model: the core/v2 resources, the wrapped
// resource format, and (later) the check-result-to-event logic and the pipeline.
// It imports nothing of Picket's own, so the domain can be tested alone.
package events

import (
	"fmt"
	"sort"
	"strings"
)

// ObjectMeta is the metadata every resource carries.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	CreatedBy   string            `json:"created_by,omitempty"`
}

// Resource is implemented by every stored resource type.
type Resource interface {
	// Meta returns a pointer to the resource's metadata so callers can read and set it.
	Meta() *ObjectMeta
	// Validate reports every problem with the resource at once as a ValidationError.
	Validate() error
}

// Kind describes one resource type: its wrapped type name, the URL segment and storage
// segment it lives under, whether it belongs to a namespace, and how to make an empty one.
type Kind struct {
	// Type is the wrapped-format type name, e.g. "CheckConfig".
	Type string
	// Plural is the REST path segment and storage segment, e.g. "checks".
	Plural string
	// Aliases are other names the CLI accepts, e.g. "check", "CheckConfig".
	Aliases []string
	// Namespaced is false for cluster-wide kinds (namespaces, users, apikeys).
	Namespaced bool
	// New returns a new zero resource of this kind.
	New func() Resource
}

var kinds []Kind

// register adds a kind to the registry; called from init functions of this package.
func register(k Kind) { kinds = append(kinds, k) }

// Kinds returns every registered kind, in a stable order (the order of dump).
func Kinds() []Kind {
	out := append([]Kind(nil), kinds...)
	return out
}

// LookupKind finds a kind by its type name, plural, or alias, ignoring case.
func LookupKind(name string) (Kind, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, k := range kinds {
		if strings.ToLower(k.Type) == n || k.Plural == n {
			return k, true
		}
		for _, a := range k.Aliases {
			if strings.ToLower(a) == n {
				return k, true
			}
		}
	}
	return Kind{}, false
}

// KindNames lists every kind's plural, for help and error messages.
func KindNames() []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.Plural)
	}
	sort.Strings(out)
	return out
}

// FieldError is one validation problem, naming the field (JSON path, e.g. "interval"
// or "metadata.name") and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is the set of every problem Validate found.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	parts := make([]string, len(v))
	for i, fe := range v {
		parts[i] = fmt.Sprintf("%s: %s", fe.Field, fe.Message)
	}
	return strings.Join(parts, "; ")
}

// StoreName returns the name a resource is stored and addressed under within its
// namespace: its metadata name, or for resources without one of their own (events) what
// their StoreName method returns.
func StoreName(r Resource) string {
	if s, ok := r.(interface{ StoreName() string }); ok {
		return s.StoreName()
	}
	return r.Meta().Name
}

// ValidName reports whether s may name a resource (an entity, a check, a namespace):
// letters, digits and _ . - : only, so it is one segment of a storage key and a URL.
// It is nameRE, written out: the gateway asks it for every event.
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-', c == ':':
		default:
			return false
		}
	}
	return true
}
