package events

import (
	"reflect"
	"strings"
	"sync"

	fastjson "github.com/goccy/go-json"
)

// Compact encoding: how the server stores events.
//
// The API, handlers and mutators see an event with every field, as Sensu writes it:
// "handlers": null, "occurrences": 0 and all. Stored that way, a quarter of an event's
// bytes are empty fields, and etcd copies every stored byte half a dozen times on its
// way to disk (raft request, WAL record, applied entry, MVCC record, page cache). The
// compact form leaves out every field that holds its zero value; read back, the missing
// fields are zero again, so decoding gives the same event. The API writes stored events
// in the full form again (node/api).
//
// The one thing the compact form does not keep is the difference between an empty list
// or map and none: both are left out and read back as none, which the API shows as null.
//
// The compact types are overlays (codec_overlay.go) with omitempty on every field that
// is not a struct or an array, and plain structs of exported fields (such as History)
// rebuilt the same way. They have their Go type's layout, checked field by field when
// built; a type that cannot be rebuilt (methods, unexported or embedded fields, a layout
// that does not check out) is kept, and encodes in full.

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
		if tag != "-" {
			if k := ft.Kind(); k != reflect.Struct && k != reflect.Array && !strings.Contains(tag+",", ",omitempty,") {
				tag += ",omitempty"
			}
			if tag == ",omitempty" {
				tag = sf.Name + tag
			}
		}
		changed = changed || ft != sf.Type || tag != sf.Tag.Get("json")
		sfs[i] = reflect.StructField{Name: sf.Name, Type: ft, Tag: reflect.StructTag(`json:"` + tag + `"`)}
	}
	if !changed {
		return t
	}
	c := reflect.StructOf(sfs)
	if c.Size() != t.Size() || c.Align() != t.Align() {
		return t
	}
	for i := range sfs {
		if c.Field(i).Offset != t.Field(i).Offset || c.Field(i).Type.Size() != t.Field(i).Type.Size() {
			return t
		}
	}
	return c
}

// MarshalCompact encodes the event in the compact form, the form events are stored in.
// An event the compact path cannot take (one holding keys Picket does not know, or on a
// build without overlays) is encoded in full, which reads back the same.
func (e *Event) MarshalCompact() ([]byte, error) {
	if b, ok := marshalCompact(reflect.ValueOf(e).Elem(), len(e.extra) == 0); ok {
		return b, nil
	}
	return e.MarshalJSON()
}

// marshalCompact encodes the addressable struct rv through the compact type of its
// overlay; clean says rv's own extra is empty.
func marshalCompact(rv reflect.Value, clean bool) ([]byte, bool) {
	if !clean || perLevelOnly.Load() || copyTwinOnly.Load() {
		return nil, false
	}
	plan := deepPlanFor(rv.Type())
	if plan.overlay == nil || !plan.fieldsClean(rv) {
		return nil, false
	}
	b, err := fastjson.MarshalWithOption(overlayPointer(compactType(plan.overlay), rv), fastjson.DisableHTMLEscape())
	return b, err == nil
}
