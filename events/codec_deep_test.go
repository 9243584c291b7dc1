package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unsafe"

	fastjson "github.com/goccy/go-json"
)

// The deep path of the codec (see codec.go) must give exactly what the per-level path
// gives: the same bytes when encoding, the same values (nil and empty kept apart, unknown
// keys kept at their level) and the same errors when decoding. These tests run both on
// the same inputs; perLevelOnly switches the deep path off.

// perLevel runs f with the deep path switched off.
func perLevel[T any](f func() T) T {
	perLevelOnly.Store(true)
	defer perLevelOnly.Store(false)
	return f()
}

type encodeResult struct {
	out []byte
	err string
}

func encodeWith(v json.Marshaler) encodeResult {
	b, err := v.MarshalJSON()
	r := encodeResult{out: b}
	if err != nil {
		r.err = err.Error()
	}
	return r
}

// checkEncode fails t unless v encodes to the same bytes (or error) both ways, and returns
// the bytes.
func checkEncode(t *testing.T, name string, v json.Marshaler) []byte {
	t.Helper()
	deep := encodeWith(v)
	old := perLevel(func() encodeResult { return encodeWith(v) })
	if !bytes.Equal(deep.out, old.out) || deep.err != old.err {
		t.Errorf("%s: deep and per-level encodings differ\n deep:      %s (err %q)\n per level: %s (err %q)", name, deep.out, deep.err, old.out, old.err)
	}
	return deep.out
}

type decodeResult struct {
	v   any
	err string
}

func decodeWith(data []byte, fresh func() json.Unmarshaler) decodeResult {
	v := fresh()
	err := v.UnmarshalJSON(data)
	r := decodeResult{v: v}
	if err != nil {
		r.err = err.Error()
	}
	return r
}

// checkDecode fails t unless data decodes into fresh() to deeply equal values (unexported
// extra maps included) and the same error both ways, and returns the deep path's value.
func checkDecode(t *testing.T, name string, data []byte, fresh func() json.Unmarshaler) (any, error) {
	t.Helper()
	deep := decodeWith(data, fresh)
	old := perLevel(func() decodeResult { return decodeWith(data, fresh) })
	if deep.err != old.err {
		t.Errorf("%s: decoding %s: deep error %q, per-level error %q", name, data, deep.err, old.err)
	}
	if !reflect.DeepEqual(deep.v, old.v) {
		t.Errorf("%s: decoding %s: deep and per-level values differ\n deep:      %s\n per level: %s", name, data, dumpValue(deep.v), dumpValue(old.v))
	}
	if deep.err != "" {
		return deep.v, fmt.Errorf("%s", deep.err)
	}
	return deep.v, nil
}

// dumpValue shows a value with its unexported fields, nil and empty apart.
func dumpValue(v any) string { return fmt.Sprintf("%#v", v) }

func newEvent() json.Unmarshaler { return &Event{} }

// checkEventJSON decodes data as an event both ways and, when it decodes, encodes the
// result both ways.
func checkEventJSON(t *testing.T, name, data string) *Event {
	t.Helper()
	v, err := checkDecode(t, name, []byte(data), newEvent)
	if err != nil {
		return nil
	}
	ev := v.(*Event)
	checkEncode(t, name, ev)
	return ev
}

func TestDeepCodecEvents(t *testing.T) {
	base := benchEventJSON
	hooks := `"hooks":[{"metadata":{"name":"ps"},"command":"ps","timeout":10,"stdin":false,"executed":1,"issued":2,"output":"x","status":0},{"metadata":{"name":"df"},"command":"df","timeout":10,"stdin":false,"executed":1,"issued":2,"output":"","status":1}]`
	withHooks := strings.Replace(base, `"history":`, hooks+`,"history":`, 1)
	cases := map[string]string{
		"bench event":            base,
		"hooks":                  withHooks,
		"unknown at top":         strings.Replace(base, `"timestamp"`, `"zz_top":{"a":[1, 2]},"timestamp"`, 1),
		"unknown in entity":      strings.Replace(base, `"entity_class"`, `"zz_entity":true,"entity_class"`, 1),
		"unknown in system":      strings.Replace(base, `"hostname"`, `"zz_system":"x","hostname"`, 1),
		"unknown in check":       strings.Replace(base, `"command"`, `"zz_check":null,"command"`, 1),
		"unknown in hook":        strings.Replace(withHooks, `"command":"df"`, `"zz_hook":[],"command":"df"`, 1),
		"unknown everywhere":     strings.NewReplacer(`"timestamp"`, `"a1":1,"timestamp"`, `"entity_class"`, `"a2":2,"entity_class"`, `"hostname"`, `"a3":3,"hostname"`, `"command"`, `"a4":4,"command"`).Replace(withHooks),
		"unknown in hooks only":  strings.Replace(withHooks, `"command":"ps"`, `"zz":1,"command":"ps"`, 1),
		"unknown in metadata":    strings.Replace(base, `"labels"`, `"zz_meta":1,"labels"`, 1),
		"unknown in history":     strings.Replace(base, `{"status":0,`, `{"zz":0,"status":0,`, 1),
		"empty":                  `{}`,
		"null entity":            `{"entity":null,"check":null}`,
		"empty entity":           `{"entity":{},"check":{}}`,
		"null system":            `{"entity":{"system":null}}`,
		"null hooks":             `{"check":{"hooks":null,"history":null,"handlers":null}}`,
		"empty hooks":            `{"check":{"hooks":[],"history":[],"handlers":[]}}`,
		"null hook":              `{"check":{"hooks":[null,{}]}}`,
		"empty lists":            `{"entity":{"subscriptions":[],"redact":[],"system":{"network":{"interfaces":[]}}},"pipelines":[]}`,
		"null lists":             `{"entity":{"subscriptions":null,"redact":null,"system":{"network":{"interfaces":null}}},"pipelines":null}`,
		"raw messages":           `{"check":{"subdue":{ "a" : [ 1 ] },"output_metric_thresholds":null},"entity":{"system":{"cloud_provider":"","processes":[ {"pid": 1} ]}}}`,
		"html and separators":    `{"id":"<a&b>\u2028\u2029","entity":{"metadata":{"name":"<x>"},"system":{"hostname":"a&&b"}},"check":{"command":"a && b > c","output":"\u003c"}}`,
		"escapes":                `{"id":"\ud83d\ude00 \" \\ \/ \b\f\n\r\t \u0000","check":{"output":"é\u00e9"}}`,
		"case-folded keys":       `{"Timestamp":1,"ENTITY":{"System":{"HostName":"h"}},"Check":{"Hooks":[{"Command":"c"}]}}`,
		"duplicate keys":         `{"entity":{"system":{"os":"a"},"system":{"arch":"b"}},"entity":{"user":"u"},"check":{"hooks":[{"command":"a"}],"hooks":[{"output":"b"}]}}`,
		"duplicate with unknown": `{"entity":{"zz":1},"entity":{"user":"u"}}`,
		"whitespace":             " \n{ \"entity\" : { \"system\" : { \"os\" : \"linux\" } } , \"check\" : { \"hooks\" : [ { } ] } }\n ",
		"metrics":                `{"metrics":{"handlers":["influx"],"points":[{"name":"cpu","value":1.5,"timestamp":1,"tags":[{"name":"a","value":"b"}]}]}}`,
		"big numbers":            `{"timestamp":9223372036854775807,"check":{"duration":1e300,"status":4294967295,"interval":-1}}`,
		"float formats":          `{"check":{"duration":0.000001,"executed":1}}`,
		"trailing data":          `{"entity":{}} {}`,
		"truncated":              `{"entity":{"system":{`,
		"not an object":          `[]`,
		"null":                   `null`,
		"string":                 `"x"`,
		"bad number":             `{"timestamp":"x"}`,
		"overflow":               `{"check":{"status":-1}}`,
		"bad nested number":      `{"check":{"hooks":[{"timeout":"x"}]}}`,
		"bad system number":      `{"entity":{"system":{"arm_version":1.5}}}`,
		"bad raw":                `{"entity":{"system":{"processes":{"a":}}}}`,
		"invalid utf-8":          "{\"id\":\"\xff\",\"entity\":{\"system\":{\"hostname\":\"\xfe\"}}}",
	}
	// A keeping value where a list, a number, a string, a boolean, null or an empty object
	// stands: each must be an error, or no value, exactly as per level.
	for _, pos := range []string{"entity", "check"} {
		for _, bad := range []string{`[]`, `1`, `"x"`, `true`, `[{}]`} {
			cases[pos+" is "+bad] = `{"` + pos + `":` + bad + `}`
		}
	}
	for _, bad := range []string{`[]`, `1`, `"x"`, `true`, `null`, `{}`} {
		cases["system is "+bad] = `{"entity":{"system":` + bad + `}}`
		cases["hooks is "+bad] = `{"check":{"hooks":` + bad + `}}`
		cases["hook is "+bad] = `{"check":{"hooks":[` + bad + `]}}`
	}
	names := make([]string, 0, len(cases))
	for name := range cases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		checkEventJSON(t, name, cases[name])
	}

	// What the cases must show, beyond agreeing with the per-level path.
	ev := checkEventJSON(t, "", cases["unknown everywhere"])
	var paths []string
	unknownFieldPaths(reflect.ValueOf(ev).Elem(), "", &paths)
	sort.Strings(paths)
	if want := []string{"a1", "check.a4", "check.hooks[0].a4", "check.hooks[1].a4", "entity.a2", "entity.system.a3"}; !slices.Equal(paths, want) {
		t.Errorf("unknown fields = %v, want %v", paths, want)
	}
	ev = checkEventJSON(t, "", cases["null entity"])
	if ev.Entity != nil || ev.Check != nil {
		t.Errorf("null entity and check decoded to %v, %v", ev.Entity, ev.Check)
	}
	ev = checkEventJSON(t, "", cases["empty hooks"])
	if ev.Check.Hooks == nil || len(ev.Check.Hooks) != 0 || ev.Check.History == nil {
		t.Errorf("empty lists decoded to %#v, %#v", ev.Check.Hooks, ev.Check.History)
	}
	ev = checkEventJSON(t, "", cases["null hooks"])
	if ev.Check.Hooks != nil || ev.Check.History != nil {
		t.Errorf("null lists decoded to %#v, %#v", ev.Check.Hooks, ev.Check.History)
	}
}

// TestDeepCodecEncode encodes values built in Go, not decoded: nil and empty lists and
// maps, omitempty fields, unknown keys set at one level only, the extra of an embedded
// CheckConfig (which Check's codec ignores), and values that do not encode.
func TestDeepCodecEncode(t *testing.T) {
	extra := map[string]json.RawMessage{"zz": json.RawMessage(`{"a":1}`), "status": json.RawMessage(`9`), "empty": nil}
	hook := func(x map[string]json.RawMessage) Hook {
		return Hook{HookConfig: HookConfig{Metadata: ObjectMeta{Name: "h"}, Command: "c", extra: x}, Output: "o", extra: x}
	}
	full := func() *Event {
		return &Event{
			Metadata:  ObjectMeta{Name: "n", Labels: map[string]string{"b": "2", "a": "1"}, Annotations: map[string]string{}},
			Timestamp: 1,
			Entity: &Entity{Metadata: ObjectMeta{Name: "web"}, Subscriptions: []string{}, Redact: []string{},
				System: System{Hostname: "<h>", Network: Network{Interfaces: []NetworkInterface{{Name: "lo"}, {Addresses: []string{}}}}, CloudProvider: json.RawMessage(`{ "x" : 1 }`)}},
			Check: &Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "c"}, Command: "a && b", Handlers: []string{},
				CheckHooks: []map[string][]string{{"1": {"x"}}, nil, {}}, ProxyRequests: &ProxyRequests{}, Secrets: []Secret{}, Subdue: json.RawMessage(`null`)},
				History: []History{{}}, Hooks: []Hook{hook(nil), hook(map[string]json.RawMessage{})}, Silenced: []string{}},
			Metrics:   &Metrics{Points: []MetricPoint{{Name: "p", Value: -0.5}}},
			Pipelines: []ResourceReference{},
		}
	}
	cases := map[string]func() json.Marshaler{
		"zero":        func() json.Marshaler { return &Event{} },
		"zero value":  func() json.Marshaler { return Event{} },
		"full":        func() json.Marshaler { return full() },
		"empty check": func() json.Marshaler { return &Event{Entity: &Entity{}, Check: &Check{}} },
		"empty hooks": func() json.Marshaler { e := full(); e.Check.Hooks = []Hook{}; return e },
		"nil hooks":   func() json.Marshaler { e := full(); e.Check.Hooks = nil; return e },
		"empty extras": func() json.Marshaler {
			e := full()
			e.extra, e.Entity.extra, e.Check.extra = map[string]json.RawMessage{}, map[string]json.RawMessage{}, map[string]json.RawMessage{}
			return e
		},
		"top extra":    func() json.Marshaler { e := full(); e.extra = extra; return e },
		"entity extra": func() json.Marshaler { e := full(); e.Entity.extra = extra; return e },
		"system extra": func() json.Marshaler { e := full(); e.Entity.System.extra = extra; return e },
		"check extra":  func() json.Marshaler { e := full(); e.Check.extra = extra; return e },
		"hook extra":   func() json.Marshaler { e := full(); e.Check.Hooks[1] = hook(extra); return e },
		"config extra": func() json.Marshaler { e := full(); e.Check.CheckConfig.extra = extra; return e },
		"all extras": func() json.Marshaler {
			e := full()
			e.extra, e.Entity.extra, e.Entity.System.extra, e.Check.extra, e.Check.Hooks[0] = extra, extra, extra, extra, hook(extra)
			return e
		},
		"check alone":  func() json.Marshaler { return full().Check },
		"entity alone": func() json.Marshaler { return full().Entity },
		"system alone": func() json.Marshaler { return full().Entity.System },
		"hook alone":   func() json.Marshaler { return hook(extra) },
		"NaN":          func() json.Marshaler { e := full(); e.Check.Duration = math.NaN(); return e },
		"NaN in hook":  func() json.Marshaler { e := full(); e.Check.Hooks[0].Duration = math.Inf(1); return e },
		"bad raw":      func() json.Marshaler { e := full(); e.Entity.System.Processes = json.RawMessage(`{"a":`); return e },
		"bad raw, extra": func() json.Marshaler {
			e := full()
			e.Entity.System.Processes = json.RawMessage(`[1,]`)
			e.Check.extra = extra
			return e
		},
		"invalid utf-8": func() json.Marshaler { e := full(); e.ID, e.Entity.System.OS = "\xff", "a\xfeb"; return e },
	}
	for name, v := range cases {
		out := checkEncode(t, name, v())
		if out == nil {
			continue
		}
		// And what it encodes to decodes alike.
		switch v().(type) {
		case *Event, Event:
			checkEventJSON(t, name+" (decoded)", string(out))
		}
	}
}

// TestDeepCodecCorpus decodes the spec of every document of the Sensu examples corpus into
// its resource type both ways, and encodes the result both ways, before and after
// SetDefaults.
func TestDeepCodecCorpus(t *testing.T) {
	docs := loadCorpus(t)
	for _, d := range docs {
		k, ok := LookupKind(d.w.Type)
		if !ok {
			t.Errorf("%s: unknown type %q", d.id, d.w.Type)
			continue
		}
		fresh := func() json.Unmarshaler { return k.New().(json.Unmarshaler) }
		v, err := checkDecode(t, d.id, d.w.Spec, fresh)
		if err != nil {
			continue
		}
		r := v.(Resource)
		checkEncode(t, d.id, r.(json.Marshaler))
		SetDefaults(r, "")
		out := checkEncode(t, d.id+" with defaults", r.(json.Marshaler))
		checkDecode(t, d.id+" with defaults", out, fresh)
	}
}

// TestDeepCodecIntoSetValues decodes into values already set: the deep path leaves those to
// the per-level path, which merges the way encoding/json does.
func TestDeepCodecIntoSetValues(t *testing.T) {
	set := func() json.Unmarshaler {
		return &Event{Timestamp: 5, Entity: &Entity{User: "u", System: System{OS: "os"}, extra: map[string]json.RawMessage{"k": json.RawMessage(`1`)}},
			Check: &Check{Hooks: []Hook{{Output: "a"}, {Output: "b"}}}, extra: map[string]json.RawMessage{"t": json.RawMessage(`2`)}}
	}
	for _, data := range []string{
		`{}`, `{"entity":{"system":{"arch":"x"}}}`, `{"entity":null}`, `{"check":{"hooks":[{"status":1}]}}`,
		`{"entity":{"zz":1},"zz":2}`, benchEventJSON,
	} {
		checkDecode(t, "set: "+data, []byte(data), set)
	}
}

// recNode contains itself: its deep twin must keep its own type in those places.
type recNode struct {
	Name   string             `json:"name"`
	Kids   []recNode          `json:"kids"`
	Next   *recNode           `json:"next,omitempty"`
	ByName map[string]recNode `json:"by_name,omitempty"`
	Other  *mutualB           `json:"other,omitempty"`

	extra map[string]json.RawMessage
}

func (n recNode) MarshalJSON() ([]byte, error) { return marshalKeeping(&n, n.extra) }

func (n *recNode) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, n)
	n.extra = extra
	return err
}

// mutualA and mutualB contain each other.
type mutualA struct {
	B     *mutualB `json:"b"`
	Value int      `json:"value"`

	extra map[string]json.RawMessage
}

func (a mutualA) MarshalJSON() ([]byte, error) { return marshalKeeping(&a, a.extra) }

func (a *mutualA) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, a)
	a.extra = extra
	return err
}

type mutualB struct {
	A   []mutualA `json:"a"`
	Rec *recNode  `json:"rec,omitempty"`

	extra map[string]json.RawMessage
}

func (m mutualB) MarshalJSON() ([]byte, error) { return marshalKeeping(&m, m.extra) }

func (m *mutualB) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, m)
	m.extra = extra
	return err
}

// hookList is a named slice of a keeping type without methods: it is inlined.
type hookList []Hook

// sortedHooks has a method of its own: it is kept as is.
type sortedHooks []Hook

func (s sortedHooks) Len() int { return len(s) }

// holder holds keeping types in every kind of place the deep twin handles.
type holder struct {
	Checks     map[string]Check           `json:"checks"`
	PChecks    map[string]*Check          `json:"p_checks,omitempty"`
	Pair       [2]Hook                    `json:"pair"`
	Sys        *System                    `json:"sys"`
	SysOE      System                     `json:"sys_oe,omitempty"`
	PairOE     [2]Hook                    `json:"pair_oe,omitempty"`
	NoneOE     [0]Hook                    `json:"none_oe,omitempty"`
	MapOE      map[string]Hook            `json:"map_oe,omitempty"`
	EmptyOE    []Hook                     `json:"empty_oe,omitempty"`
	Hooks      *[]Hook                    `json:"hooks,omitempty"`
	Nested     [][]*Entity                `json:"nested"`
	Nodes      []*recNode                 `json:"nodes"`
	A          mutualA                    `json:"a"`
	List       hookList                   `json:"list"`
	Sorted     sortedHooks                `json:"sorted"`
	NS         Namespace                  `json:"ns"`
	Users      []User                     `json:"users"`
	Any        any                        `json:"any"`
	holderPart                            // flattened
	Raw        map[string]json.RawMessage `json:"raw"`

	extra map[string]json.RawMessage
}

type holderPart struct {
	Ev  *Event `json:"ev"`
	Tag string `json:"tag,omitempty"`
}

func (h holder) MarshalJSON() ([]byte, error) { return marshalKeeping(&h, h.extra) }

func (h *holder) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, h)
	h.extra = extra
	return err
}

func TestDeepCodecTypes(t *testing.T) {
	plan := deepPlanFor(reflect.TypeFor[holder]())
	kept := map[string]bool{}
	for i, f := range typeInfo(plan.typ).fields {
		if plan.fields[i].plan == nil {
			kept[f.name] = true
		}
	}
	want := map[string]bool{"sorted": true, "ns": true, "users": true, "any": true, "raw": true, "tag": true}
	if !reflect.DeepEqual(kept, want) {
		t.Errorf("fields kept as is = %v, want %v", kept, want)
	}
	// recNode's twin keeps recNode wherever it contains itself.
	rec := deepPlanFor(reflect.TypeFor[recNode]())
	for i, want := range []reflect.Type{reflect.TypeFor[[]recNode](), reflect.TypeFor[*recNode](), reflect.TypeFor[map[string]recNode]()} {
		if got := rec.plain.Field(i + 1).Type; got != want {
			t.Errorf("recNode twin field %d is a %v, want %v", i+1, got, want)
		}
	}
	// Named containers: inlined without methods, kept with.
	deepBuildMu.Lock()
	b := deepBuilder{building: map[reflect.Type]bool{}}
	list, sorted := b.fieldPlan(reflect.TypeFor[hookList]()), b.fieldPlan(reflect.TypeFor[sortedHooks]())
	deepBuildMu.Unlock()
	if list == nil || sorted != nil {
		t.Errorf("hookList must be inlined, sortedHooks kept")
	}

	ns := Namespace{Name: "old"}
	ns.Meta().Name = "renamed" // only Namespace's own MarshalJSON applies this
	extra := map[string]json.RawMessage{"zz": json.RawMessage(`1`)}
	h := &holder{
		Checks:  map[string]Check{"a": {Status: 1}, "b": {CheckConfig: CheckConfig{Command: "x"}}},
		PChecks: map[string]*Check{"nil": nil, "c": {Output: "o"}},
		Pair:    [2]Hook{{Output: "1"}, {Status: 2}},
		Sys:     &System{OS: "linux"},
		MapOE:   map[string]Hook{},
		EmptyOE: []Hook{},
		Hooks:   &[]Hook{{}},
		Nested:  [][]*Entity{nil, {}, {nil, {User: "u"}}},
		Nodes: []*recNode{nil, {Name: "r", Kids: []recNode{{Name: "k"}}, Next: &recNode{Name: "n"}, ByName: map[string]recNode{"x": {}},
			Other: &mutualB{A: []mutualA{{Value: 1}}}}},
		A:          mutualA{B: &mutualB{A: []mutualA{{Value: 2, B: &mutualB{}}}, Rec: &recNode{}}},
		List:       hookList{{Output: "l"}},
		Sorted:     sortedHooks{{Output: "s"}},
		NS:         ns,
		Users:      []User{{Username: "u", Groups: []string{}}},
		Any:        Hook{Output: "any"},
		holderPart: holderPart{Ev: &Event{Entity: &Entity{}}, Tag: "t"},
		Raw:        map[string]json.RawMessage{"r": json.RawMessage(`[ 1 ]`)},
	}
	out := checkEncode(t, "holder", h)
	if !strings.Contains(string(out), `"ns":{"name":"renamed"}`) {
		t.Errorf("Namespace's own MarshalJSON did not run: %s", out)
	}
	fresh := func() json.Unmarshaler { return &holder{} }
	checkDecode(t, "holder", out, fresh)

	// Unknown keys in each kind of place, in values and in documents.
	for name, set := range map[string]func(h *holder){
		"map value":     func(h *holder) { c := h.Checks["a"]; c.extra = extra; h.Checks["a"] = c },
		"map pointer":   func(h *holder) { h.PChecks["c"].extra = extra },
		"array":         func(h *holder) { h.Pair[1].extra = extra },
		"pointer":       func(h *holder) { h.Sys.extra = extra },
		"slice pointer": func(h *holder) { (*h.Hooks)[0].extra = extra },
		"nested slices": func(h *holder) { h.Nested[2][1].System.extra = extra },
		"recursive":     func(h *holder) { h.Nodes[1].Kids[0].extra = extra },
		"recursive ptr": func(h *holder) { h.Nodes[1].Next.extra = extra },
		"mutual":        func(h *holder) { h.A.B.A[0].B.extra = extra },
		"named slice":   func(h *holder) { h.List[0].extra = extra },
		"kept slice":    func(h *holder) { h.Sorted[0].extra = extra },
		"embedded":      func(h *holder) { h.Ev.Entity.extra = extra },
		"top":           func(h *holder) { h.extra = extra },
	} {
		v, err := checkDecode(t, name, out, fresh)
		if err != nil {
			continue
		}
		hv := *v.(*holder)
		hv.NS.Meta().Name = "renamed"
		set(&hv)
		withExtra := checkEncode(t, name, &hv)
		if !strings.Contains(string(withExtra), `"zz":1`) {
			t.Errorf("%s: unknown key lost: %s", name, withExtra)
		}
		back, err := checkDecode(t, name+" (decoded)", withExtra, fresh)
		if err == nil {
			if again := checkEncode(t, name+" (decoded)", back.(*holder)); !bytes.Equal(again, withExtra) {
				t.Errorf("%s: decoded and encoded again:\n %s\nwant\n %s", name, again, withExtra)
			}
		}
	}
}

// TestDeepTwinHasNoKeepingTypes pins the point of the deep path: nothing in the deep twin of
// an event has a MarshalJSON of marshalKeeping's, so goccy calls none and compacts none.
func TestDeepTwinHasNoKeepingTypes(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Event](), reflect.TypeFor[Entity](), reflect.TypeFor[Check]()} {
		seen := map[reflect.Type]bool{}
		var walk func(t2 reflect.Type, path string)
		walk = func(t2 reflect.Type, path string) {
			if seen[t2] {
				return
			}
			seen[t2] = true
			if isKeeping(t2) {
				t.Errorf("%v: the deep twin holds %v at %s", typ, t2, path)
			}
			switch t2.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
				walk(t2.Elem(), path+"[]")
			case reflect.Struct:
				for i := 0; i < t2.NumField(); i++ {
					walk(t2.Field(i).Type, path+"."+t2.Field(i).Tag.Get("json"))
				}
			}
		}
		walk(deepPlanFor(typ).plain, "")
		if !seen[reflect.TypeFor[ObjectMeta]()] {
			t.Errorf("%v: walk did not reach the twin's plain fields", typ)
		}
	}
}

// TestDeepCodecRandom compares both paths on random events: random values encoded, their
// encodings decoded, and those encodings with unknown keys added at random places.
func TestDeepCodecRandom(t *testing.T) {
	forRandomEvents(1, 2, func(i int, rng *rand.Rand, ev *Event) {
		name := fmt.Sprintf("random %d", i)
		out := checkEncode(t, name, ev)
		if out == nil {
			return
		}
		checkEventJSON(t, name, string(out))
		var doc any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		addUnknownKeys(rng, doc)
		mutated, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		checkEventJSON(t, name+" with unknown keys", string(mutated))
	})
}

// forRandomEvents calls f with random events (randomFill), 400 of them or 50 with -short,
// drawn from a generator seeded with s1 and s2 that f may draw from too; it returns how
// many.
func forRandomEvents(s1, s2 uint64, f func(i int, rng *rand.Rand, ev *Event)) int {
	n := 400
	if testing.Short() {
		n = 50
	}
	rng := rand.New(rand.NewPCG(s1, s2))
	for i := 0; i < n; i++ {
		ev := &Event{}
		randomFill(rng, reflect.ValueOf(ev).Elem(), 0)
		f(i, rng, ev)
	}
	return n
}

var randomStrings = []string{"", "a", "web-01", "<a&b>", "line\u2028sep", "é", `q"uote`, "tab\t\n", "\x00", "\xff", "check-cpu.sh -w 75 && echo ok"}

var randomRaw = []json.RawMessage{nil, json.RawMessage(`null`), json.RawMessage(`{}`), json.RawMessage(`{ "a" : [1, 2.5, "x"] }`), json.RawMessage(`""`), json.RawMessage(`[ ]`), json.RawMessage(`"<&>"`)}

var rawType = reflect.TypeFor[json.RawMessage]()

// randomFill sets v, a settable value, to something random: nil, empty and filled lists and
// maps, set and unset pointers, and unknown keys (extra) on keeping structs now and then.
func randomFill(rng *rand.Rand, v reflect.Value, depth int) {
	if v.Type() == rawType {
		v.Set(reflect.ValueOf(randomRaw[rng.IntN(len(randomRaw))]))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(randomStrings[rng.IntN(len(randomStrings))])
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if rng.IntN(3) > 0 {
			v.SetInt(rng.Int64N(1<<uint(v.Type().Bits()-2)) - 1<<uint(v.Type().Bits()-3))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rng.IntN(3) > 0 {
			v.SetUint(rng.Uint64N(1 << uint(v.Type().Bits()-1)))
		}
	case reflect.Float32, reflect.Float64:
		switch rng.IntN(6) {
		case 0:
		case 1:
			v.SetFloat(1e21)
		case 2:
			v.SetFloat(-0.000001)
		default:
			v.SetFloat(rng.Float64() * 1000)
		}
	case reflect.Pointer:
		if depth > 6 || rng.IntN(4) == 0 {
			return
		}
		p := reflect.New(v.Type().Elem())
		randomFill(rng, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		switch r := rng.IntN(5); {
		case r == 0 || depth > 6:
		case r == 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			n := 1 + rng.IntN(2)
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := 0; i < n; i++ {
				randomFill(rng, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Map:
		switch r := rng.IntN(4); {
		case r == 0 || depth > 6:
		case r == 1:
			v.Set(reflect.MakeMap(v.Type()))
		default:
			m := reflect.MakeMap(v.Type())
			for i := 0; i < 1+rng.IntN(3); i++ {
				k := reflect.New(v.Type().Key()).Elem()
				randomFill(rng, k, depth+1)
				e := reflect.New(v.Type().Elem()).Elem()
				randomFill(rng, e, depth+1)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if v.Type().Field(i).Name == extraField {
				if rng.IntN(8) == 0 {
					x := map[string]json.RawMessage{}
					if rng.IntN(2) == 0 {
						x["zz_unknown"] = json.RawMessage(`{"k":[1]}`)
						x["name"] = json.RawMessage(`"shadowed"`)
					}
					// Unexported: set through its address.
					reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(x))
				}
				continue
			}
			if f.CanSet() {
				randomFill(rng, f, depth+1)
			}
		}
	}
}

// addUnknownKeys adds an unknown key to about one JSON object in four of doc.
func addUnknownKeys(rng *rand.Rand, doc any) {
	switch d := doc.(type) {
	case map[string]any:
		for _, v := range d {
			addUnknownKeys(rng, v)
		}
		if rng.IntN(4) == 0 {
			d[fmt.Sprintf("zz_%d", rng.IntN(100))] = []any{1.0, "x"}
		}
	case []any:
		for _, v := range d {
			addUnknownKeys(rng, v)
		}
	}
}

// FuzzDeepCodec decodes arbitrary input as an event both ways and, when it decodes, encodes
// it both ways. Command: go test -run XXX -fuzz FuzzDeepCodec ./events/
func FuzzDeepCodec(f *testing.F) {
	f.Add(benchEventJSON)
	f.Add(`{"entity":{"system":{"zz":1}},"check":{"hooks":[{"zz":2},{}]}}`)
	f.Add(`{"entity":null,"check":{"hooks":null,"history":[]},"zz":{}}`)
	f.Add(`{"Entity":{"System":{"OS":"x"}},"entity":{"user":"u"}}`)
	f.Fuzz(func(t *testing.T, data string) {
		checkEventJSON(t, "fuzz", data)
	})
}

// TestKeepingTypesUseTheCodec reads the package's source: every type with an
// `extra map[string]json.RawMessage` field must have MarshalJSON exactly
// `return marshalKeeping(&x, x.extra)` and UnmarshalJSON exactly unmarshalKeeping's three
// lines, or be listed in keepingCustom, which the deep twin never inlines. The reflection
// test that isKeeping relies on then agrees with the source.
func TestKeepingTypesUseTheCodec(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	withExtra := map[string]bool{}
	methods := map[string]*ast.FuncDecl{} // "Type.Method"
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, file, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					ts, ok := spec.(*ast.TypeSpec)
					if !ok {
						continue
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, fld := range st.Fields.List {
						for _, n := range fld.Names {
							if n.Name == extraField && nodeString(t, fset, fld.Type) == "map[string]json.RawMessage" {
								withExtra[ts.Name.Name] = true
							}
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) != 1 {
					continue
				}
				recv := d.Recv.List[0].Type
				if s, ok := recv.(*ast.StarExpr); ok {
					recv = s.X
				}
				if id, ok := recv.(*ast.Ident); ok {
					methods[id.Name+"."+d.Name.Name] = d
				}
			}
		}
	}
	if len(withExtra) < 10 {
		t.Fatalf("found only %d types with an extra field: %v", len(withExtra), withExtra)
	}
	custom := map[string]bool{}
	for typ := range keepingCustom {
		custom[typ.Name()] = true
	}
	standard := map[string]bool{}
	for name := range withExtra {
		m, u := methods[name+".MarshalJSON"], methods[name+".UnmarshalJSON"]
		ok := m != nil && u != nil
		if ok {
			mr, ur := recvName(m), recvName(u)
			_, mPtr := m.Recv.List[0].Type.(*ast.StarExpr)
			_, uPtr := u.Recv.List[0].Type.(*ast.StarExpr)
			param := u.Type.Params.List[0].Names[0].Name
			ok = !mPtr && uPtr &&
				bodyString(t, fset, m) == fmt.Sprintf("return marshalKeeping(&%s, %s.extra)", mr, mr) &&
				bodyString(t, fset, u) == fmt.Sprintf("extra, err := unmarshalKeeping(%s, %s)\n%s.extra = extra\nreturn err", param, ur, ur)
		}
		standard[name] = ok
		if !ok && !custom[name] {
			t.Errorf("%s has an extra field but its MarshalJSON/UnmarshalJSON are not exactly marshalKeeping/unmarshalKeeping: list it in keepingCustom (codec.go) or make them so", name)
		}
		if ok && custom[name] {
			t.Errorf("%s is listed in keepingCustom but uses the codec as is: drop it from the list", name)
		}
	}
	for name := range custom {
		if !withExtra[name] {
			t.Errorf("keepingCustom lists %s, which has no extra field", name)
		}
	}

	// isKeeping, which works by reflection, agrees on the package's resource types.
	for _, typ := range []reflect.Type{
		reflect.TypeFor[Namespace](), reflect.TypeFor[User](), reflect.TypeFor[APIKey](),
		reflect.TypeFor[CheckConfig](), reflect.TypeFor[Check](), reflect.TypeFor[Entity](), reflect.TypeFor[System](),
		reflect.TypeFor[Event](), reflect.TypeFor[Handler](), reflect.TypeFor[EventFilter](), reflect.TypeFor[Mutator](),
		reflect.TypeFor[HookConfig](), reflect.TypeFor[Hook](), reflect.TypeFor[Asset](), reflect.TypeFor[Silenced](),
		reflect.TypeFor[ObjectMeta](), reflect.TypeFor[Network](), reflect.TypeFor[Wrapped](), reflect.TypeFor[Metrics](),
	} {
		if got, want := isKeeping(typ), standard[typ.Name()]; got != want {
			t.Errorf("isKeeping(%v) = %v, want %v", typ, got, want)
		}
		delete(standard, typ.Name())
	}
	for name := range standard {
		t.Errorf("%s has an extra field: add it to the list above", name)
	}
}

func recvName(d *ast.FuncDecl) string {
	if names := d.Recv.List[0].Names; len(names) == 1 {
		return names[0].Name
	}
	return ""
}

func nodeString(t *testing.T, fset *token.FileSet, n any) string {
	t.Helper()
	var buf bytes.Buffer
	if err := format.Node(&buf, fset, n); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func bodyString(t *testing.T, fset *token.FileSet, d *ast.FuncDecl) string {
	t.Helper()
	var lines []string
	for _, s := range d.Body.List {
		lines = append(lines, nodeString(t, fset, s))
	}
	return strings.Join(lines, "\n")
}

// TestDeepPathTaken makes sure the tests above compare two paths: an event with no unknown
// keys takes the deep path, one with an unknown key below the top does not.
func TestDeepPathTaken(t *testing.T) {
	var ev Event
	if !unmarshalDeep([]byte(benchEventJSON), reflect.ValueOf(&ev).Elem()) {
		t.Fatal("the bench event does not decode on the deep path")
	}
	if _, ok := marshalDeep(reflect.ValueOf(&ev).Elem()); !ok {
		t.Error("the bench event does not encode on the deep path")
	}
	ev.Entity.System.extra = map[string]json.RawMessage{"zz": json.RawMessage(`1`)}
	if _, ok := marshalDeep(reflect.ValueOf(&ev).Elem()); ok {
		t.Error("an event with unknown keys in entity.system encodes on the deep path")
	}
	var again Event
	data := strings.Replace(benchEventJSON, `"hostname"`, `"zz":1,"hostname"`, 1)
	if unmarshalDeep([]byte(data), reflect.ValueOf(&again).Elem()) {
		t.Error("an event with unknown keys in entity.system decodes on the deep path")
	}
	if !reflect.ValueOf(again).IsZero() {
		t.Error("a failed deep decode changed the value")
	}
}

// TestDisallowUnknownFieldsOption: the option taken from goccy's Decoder makes its
// Unmarshal reject unknown keys at any depth and accept documents without them; the
// deep path depends on that to hand documents with unknown keys to the keeping path.
func TestDisallowUnknownFieldsOption(t *testing.T) {
	type inner struct {
		X int `json:"x"`
	}
	type outer struct {
		A int   `json:"a"`
		N inner `json:"n"`
	}
	for _, c := range []struct {
		doc     string
		wantErr bool
	}{
		{`{"a":1,"n":{"x":2}}`, false},
		{`{"a":1,"zz":2}`, true},
		{`{"a":1,"n":{"x":2,"y":3}}`, true},
		{`{"a":1} {"a":2}`, true},
	} {
		var v outer
		err := fastjson.UnmarshalWithOption([]byte(c.doc), &v, disallowUnknownFields)
		if (err != nil) != c.wantErr {
			t.Errorf("%s: error %v, want an error: %v", c.doc, err, c.wantErr)
		}
		if !c.wantErr && (v.A != 1 || v.N.X != 2) {
			t.Errorf("%s: decoded %+v", c.doc, v)
		}
		// Without the option the same documents decode, unknown keys dropped.
		if err := fastjson.UnmarshalWithOption([]byte(c.doc), &outer{}); err != nil && c.doc != `{"a":1} {"a":2}` {
			t.Errorf("%s without the option: %v", c.doc, err)
		}
	}
	// An event whose check has a key Picket does not know keeps it, through the
	// keeping path the deep path hands it to.
	var ev Event
	if err := json.Unmarshal([]byte(`{"check":{"metadata":{"name":"c"},"future_field":{"k":1}},"entity":{"metadata":{"name":"e"}}}`), &ev); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(&ev)
	if err != nil || !bytes.Contains(out, []byte(`"future_field":{"k":1}`)) {
		t.Fatalf("unknown check key lost: %s %v", out, err)
	}
}

// TestDecodedEventKeepsNoInput: a decoded event refers to none of the bytes it was
// decoded from, unknown keys and raw values included. The gateway decodes every frame
// out of a pooled buffer that the next frame overwrites.
func TestDecodedEventKeepsNoInput(t *testing.T) {
	forRandomEvents(11, 12, func(i int, _ *rand.Rand, ev *Event) {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		var got Event
		if err := got.UnmarshalJSON(data); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		before, _ := json.Marshal(&got)
		for j := range data {
			data[j] = 'x'
		}
		after, _ := json.Marshal(&got)
		if !bytes.Equal(before, after) {
			t.Fatalf("event %d changed when its input was overwritten:\nbefore %s\nafter  %s", i, before, after)
		}
	})
}
