package events

import (
	"sync"
)

// Definitions holds the handlers, filters and mutators a Pipeline uses, by namespace and
// name. The caller keeps it in step with the store (a watch); each filter and javascript
// mutator is compiled once per revision it is put at, never per event. It is safe for
// concurrent use.
type Definitions struct {
	mu       sync.RWMutex
	handlers map[defKey]*Handler
	filters  map[defKey]*Filter
	mutators map[defKey]*mutatorDef
	revs     map[defKey]int64
}

type defKey struct{ kind, ns, name string }

// NewDefinitions returns an empty set of definitions.
func NewDefinitions() *Definitions {
	d := &Definitions{}
	d.Reset()
	return d
}

// Reset forgets every definition, before the caller loads them all again.
func (d *Definitions) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handlers = map[defKey]*Handler{}
	d.filters = map[defKey]*Filter{}
	d.mutators = map[defKey]*mutatorDef{}
	d.revs = map[defKey]int64{}
}

// Put adds or replaces a *Handler, *EventFilter or *Mutator, stored at revision rev (0:
// always replace); one already held at the same revision is left as it is, compiled. It
// returns why a filter or mutator does not compile: the definition is kept all the same,
// and the error is reported each time it is used, so that the pipeline logs it with the
// name. Other resource types are ignored.
func (d *Definitions) Put(r Resource, rev int64) error {
	meta := r.Meta()
	var kind string
	switch r.(type) {
	case *Handler:
		kind = "handlers"
	case *EventFilter:
		kind = "filters"
	case *Mutator:
		kind = "mutators"
	default:
		return nil
	}
	k := defKey{kind, meta.Namespace, meta.Name}
	d.mu.RLock()
	held, ok := d.revs[k]
	d.mu.RUnlock()
	if ok && rev != 0 && held == rev {
		return nil
	}
	// Compile outside the lock: it takes a while and readers should not wait for it.
	var (
		cf  *Filter
		md  *mutatorDef
		err error
	)
	switch v := r.(type) {
	case *EventFilter:
		cf, err = CompileFilter(v)
	case *Mutator:
		md = newMutatorDef(v)
		err = md.err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch v := r.(type) {
	case *Handler:
		d.handlers[k] = v
	case *EventFilter:
		d.filters[k] = cf
	case *Mutator:
		d.mutators[k] = md
	}
	d.revs[k] = rev
	return err
}

// Delete forgets the definition of kind ("handlers", "filters" or "mutators") ns/name.
func (d *Definitions) Delete(kind, ns, name string) {
	k := defKey{kind, ns, name}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.revs, k)
	switch kind {
	case "handlers":
		delete(d.handlers, k)
	case "filters":
		delete(d.filters, k)
	case "mutators":
		delete(d.mutators, k)
	}
}

// Handler returns the handler ns/name, or nil.
func (d *Definitions) Handler(ns, name string) *Handler {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.handlers[defKey{"handlers", ns, name}]
}

// Filter returns the compiled filter ns/name, or nil.
func (d *Definitions) Filter(ns, name string) *Filter {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.filters[defKey{"filters", ns, name}]
}

func (d *Definitions) mutator(ns, name string) *mutatorDef {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.mutators[defKey{"mutators", ns, name}]
}

// ResetKind forgets every definition of kind ("handlers", "filters" or "mutators"),
// before the caller loads that kind again.
func (d *Definitions) ResetKind(kind string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.revs {
		if k.kind == kind {
			delete(d.revs, k)
		}
	}
	switch kind {
	case "handlers":
		d.handlers = map[defKey]*Handler{}
	case "filters":
		d.filters = map[defKey]*Filter{}
	case "mutators":
		d.mutators = map[defKey]*mutatorDef{}
	}
}
