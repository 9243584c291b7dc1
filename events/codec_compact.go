package events

import (
	"reflect"
	"strconv"
	"strings"
	"sync"

	fastjson "github.com/goccy/go-json"
)

// Compact encoding: how the server stores events.
//
// The API, handlers and mutators see an event with every field, as Sensu writes it:
// "occurrences": 0, "proxy_entity_name": "" and all. Stored that way, a fifth of an
// event's bytes are empty scalar fields, and etcd copies every stored byte about six times on
// its way to disk (raft request, WAL record, applied entry, MVCC record, compare, page
// cache). The compact form leaves out every string, bool, integer and pointer field that
// holds its zero value, and every list and map that is nil (null); read back, the
// missing fields are zero (nil) again, so decoding into a new event gives the same event.
// An empty list is kept, and floats are written as they are: an empty list and none
// differ for handlers ("subscriptions": [] of a keepalive event), and -0 is not 0. The
// API writes stored events in the full form again (node/api).
//
// The compact types are overlays (codec_overlay.go) with omitempty (omitzero for lists
// and maps) on those fields, and plain structs of exported fields (such as History)
// rebuilt the same way. They have their Go type's layout, checked field by field when
// built; a type that cannot be rebuilt (methods, unexported or embedded fields, a layout
// that does not check out) is kept, and encodes in full. A struct type that contains
// itself keeps its own type where it does, and that kept type is cached as its compact
// type: correct (it encodes in full), only less compact, as with the deep plans
// (codec.go).

var (
	compactTypes sync.Map // reflect.Type -> reflect.Type
	compactMu    sync.Mutex
)

// compactType returns the compact type of t, t itself when it has none.
func compactType(t reflect.Type) reflect.Type {
	if c, ok := compactTypes.Load(t); ok {
		return c.(reflect.Type)
	}
	compactMu.Lock()
	defer compactMu.Unlock()
	return buildCompact(t, map[reflect.Type]bool{})
}

// buildCompact is compactType with compactMu held; building holds the struct types under
// way, so a type that contains itself keeps its own type there.
func buildCompact(t reflect.Type, building map[reflect.Type]bool) reflect.Type {
	if c, ok := compactTypes.Load(t); ok {
		return c.(reflect.Type)
	}
	c := t
	switch t.Kind() {
	case reflect.Pointer:
		if e := buildCompact(t.Elem(), building); e != t.Elem() {
			c = reflect.PointerTo(e)
		}
	case reflect.Slice:
		if t.Name() == "" {
			if e := buildCompact(t.Elem(), building); e != t.Elem() {
				c = reflect.SliceOf(e)
			}
		}
	case reflect.Array:
		if t.Name() == "" {
			if e := buildCompact(t.Elem(), building); e != t.Elem() {
				c = reflect.ArrayOf(t.Len(), e)
			}
		}
	case reflect.Struct:
		if building[t] {
			return t
		}
		building[t] = true
		c = compactStruct(t, building)
		delete(building, t)
	}
	compactTypes.Store(t, c)
	return c
}

// compactStruct rebuilds struct type t with omitempty on its JSON fields and compact
// field types, or returns t when it cannot or need not.
func compactStruct(t reflect.Type, building map[reflect.Type]bool) reflect.Type {
	if t.NumMethod() > 0 || reflect.PointerTo(t).NumMethod() > 0 {
		return t // its own MarshalJSON (or MarshalText) decides
	}
	sfs := make([]reflect.StructField, t.NumField())
	changed := false
	for i := range sfs {
		sf := t.Field(i)
		if !sf.IsExported() || sf.Anonymous {
			return t
		}
		ft := buildCompact(sf.Type, building)
		tag := sf.Tag.Get("json")
		if opt := omitOption(ft.Kind()); tag != "-" && opt != "" && !strings.Contains(tag+",", ",omitempty,") {
			if tag == "" {
				tag = sf.Name
			}
			tag += opt
		}
		changed = changed || ft != sf.Type || tag != sf.Tag.Get("json")
		sfs[i] = reflect.StructField{Name: sf.Name, Type: ft, Tag: reflect.StructTag(`json:` + strconv.Quote(tag))}
	}
	if !changed {
		return t
	}
	c := reflect.StructOf(sfs)
	offsets := make([]uintptr, t.NumField())
	for i := range offsets {
		offsets[i] = t.Field(i).Offset
	}
	if !laidOut(c, t.Size(), uintptr(t.Align()), offsets) {
		return t
	}
	return c
}

// omitOption returns the option that leaves a field of kind k out of the compact form
// when reading it back would give the same value: omitempty for strings, bools,
// integers and pointers (their zero value), omitzero for lists and maps (only when nil,
// which reads back as nil from an absent field as from null; an empty one is kept:
// "subscriptions": [] of a keepalive event is not none). Floats are kept: -0 is not 0.
func omitOption(k reflect.Kind) string {
	switch k {
	case reflect.String, reflect.Bool, reflect.Pointer,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return ",omitempty"
	case reflect.Slice, reflect.Map:
		return ",omitzero"
	}
	return ""
}

// MarshalCompact encodes the event in the compact form, the form events are stored in.
// An event the compact path cannot take (one holding keys Picket does not know, or on a
// build without overlays) is encoded in full, which reads back the same.
func (e *Event) MarshalCompact() ([]byte, error) { return e.AppendCompact(nil) }

// AppendCompact appends the event's compact form, as MarshalCompact gives it, to dst:
// the server encodes every event it stores into a buffer it reuses.
func (e *Event) AppendCompact(dst []byte) ([]byte, error) {
	rv := reflect.ValueOf(e).Elem()
	if !perLevelOnly.Load() && !copyTwinOnly.Load() {
		if plan := deepPlanFor(rv.Type()); plan.compact != nil && plan.clean(rv) {
			w := appendWriter{b: dst}
			enc := fastjson.NewEncoder(&w)
			enc.SetEscapeHTML(false)
			if enc.Encode(overlayPointer(plan.compact, rv)) == nil {
				return w.b[:len(w.b)-1], nil // the Encoder ends the value with a newline
			}
		}
	}
	b, err := e.MarshalJSON()
	return append(dst, b...), err
}

// appendWriter appends what is written to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
