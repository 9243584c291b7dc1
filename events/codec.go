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

	fastjson "github.com/goccy/go-json"
)

// This file holds the small JSON codec every resource uses so that a resource read from
// JSON and written back keeps every field, including keys Picket does not know (a typo such
// as "subdues", or a field a newer Sensu added). Each top-level type keeps such keys in an
// unexported `extra map[string]json.RawMessage` and implements MarshalJSON/UnmarshalJSON
// with marshalKeeping/unmarshalKeeping.
//
// The codec walks the struct itself rather than calling encoding/json on an alias type:
// Check embeds CheckConfig, and an alias of Check would still have CheckConfig's promoted
// MarshalJSON, which would drop every result field. Embedded structs are flattened here
// regardless of their methods; named fields are encoded by encoding/json as usual.

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
	info := &structInfo{byName: map[string]int{}}
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
	var sfs []reflect.StructField
	for i, f := range info.fields {
		src := t.FieldByIndex(f.index)
		tag := f.name
		if f.omitEmpty {
			tag += ",omitempty"
		}
		sfs = append(sfs, reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: src.Type, Tag: reflect.StructTag(`json:"` + tag + `"`)})
	}
	info.plain = reflect.StructOf(sfs)
	v, _ := structInfos.LoadOrStore(t, info)
	return v.(*structInfo)
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

// marshalKeeping encodes the struct v points to as a JSON object, known fields first in
// declaration order, then the unknown keys in extra in sorted order.
func marshalKeeping(v any, extra map[string]json.RawMessage) ([]byte, error) {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	info := typeInfo(rv.Type())
	if len(extra) == 0 {
		// The common case: no unknown keys, so encoding/json does it in one pass.
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
	// Fast path: a document with only known keys decodes in one pass into the plain
	// twin of the type. Anything else (unknown keys, errors) takes the field-by-field
	// path below, which keeps unknown keys and names the field of an error.
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		p := info.toPlain(rv)
		dec := fastjson.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p.Addr().Interface()); err == nil && !dec.More() {
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
		if ef := v.FieldByName(extraField); ef.IsValid() && ef.Kind() == reflect.Map {
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
