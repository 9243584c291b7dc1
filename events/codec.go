package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	fastjson "github.com/goccy/go-json"
)

// This file holds the small JSON codec every resource uses so that a resource read from
// JSON and written back keeps every field, including keys Picket does not know (a typo such
// as "subdues", or a field a newer Sensu added). Each top-level type keeps such keys in an
// unexported `extra map[string]json.RawMessage` and implements MarshalJSON/UnmarshalJSON
// with marshalKeeping/unmarshalKeeping; such a type is a "keeping" type here.
//
// The codec walks the struct itself rather than calling encoding/json on an alias type:
// Check embeds CheckConfig, and an alias of Check would still have CheckConfig's promoted
// MarshalJSON, which would drop every result field. Embedded structs are flattened here
// regardless of their methods; named fields are encoded by encoding/json as usual.
//
// Three paths, fastest first:
//
//   - Deep (deepPlan): the value is converted into its deep plain twin, a method-free
//     struct type built with reflect.StructOf that has the flattened fields and the same
//     JSON tags, and in which every field holding a keeping type (directly or through a
//     pointer, slice, array or map) holds that type's own deep twin instead. goccy/go-json
//     then encodes or decodes a whole Event (entity, system, check, hooks) in one pass, with
//     no nested MarshalJSON call whose output it would scan and compact again, and no
//     nested UnmarshalJSON that would start a decoder of its own. It applies when there are
//     no unknown keys at any level: encoding gives up as soon as it meets a nested keeping
//     value with a non-empty extra, decoding (DisallowUnknownFields, which then holds at
//     every level) fails on any unknown key, and either way the next path runs. Where a
//     type has an overlay (codec_overlay.go: a twin with the type's own memory layout),
//     goccy works on the value itself and nothing is copied into or out of a twin.
//   - Per level (structInfo.plain): the same twin, one level deep; fields of keeping types
//     keep their type, so their own MarshalJSON/UnmarshalJSON run (and take the deep path
//     for their own level when they can). This is the codec as it was before the deep path
//     existed; perLevelOnly forces it, so tests can check the deep path against it.
//   - Field by field: for a value with unknown keys of its own, each known field is encoded
//     or decoded by encoding/json, and the unknown keys are written after them or kept.
//
// The deep path must give exactly what the per-level path gives, byte for byte and field
// for field; codec_deep_test.go holds it to that.

// extraField is the name of the unexported field that holds unknown keys.
const extraField = "extra"

type fieldInfo struct {
	name      string
	index     []int
	omitEmpty bool
	depth     int
}

type structInfo struct {
	fields []fieldInfo
	byName map[string]int
	// plain is a method-free struct type with the flattened fields and the same JSON
	// tags, so encoding/json can decode and encode it in one pass.
	plain reflect.Type
	// extra is the index of the type's own extra field, -1 when it has none.
	extra int
}

// extraOf returns the extra field of v (a value of info's type): the type's own, or one
// promoted from an embedded struct; the zero Value when there is none.
func (info *structInfo) extraOf(v reflect.Value) reflect.Value {
	if info.extra >= 0 {
		return v.Field(info.extra)
	}
	return v.FieldByName(extraField)
}

var structInfos sync.Map // reflect.Type -> *structInfo

// typeInfo lists the JSON fields of a struct type in declaration order, flattening
// anonymous struct fields the way encoding/json does (the shallower field wins a clash).
func typeInfo(t reflect.Type) *structInfo {
	if v, ok := structInfos.Load(t); ok {
		return v.(*structInfo)
	}
	var all []fieldInfo
	var walk func(t reflect.Type, index []int, depth int)
	walk = func(t reflect.Type, index []int, depth int) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
				walk(sf.Type, idx, depth+1)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			all = append(all, fieldInfo{
				name:      name,
				index:     idx,
				omitEmpty: strings.Contains(","+opts+",", ",omitempty,"),
				depth:     depth,
			})
		}
	}
	walk(t, nil, 0)

	best := map[string]int{}
	for _, f := range all {
		if d, ok := best[f.name]; !ok || f.depth < d {
			best[f.name] = f.depth
		}
	}
	info := &structInfo{byName: map[string]int{}, extra: extraIndex(t)}
	for _, f := range all {
		if f.depth != best[f.name] {
			continue
		}
		if _, dup := info.byName[f.name]; dup {
			continue
		}
		info.byName[f.name] = len(info.fields)
		info.fields = append(info.fields, f)
	}
	sfs := make([]reflect.StructField, len(info.fields))
	for i, f := range info.fields {
		sfs[i] = f.plainField(i, t.FieldByIndex(f.index).Type)
	}
	info.plain = reflect.StructOf(sfs)
	v, _ := structInfos.LoadOrStore(t, info)
	return v.(*structInfo)
}

// plainField is f as the i-th field of a plain twin, of type ft: the same JSON name and
// omitempty, no methods.
func (f fieldInfo) plainField(i int, ft reflect.Type) reflect.StructField {
	tag := f.name
	if f.omitEmpty {
		tag += ",omitempty"
	}
	return reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: ft, Tag: reflect.StructTag(`json:"` + tag + `"`)}
}

// toPlain copies the fields of rv into a new value of the plain type.
func (info *structInfo) toPlain(rv reflect.Value) reflect.Value {
	p := reflect.New(info.plain).Elem()
	for i, f := range info.fields {
		p.Field(i).Set(rv.FieldByIndex(f.index))
	}
	return p
}

// fromPlain copies the fields of the plain value p back into rv.
func (info *structInfo) fromPlain(p, rv reflect.Value) {
	for i, f := range info.fields {
		rv.FieldByIndex(f.index).Set(p.Field(i))
	}
}

// perLevelOnly turns the deep path off, leaving the codec as it was before it: tests set
// it to compare the two. copyTwinOnly keeps the deep path but turns its overlays off
// (codec_overlay.go), for the same purpose.
var perLevelOnly, copyTwinOnly atomic.Bool

// A deepPlan converts values of one Go type to and from the type's deep plain twin (see
// the top of the file). Plans are built once per type and are read-only afterwards.
type deepPlan struct {
	kind  deepKind
	typ   reflect.Type // the Go type
	plain reflect.Type // its deep twin

	// deepStruct: the fields in twin order; the index of the type's own extra field (-1
	// for a top-level type that has none: it is only read for nested values); whether any
	// field has a plan. A type without (flat) has a deep twin equal to its plain twin, so
	// the per-level path is already one pass for it and the deep path leaves it alone.
	fields []deepField
	extra  int
	nested bool
	// deepPointer, deepSlice, deepArray, deepMap: the plan of the element (map value).
	elem *deepPlan
	// overlay is the struct's overlay (codec_overlay.go), nil when it has none; compact
	// is the overlay's compact type (codec_compact.go), built with it.
	overlay, compact reflect.Type
}

type deepKind uint8

const (
	deepStruct deepKind = iota
	deepPointer
	deepSlice
	deepArray
	deepMap
)

type deepField struct {
	index []int     // in the Go struct, through embedded structs
	plan  *deepPlan // nil: the twin holds the field's own type and it is copied as is
}

var (
	// deepPlans caches the plans of struct types: reflect.Type -> *deepPlan.
	deepPlans sync.Map
	// deepBuildMu serialises building plans, so that a type can tell it is being built
	// (a recursive type) without other goroutines' builds interfering.
	deepBuildMu sync.Mutex
)

var (
	rawMapType      = reflect.TypeFor[map[string]json.RawMessage]()
	marshalerType   = reflect.TypeFor[json.Marshaler]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// keepingCustom are the types with an extra field whose MarshalJSON or UnmarshalJSON does
// more than call marshalKeeping/unmarshalKeeping: Namespace and User keep their name and
// their metadata in sync. A deep twin never inlines them; their own methods run.
// TestKeepingTypesUseTheCodec checks that every other type with an extra field uses
// exactly marshalKeeping and unmarshalKeeping.
var keepingCustom = map[reflect.Type]bool{
	reflect.TypeFor[Namespace](): true,
	reflect.TypeFor[User]():      true,
}

// extraIndex is the index of struct type t's own `extra map[string]json.RawMessage` field
// (not one of an embedded struct), or -1.
func extraIndex(t reflect.Type) int {
	for i := 0; i < t.NumField(); i++ {
		if sf := t.Field(i); sf.Name == extraField && !sf.Anonymous && sf.Type == rawMapType {
			return i
		}
	}
	return -1
}

// isKeeping reports whether values of type t are encoded and decoded by exactly
// marshalKeeping and unmarshalKeeping, through value-receiver MarshalJSON and
// pointer-receiver UnmarshalJSON, so that a deep twin may hold t's twin in t's place.
func isKeeping(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && extraIndex(t) >= 0 && !keepingCustom[t] &&
		t.Implements(marshalerType) && reflect.PointerTo(t).Implements(unmarshalerType)
}

// deepPlanFor returns the plan of struct type t, building it the first time.
func deepPlanFor(t reflect.Type) *deepPlan {
	if v, ok := deepPlans.Load(t); ok {
		return v.(*deepPlan)
	}
	deepBuildMu.Lock()
	defer deepBuildMu.Unlock()
	b := deepBuilder{building: map[reflect.Type]bool{}}
	return b.structPlan(t)
}

// deepBuilder builds plans; building holds the struct types whose plan is under way.
type deepBuilder struct {
	building map[reflect.Type]bool
}

// structPlan returns the plan of struct type t, or nil when t's plan is being built: a
// type that contains itself (through a pointer, slice or map) keeps its own type there, and
// the values found there go through its MarshalJSON/UnmarshalJSON. Such a nested type's
// plan is cached like any other: a field kept as is only means a shallower twin, still
// correct.
func (b *deepBuilder) structPlan(t reflect.Type) *deepPlan {
	if v, ok := deepPlans.Load(t); ok {
		return v.(*deepPlan)
	}
	if b.building[t] {
		return nil
	}
	b.building[t] = true
	defer delete(b.building, t)

	info := typeInfo(t)
	plan := &deepPlan{kind: deepStruct, typ: t, extra: extraIndex(t), fields: make([]deepField, len(info.fields))}
	sfs := make([]reflect.StructField, len(info.fields))
	for i, f := range info.fields {
		ft := t.FieldByIndex(f.index).Type
		fp := b.fieldPlan(ft)
		if fp != nil {
			ft = fp.plain
			plan.nested = true
		}
		plan.fields[i] = deepField{index: f.index, plan: fp}
		sfs[i] = f.plainField(i, ft)
	}
	plan.plain = reflect.StructOf(sfs)
	if plan.overlay = overlayOf(t, plan); plan.overlay != nil {
		plan.compact = compactType(plan.overlay)
	}
	deepPlans.Store(t, plan)
	return plan
}

// fieldPlan returns the plan of a field of type t, or nil when the twin keeps t: t neither
// is a keeping type nor holds one as a pointer, slice, array or map (value) of it. A named
// slice, array or map type with methods of its own is kept too, so those methods still run.
func (b *deepBuilder) fieldPlan(t reflect.Type) *deepPlan {
	var kind deepKind
	switch t.Kind() {
	case reflect.Struct:
		if !isKeeping(t) {
			return nil
		}
		return b.structPlan(t)
	case reflect.Pointer:
		kind = deepPointer
	case reflect.Slice:
		kind = deepSlice
	case reflect.Array:
		kind = deepArray
	case reflect.Map:
		kind = deepMap
	default:
		return nil
	}
	if kind != deepPointer && (t.NumMethod() > 0 || reflect.PointerTo(t).NumMethod() > 0) {
		return nil
	}
	elem := b.fieldPlan(t.Elem())
	if elem == nil {
		return nil
	}
	plan := &deepPlan{kind: kind, typ: t, elem: elem}
	switch kind {
	case deepPointer:
		plan.plain = reflect.PointerTo(elem.plain)
	case deepSlice:
		plan.plain = reflect.SliceOf(elem.plain)
	case deepArray:
		plan.plain = reflect.ArrayOf(t.Len(), elem.plain)
	case deepMap:
		plan.plain = reflect.MapOf(t.Key(), elem.plain)
	}
	return plan
}

// toPlain copies src, a value of p.typ, into dst, a settable zero value of p.typ's twin.
// It reports false, leaving dst partly filled, as soon as it meets a keeping value with
// unknown keys: only that value's MarshalJSON can write them. Nil pointers, slices and maps
// stay nil, and empty ones stay empty, so that the twin encodes exactly like the value.
func (p *deepPlan) toPlain(dst, src reflect.Value) bool {
	switch p.kind {
	case deepStruct:
		if src.Field(p.extra).Len() > 0 {
			return false
		}
		return p.fieldsToPlain(dst, src)
	case deepPointer:
		if src.IsNil() {
			return true
		}
		e := reflect.New(p.elem.plain)
		if !p.elem.toPlain(e.Elem(), src.Elem()) {
			return false
		}
		dst.Set(e)
	case deepSlice:
		if src.IsNil() {
			return true
		}
		n := src.Len()
		s := reflect.MakeSlice(p.plain, n, n)
		for i := 0; i < n; i++ {
			if !p.elem.toPlain(s.Index(i), src.Index(i)) {
				return false
			}
		}
		dst.Set(s)
	case deepArray:
		for i := 0; i < src.Len(); i++ {
			if !p.elem.toPlain(dst.Index(i), src.Index(i)) {
				return false
			}
		}
	case deepMap:
		if src.IsNil() {
			return true
		}
		m := reflect.MakeMapWithSize(p.plain, src.Len())
		for it := src.MapRange(); it.Next(); {
			e := reflect.New(p.elem.plain).Elem()
			if !p.elem.toPlain(e, it.Value()) {
				return false
			}
			m.SetMapIndex(it.Key(), e)
		}
		dst.Set(m)
	}
	return true
}

// fieldsToPlain is toPlain for a struct, leaving out the check of its own extra field
// (marshalKeeping is handed that of the top-level value).
func (p *deepPlan) fieldsToPlain(dst, src reflect.Value) bool {
	for i, f := range p.fields {
		sv := src.FieldByIndex(f.index)
		if f.plan == nil {
			dst.Field(i).Set(sv)
		} else if !f.plan.toPlain(dst.Field(i), sv) {
			return false
		}
	}
	return true
}

// fromPlain copies src, a value of p.typ's twin, into dst, a settable zero value of p.typ.
// The keeping values it makes have a nil extra, as unmarshalKeeping gives them when they
// have no unknown keys.
func (p *deepPlan) fromPlain(dst, src reflect.Value) {
	switch p.kind {
	case deepStruct:
		for i, f := range p.fields {
			sv, dv := src.Field(i), dst.FieldByIndex(f.index)
			if f.plan == nil {
				dv.Set(sv)
			} else {
				f.plan.fromPlain(dv, sv)
			}
		}
	case deepPointer:
		if src.IsNil() {
			return
		}
		e := reflect.New(p.typ.Elem())
		p.elem.fromPlain(e.Elem(), src.Elem())
		dst.Set(e)
	case deepSlice:
		if src.IsNil() {
			return
		}
		n := src.Len()
		s := reflect.MakeSlice(p.typ, n, n)
		for i := 0; i < n; i++ {
			p.elem.fromPlain(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case deepArray:
		for i := 0; i < src.Len(); i++ {
			p.elem.fromPlain(dst.Index(i), src.Index(i))
		}
	case deepMap:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(p.typ, src.Len())
		for it := src.MapRange(); it.Next(); {
			e := reflect.New(p.typ.Elem()).Elem()
			p.elem.fromPlain(e, it.Value())
			m.SetMapIndex(it.Key(), e)
		}
		dst.Set(m)
	}
}

// marshalDeep encodes the struct rv, whose own extra is empty, in one pass through its
// deep twin. It reports false when the per-level path is to encode it: the deep path is off
// or rv's type is flat, a nested keeping value has unknown keys, or encoding fails (the
// per-level path then returns the error it always has).
func marshalDeep(rv reflect.Value) ([]byte, bool) {
	if perLevelOnly.Load() {
		return nil, false
	}
	plan := deepPlanFor(rv.Type())
	if !plan.nested {
		return nil, false
	}
	var p any
	if plan.overlay != nil && rv.CanAddr() && !copyTwinOnly.Load() {
		if !plan.fieldsClean(rv) {
			return nil, false
		}
		p = overlayPointer(plan.overlay, rv)
	} else {
		twin := reflect.New(plan.plain)
		if !plan.fieldsToPlain(twin.Elem(), rv) {
			return nil, false
		}
		p = twin.Interface()
	}
	// A pointer to the twin encodes like the twin, without copying it into an interface.
	b, err := fastjson.MarshalWithOption(p, fastjson.DisableHTMLEscape())
	if err != nil {
		return nil, false
	}
	return b, true
}

// disallowUnknownFields makes goccy's Unmarshal fail on an object key that matches no
// field, as a Decoder does after DisallowUnknownFields. Unmarshal decodes a whole
// document 30 % faster than a Decoder and without its buffer (the gateway decodes every
// event through here), but goccy offers the flag only on the Decoder; so it is taken
// once from a Decoder's own options. TestDisallowUnknownFieldsOption checks it works.
var disallowUnknownFields = func() fastjson.DecodeOptionFunc {
	dec := fastjson.NewDecoder(strings.NewReader("{}"))
	dec.DisallowUnknownFields()
	var set fastjson.DecodeOption
	_ = dec.DecodeWithOption(&struct{}{}, func(o *fastjson.DecodeOption) { set.Flags = o.Flags })
	return func(o *fastjson.DecodeOption) { o.Flags |= set.Flags }
}()

// unmarshalDeep decodes the JSON object data into the struct rv in one pass through its
// deep twin and reports whether it did. It fails on any unknown key, at any level, and on
// any error, leaving rv as it was; it declines when the deep path is off, rv's type is
// flat, or rv is not zero. Decoding into a zero value needs no copy of rv into the twin,
// and merging into a value already set (a pointer to keep, a map to add to) is left to the
// per-level path, which does it the way encoding/json does.
func unmarshalDeep(data []byte, rv reflect.Value) bool {
	if perLevelOnly.Load() || !rv.IsZero() {
		return false
	}
	plan := deepPlanFor(rv.Type())
	if !plan.nested {
		return false
	}
	if plan.overlay != nil && rv.CanAddr() && !copyTwinOnly.Load() {
		// Straight into rv, seen through its overlay; a failure leaves it zero again.
		if err := fastjson.UnmarshalWithOption(data, overlayPointer(plan.overlay, rv), disallowUnknownFields); err != nil {
			rv.SetZero()
			return false
		}
		return true
	}
	p := reflect.New(plan.plain)
	if err := fastjson.UnmarshalWithOption(data, p.Interface(), disallowUnknownFields); err != nil {
		return false
	}
	plan.fromPlain(rv, p.Elem())
	return true
}

// marshalKeeping encodes the struct v points to as a JSON object, known fields first in
// declaration order, then the unknown keys in extra in sorted order.
func marshalKeeping(v any, extra map[string]json.RawMessage) ([]byte, error) {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	info := typeInfo(rv.Type())
	if len(extra) == 0 {
		// The common case: no unknown keys at any level, so goccy does it in one pass.
		if b, ok := marshalDeep(rv); ok {
			return b, nil
		}
		// A nested value has unknown keys (or encoding fails): one level at a time.
		return fastjson.MarshalWithOption(info.toPlain(rv).Interface(), fastjson.DisableHTMLEscape())
	}
	var buf bytes.Buffer
	// One encoder for every value; Encode appends a newline that is cut off each time.
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	encode := func(v any) error {
		if err := enc.Encode(v); err != nil {
			return err
		}
		buf.Truncate(buf.Len() - 1)
		return nil
	}
	buf.WriteByte('{')
	first := true
	writeKey := func(k string) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		_ = encode(k) // a string always encodes
		buf.WriteByte(':')
	}
	for _, f := range info.fields {
		fv := rv.FieldByIndex(f.index)
		if f.omitEmpty && isEmptyValue(fv) {
			continue
		}
		writeKey(f.name)
		if err := encode(fv.Interface()); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if _, known := info.byName[k]; !known {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := extra[k]
		if len(raw) == 0 {
			raw = json.RawMessage("null")
		}
		writeKey(k)
		buf.Write(raw)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// unmarshalKeeping decodes the JSON object data into the struct v points to and returns
// the keys it does not know, to be kept in the struct's extra field. A JSON null leaves v
// unchanged. Errors name the field path, e.g. "socket.port: ...".
func unmarshalKeeping(data []byte, v any) (map[string]json.RawMessage, error) {
	rv := reflect.ValueOf(v).Elem()
	info := typeInfo(rv.Type())
	// Fast paths: a document with only known keys, at every level, decodes in one pass
	// into the deep twin of the type; one with only known keys at this level decodes into
	// the plain twin, nested keeping values through their own UnmarshalJSON. Anything else
	// (unknown keys, errors) takes the field-by-field path below, which keeps unknown keys
	// and names the field of an error.
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		if unmarshalDeep(t, rv) {
			return nil, nil
		}
		p := info.toPlain(rv)
		if err := fastjson.UnmarshalWithOption(t, p.Addr().Interface(), disallowUnknownFields); err == nil {
			info.fromPlain(p, rv)
			return nil, nil
		}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, describeJSONError("", err)
	}
	if raw == nil {
		return nil, nil
	}
	// Sorted, so that with several bad fields the same one is reported every time.
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var extra map[string]json.RawMessage
	for _, k := range keys {
		i, ok := info.byName[k]
		if !ok {
			if extra == nil {
				extra = map[string]json.RawMessage{}
			}
			extra[k] = raw[k]
			continue
		}
		fv := rv.FieldByIndex(info.fields[i].index)
		if err := json.Unmarshal(raw[k], fv.Addr().Interface()); err != nil {
			return nil, describeJSONError(k, err)
		}
	}
	return extra, nil
}

// fieldPathError is a decoding error located at a JSON field path such as "socket.port".
type fieldPathError struct {
	Path string
	Err  error
}

func (e *fieldPathError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *fieldPathError) Unwrap() error { return e.Err }

// describeJSONError turns an encoding/json error into a fieldPathError under prefix, with a
// message that says what kind of value was expected.
func describeJSONError(prefix string, err error) error {
	join := func(a, b string) string {
		switch {
		case a == "":
			return b
		case b == "":
			return a
		case strings.HasPrefix(b, "["):
			return a + b
		}
		return a + "." + b
	}
	var fpe *fieldPathError
	if errors.As(err, &fpe) {
		return &fieldPathError{Path: join(prefix, fpe.Path), Err: fpe.Err}
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		msg := fmt.Sprintf("expected %s, got %s", describeType(ute.Type), ute.Value)
		if ute.Type.Kind() == reflect.String && ute.Value == "object" {
			// The usual cause: a YAML plain string containing ": " reads as a mapping.
			msg += " (in YAML, quote a value that contains \": \")"
		}
		return &fieldPathError{Path: join(prefix, ute.Field), Err: errors.New(msg)}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &fieldPathError{Path: prefix, Err: fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)}
	}
	return &fieldPathError{Path: prefix, Err: err}
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, zero or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return t.String()
}

// encodeJSON is json.Marshal without HTML escaping, so commands such as `a && b` stay
// readable in dumps.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// isEmptyValue mirrors encoding/json's omitempty rule.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64,
		reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// unknownFieldPaths walks v and lists the JSON paths of every kept unknown key, e.g.
// "subdues" or "check.system.foo", sorted.
func unknownFieldPaths(v reflect.Value, prefix string, out *[]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			unknownFieldPaths(v.Elem(), prefix, out)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // json.RawMessage and []byte hold no structs
		}
		for i := 0; i < v.Len(); i++ {
			unknownFieldPaths(v.Index(i), fmt.Sprintf("%s[%d]", prefix, i), out)
		}
	case reflect.Struct:
		if ef := typeInfo(v.Type()).extraOf(v); ef.IsValid() && ef.Kind() == reflect.Map {
			keys := ef.MapKeys()
			for _, k := range keys {
				*out = append(*out, join(k.String()))
			}
		}
		for _, f := range typeInfo(v.Type()).fields {
			unknownFieldPaths(v.FieldByIndex(f.index), join(f.name), out)
		}
	}
}
