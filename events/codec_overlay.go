package events

import (
	"fmt"
	"reflect"
	"strings"
	"unsafe"
)

// Overlays: the deep path without copies.
//
// The deep path (codec.go) copies a value into its deep twin to encode it, and out of the
// twin after decoding, field by field through reflection; for an event that copying cost
// as much CPU as goccy's own work. An overlay is a deep twin with the memory layout of its
// Go type, so that goccy decodes straight into a value of the Go type, and encodes
// straight from one, seen through the overlay.
//
// An overlay has the twin's fields, with the twin's names and JSON tags, each at the
// offset it has in the Go type: embedded structs flattened (as typeInfo flattens them),
// every other field of the Go type (unexported, shadowed, or `json:"-"`) kept as an
// exported field of its own type that JSON ignores, and byte arrays where the Go type has
// padding. A field the deep plan gives a twin holds the overlay of that type instead
// (through pointers, slices and arrays). Embedded structs are flattened rather than kept
// embedded because goccy mis-encodes some embedded struct types built with StructOf.
//
// Seeing memory of one type through another is sound only when both have the same layout
// and the same pointer words. overlayOf places every field at its offset in the Go type
// and checks the result; padding holds no pointers in either; nested overlays are checked
// when they are built. A type holding a keeping type in a map (a map's internal layout is
// the runtime's) has no overlay, and its values take the copying deep path as before.

// overlayOf returns the overlay of struct type t, whose deep plan is p, or nil.
func overlayOf(t reflect.Type, p *deepPlan) reflect.Type {
	selected := make(map[string]int, len(p.fields))
	for i, f := range p.fields {
		selected[indexKey(f.index)] = i
	}
	var leaves []overlayLeaf
	collectLeaves(t, nil, 0, &leaves)
	var (
		sfs    []reflect.StructField
		at     []uintptr // the offset each field of sfs must have
		cur    uintptr
		hidden int
		placed int // fields of the twin placed so far
	)
	add := func(sf reflect.StructField, off uintptr) {
		sfs, at = append(sfs, sf), append(at, off)
		cur = off + sf.Type.Size()
	}
	for _, l := range leaves {
		if l.offset < cur {
			return nil
		}
		if l.offset > cur && l.offset != alignUp(cur, uintptr(l.typ.Align())) {
			hidden++
			add(reflect.StructField{Name: fmt.Sprintf("Pad%d", hidden), Type: reflect.ArrayOf(int(l.offset-cur), byteType), Tag: `json:"-"`}, cur)
		}
		sf := reflect.StructField{Type: l.typ}
		if i, ok := selected[indexKey(l.index)]; ok {
			// A twin field: plainField's name and tag, the overlay of its plan's type.
			sf = typeInfo(t).fields[i].plainField(i, l.typ)
			placed++
			if fp := p.fields[i].plan; fp != nil {
				ft, ok := fp.overlayType()
				if !ok {
					return nil
				}
				sf.Type = ft
			}
		} else {
			hidden++
			sf.Name, sf.Tag = fmt.Sprintf("Hidden%d", hidden), `json:"-"`
		}
		add(sf, l.offset)
	}
	if placed != len(p.fields) {
		return nil // typeInfo flattened a field that collectLeaves did not find
	}
	if cur < t.Size() {
		hidden++
		add(reflect.StructField{Name: fmt.Sprintf("Pad%d", hidden), Type: reflect.ArrayOf(int(t.Size()-cur), byteType), Tag: `json:"-"`}, cur)
	}
	o := reflect.StructOf(sfs)
	if !laidOut(o, t.Size(), uintptr(t.Align()), at) {
		return nil
	}
	return o
}

// laidOut reports whether struct type o has the given size and alignment and its i-th
// field at offsets[i].
func laidOut(o reflect.Type, size, align uintptr, offsets []uintptr) bool {
	if o.Size() != size || uintptr(o.Align()) != align || o.NumField() != len(offsets) {
		return false
	}
	for i, off := range offsets {
		if o.Field(i).Offset != off {
			return false
		}
	}
	return true
}

var byteType = reflect.TypeFor[byte]()

// overlayLeaf is a field of a struct type with embedded structs flattened: its index path
// and offset in the top-level type.
type overlayLeaf struct {
	index  []int
	offset uintptr
	typ    reflect.Type
}

// collectLeaves appends the fields of struct type t, at index path prefix and offset base
// in the top-level type, flattening embedded structs the way typeInfo does.
func collectLeaves(t reflect.Type, prefix []int, base uintptr, out *[]overlayLeaf) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		idx := append(append([]int(nil), prefix...), i)
		tag := sf.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if tag != "-" && sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			collectLeaves(sf.Type, idx, base+sf.Offset, out)
			continue
		}
		*out = append(*out, overlayLeaf{index: idx, offset: base + sf.Offset, typ: sf.Type})
	}
}

func alignUp(n, a uintptr) uintptr { return (n + a - 1) &^ (a - 1) }

// overlayType is the type a field holds in an overlay where the deep twin holds p.plain.
func (p *deepPlan) overlayType() (reflect.Type, bool) {
	switch p.kind {
	case deepStruct:
		return p.overlay, p.overlay != nil
	case deepPointer, deepSlice, deepArray:
		et, ok := p.elem.overlayType()
		if !ok {
			return nil, false
		}
		switch p.kind {
		case deepPointer:
			return reflect.PointerTo(et), true
		case deepSlice:
			return reflect.SliceOf(et), true
		}
		return reflect.ArrayOf(p.typ.Len(), et), true
	}
	return nil, false // deepMap
}

func indexKey(index []int) string {
	var b strings.Builder
	for _, i := range index {
		b.WriteByte(byte(i))
		b.WriteByte(byte(i >> 8))
	}
	return b.String()
}

// overlayPointer returns a pointer to the addressable struct rv seen through overlay o.
func overlayPointer(o reflect.Type, rv reflect.Value) any {
	return reflect.NewAt(o, unsafe.Pointer(rv.UnsafeAddr())).Interface()
}

// clean reports whether v, a value of p.typ, holds no keeping value with unknown keys,
// the condition toPlain checks while it copies.
func (p *deepPlan) clean(v reflect.Value) bool {
	switch p.kind {
	case deepStruct:
		if v.Field(p.extra).Len() > 0 {
			return false
		}
		return p.fieldsClean(v)
	case deepPointer:
		return v.IsNil() || p.elem.clean(v.Elem())
	case deepSlice, deepArray:
		for i := 0; i < v.Len(); i++ {
			if !p.elem.clean(v.Index(i)) {
				return false
			}
		}
	case deepMap:
		for it := v.MapRange(); it.Next(); {
			if !p.elem.clean(it.Value()) {
				return false
			}
		}
	}
	return true
}

// fieldsClean is clean for a struct, leaving out its own extra field.
func (p *deepPlan) fieldsClean(v reflect.Value) bool {
	for _, f := range p.fields {
		if f.plan != nil && !f.plan.clean(v.FieldByIndex(f.index)) {
			return false
		}
	}
	return true
}
