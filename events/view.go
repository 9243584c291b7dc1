package events

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"

	"github.com/dop251/goja"
)

// lazyView presents a resource to JavaScript as Synthesize does (its JSON form, with the
// metadata fields also at the top level of every object that has metadata), without
// building that form: each object reads its struct's fields only when an expression
// touches them. A filter that looks at two fields of an event costs two field reads, not
// an encoding of the whole event. Writes by the script stay in the view.
type lazyView struct {
	vm    *goja.Runtime
	v     reflect.Value // a struct
	info  *structInfo
	cache viewCache
	gone  map[string]bool
}

// viewCache holds the values a script read or wrote on one object, in the order it first
// touched them. A filter touches a few keys of each object it looks at, and a search of
// a short slice costs less than a map's allocation for every object of every event.
type viewCache []viewEntry

type viewEntry struct {
	key string
	val goja.Value
}

func (c viewCache) get(key string) (goja.Value, bool) {
	for i := range c {
		if c[i].key == key {
			return c[i].val, true
		}
	}
	return nil, false
}

func (c *viewCache) set(key string, val goja.Value) {
	for i := range *c {
		if (*c)[i].key == key {
			(*c)[i].val = val
			return
		}
	}
	*c = append(*c, viewEntry{key, val})
}

func (c *viewCache) delete(key string) {
	*c = slices.DeleteFunc(*c, func(e viewEntry) bool { return e.key == key })
}

var eventType = reflect.TypeFor[Event]()

// eventExtra is one of the fields Sensu computes for an event's scripts
// (SynthesizeExtras): has_check, has_metrics, is_incident, is_resolution, is_silenced.
// Scripts can read them; they are not listed among the event's keys, so an event a
// mutator returns as it is encodes as stored.
func eventExtra(ev Event, key string) (bool, bool) {
	switch key {
	case "has_check":
		return ev.Check != nil, true
	case "has_metrics":
		return ev.HasMetrics(), true
	case "is_incident":
		return ev.IsIncident(), true
	case "is_resolution":
		return ev.IsResolution(), true
	case "is_silenced":
		return ev.IsSilenced(), true
	}
	return false, false
}

// metaLifted are the ObjectMeta fields Synthesize lifts to the top level.
var metaLifted = []string{"name", "namespace", "labels", "annotations", "created_by"}

// jsValue turns a Go value into what the script sees.
func jsValue(vm *goja.Runtime, v reflect.Value) goja.Value {
	switch v.Kind() {
	case reflect.Invalid:
		return goja.Null()
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return goja.Null()
		}
		return jsValue(vm, v.Elem())
	case reflect.Struct:
		return vm.NewDynamicObject(&lazyView{vm: vm, v: v, info: typeInfo(v.Type())})
	case reflect.Slice:
		if v.IsNil() {
			return goja.Null()
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			var x any
			if json.Unmarshal(v.Bytes(), &x) != nil {
				return goja.Null()
			}
			return vm.ToValue(x)
		}
		return vm.NewDynamicArray(&lazyArray{vm: vm, v: v})
	case reflect.Map:
		if v.IsNil() {
			return goja.Null()
		}
		out := make(map[string]any, v.Len())
		it := v.MapRange()
		for it.Next() {
			out[it.Key().String()] = it.Value().Interface()
		}
		return vm.ToValue(out)
	case reflect.String:
		return vm.ToValue(v.String())
	case reflect.Bool:
		return vm.ToValue(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return vm.ToValue(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return vm.ToValue(int64(v.Uint()))
	case reflect.Float32, reflect.Float64:
		return vm.ToValue(v.Float())
	}
	return vm.ToValue(v.Interface())
}

// field reads key the way the JSON form has it: a field, an unknown key kept from the
// input, or a lifted metadata field.
func (o *lazyView) field(key string) (goja.Value, bool) {
	if i, ok := o.info.byName[key]; ok {
		f := o.info.fields[i]
		fv := o.v.FieldByIndex(f.index)
		if f.omitEmpty && isEmptyValue(fv) {
			return nil, false
		}
		return jsValue(o.vm, fv), true
	}
	if ef := o.info.extraOf(o.v); ef.IsValid() && ef.Kind() == reflect.Map && ef.Len() > 0 {
		if raw := ef.MapIndex(reflect.ValueOf(key)); raw.IsValid() {
			var x any
			if json.Unmarshal(raw.Bytes(), &x) == nil {
				return o.vm.ToValue(x), true
			}
		}
	}
	if o.v.Type() == eventType {
		if v, ok := eventExtra(o.v.Interface().(Event), key); ok {
			return o.vm.ToValue(v), true
		}
	}
	if slices.Contains(metaLifted, key) {
		if i, ok := o.info.byName["metadata"]; ok {
			if m, ok := o.v.FieldByIndex(o.info.fields[i].index).Interface().(ObjectMeta); ok {
				return (&lazyView{vm: o.vm, v: reflect.ValueOf(m), info: typeInfo(reflect.TypeFor[ObjectMeta]())}).field(key)
			}
		}
	}
	return nil, false
}

func (o *lazyView) Get(key string) goja.Value {
	if v, ok := o.cache.get(key); ok {
		return v
	}
	if o.gone[key] {
		return nil
	}
	v, ok := o.field(key)
	if !ok {
		return nil
	}
	o.cache.set(key, v) // the same object each time, as with a plain map
	return v
}

func (o *lazyView) Set(key string, val goja.Value) bool {
	o.cache.set(key, val)
	delete(o.gone, key)
	return true
}

func (o *lazyView) Has(key string) bool { return o.Get(key) != nil }

func (o *lazyView) Delete(key string) bool {
	o.cache.delete(key)
	if o.gone == nil {
		o.gone = map[string]bool{}
	}
	o.gone[key] = true
	return true
}

func (o *lazyView) Keys() []string {
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] && o.Has(k) {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, f := range o.info.fields {
		add(f.name)
	}
	if ef := o.info.extraOf(o.v); ef.IsValid() && ef.Kind() == reflect.Map {
		var extra []string
		for _, k := range ef.MapKeys() {
			extra = append(extra, k.String())
		}
		sort.Strings(extra)
		for _, k := range extra {
			add(k)
		}
	}
	if _, ok := o.info.byName["metadata"]; ok {
		for _, k := range metaLifted {
			add(k)
		}
	}
	for _, e := range o.cache {
		add(e.key)
	}
	return keys
}

// lazyArray presents a slice to JavaScript, converting elements as they are read.
type lazyArray struct {
	vm    *goja.Runtime
	v     reflect.Value
	cache map[int]goja.Value
	n     int
	set   bool
}

func (a *lazyArray) Len() int {
	if a.set {
		return a.n
	}
	return a.v.Len()
}

func (a *lazyArray) Get(i int) goja.Value {
	if v, ok := a.cache[i]; ok {
		return v
	}
	if i < 0 || i >= a.Len() || i >= a.v.Len() {
		return nil
	}
	v := jsValue(a.vm, a.v.Index(i))
	if a.cache == nil {
		a.cache = map[int]goja.Value{}
	}
	a.cache[i] = v
	return v
}

func (a *lazyArray) Set(i int, val goja.Value) bool {
	if i < 0 {
		return false
	}
	if a.cache == nil {
		a.cache = map[int]goja.Value{}
	}
	a.cache[i] = val
	if i >= a.Len() {
		a.SetLen(i + 1)
	}
	return true
}

func (a *lazyArray) SetLen(n int) bool {
	a.n, a.set = n, true
	return true
}
