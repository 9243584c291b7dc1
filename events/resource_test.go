package events

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestKinds(t *testing.T) {
	var got []string
	for _, k := range Kinds() {
		got = append(got, k.Plural)
		if r := k.New(); r == nil || reflect.ValueOf(r).IsNil() {
			t.Errorf("%s: New returns no resource", k.Type)
		}
		if kk, ok := KindOf(k.New()); !ok || kk.Type != k.Type {
			t.Errorf("KindOf(%s) = %v %v", k.Type, kk.Type, ok)
		}
	}
	want := []string{"namespaces", "users", "apikeys", "checks", "hooks", "assets", "handlers", "filters", "mutators", "entities", "silenced", "events"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dump order = %v, want %v", got, want)
	}
	for name, typ := range map[string]string{
		"check": "CheckConfig", "CheckConfig": "CheckConfig", "checkconfig": "CheckConfig", "checks": "CheckConfig",
		"filter": "EventFilter", "eventfilter": "EventFilter", "Handler ": "Handler", "apikeys": "APIKey",
	} {
		if k, ok := LookupKind(name); !ok || k.Type != typ {
			t.Errorf("LookupKind(%q) = %q, %v; want %q", name, k.Type, ok, typ)
		}
	}
	for _, typ := range []string{"namespaces", "users", "apikeys"} {
		if k, _ := LookupKind(typ); k.Namespaced {
			t.Errorf("%s is namespaced, want cluster-wide", typ)
		}
	}
}

func TestUnknownFieldsKept(t *testing.T) {
	in := `{"metadata":{"name":"web"},"timestamp":5,"zzz":[1,{"a":null}],
		"check":{"metadata":{"name":"cpu"},"command":"c","status":2,"subdues":[{"begin":"x"}],
			"hooks":[{"metadata":{"name":"h"},"command":"ps","status":1,"color":"red"}]},
		"entity":{"metadata":{"name":"web"},"entity_class":"agent","system":{"os":"linux","gpu":"none"}}}`
	var e Event
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		t.Fatal(err)
	}
	want := []string{"check.hooks[0].color", "check.subdues", "entity.system.gpu", "zzz"}
	if got := UnknownFields(&e); !reflect.DeepEqual(got, want) {
		t.Errorf("UnknownFields = %v, want %v", got, want)
	}
	if e.Check.Status != 2 || e.Check.Command != "c" || e.Check.Hooks[0].Status != 1 || e.Check.Hooks[0].Command != "ps" {
		t.Errorf("embedded fields not decoded: %+v", e.Check)
	}
	out := string(mustJSON(t, &e))
	for _, frag := range []string{`"zzz":[1,{"a":null}]`, `"subdues":[{"begin":"x"}]`, `"gpu":"none"`, `"color":"red"`, `"status":2`, `"command":"c"`} {
		if !strings.Contains(out, frag) {
			t.Errorf("re-encoded event lacks %s:\n%s", frag, out)
		}
	}
	// A value copy marshals the same as the pointer (REST handlers marshal either).
	if string(mustJSON(t, e)) != out {
		t.Errorf("value and pointer encodings differ")
	}
}

func TestCheckEmbedsConfig(t *testing.T) {
	cfg := validCheck()
	c := NewCheck(*cfg)
	c.Status, c.Output, c.History = 2, "boom", []History{{Status: 0, Executed: 1}, {Status: 2, Executed: 2}}
	b := mustJSON(t, c)
	var back Check
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if again := mustJSON(t, &back); string(again) != string(b) {
		t.Errorf("round trip = %s, want %s", again, b)
	}
	if back.Status != 2 || back.Interval != 60 || len(back.History) != 2 {
		t.Errorf("round trip lost fields: %+v", back)
	}
	for _, frag := range []string{`"command":"check-cpu.sh"`, `"interval":60`, `"status":2`, `"history":[{"status":0,"executed":1}`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("check JSON lacks %s: %s", frag, b)
		}
	}
}

func TestStoreNameAndEventMeta(t *testing.T) {
	e := &Event{
		Entity: &Entity{Metadata: ObjectMeta{Name: "web", Namespace: "ops"}},
		Check:  &Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu"}}},
	}
	if got := StoreName(e); got != "web/cpu" {
		t.Errorf("StoreName = %q, want web/cpu", got)
	}
	if got := e.Meta().Namespace; got != "ops" {
		t.Errorf("event namespace = %q, want the entity's", got)
	}
	if got := StoreName(validCheck()); got != "cpu" {
		t.Errorf("StoreName(check) = %q", got)
	}
}

func TestSetDefaults(t *testing.T) {
	t.Run("namespace", func(t *testing.T) {
		c := &CheckConfig{Metadata: ObjectMeta{Name: "c"}}
		SetDefaults(c, "")
		if c.Metadata.Namespace != "default" {
			t.Errorf("namespace = %q, want default", c.Metadata.Namespace)
		}
		h := &Handler{Metadata: ObjectMeta{Name: "h"}}
		SetDefaults(h, "ops")
		if h.Metadata.Namespace != "ops" || h.Type != "" {
			t.Errorf("handler = %+v, want namespace ops and nothing else", h.Metadata)
		}
		kept := &Mutator{Metadata: ObjectMeta{Name: "m", Namespace: "dev"}}
		SetDefaults(kept, "ops")
		if kept.Metadata.Namespace != "dev" {
			t.Errorf("explicit namespace overwritten: %q", kept.Metadata.Namespace)
		}
		ns := &Namespace{Name: "x"}
		SetDefaults(ns, "ops")
		u := &User{Username: "u"}
		SetDefaults(u, "ops")
		if ns.Meta().Namespace != "" || u.Meta().Namespace != "" {
			t.Errorf("cluster-wide kinds got a namespace")
		}
	})
	t.Run("entity", func(t *testing.T) {
		e := &Entity{Metadata: ObjectMeta{Name: "web"}, Subscriptions: []string{"linux"}}
		SetDefaults(e, "")
		SetDefaults(e, "") // idempotent
		if want := []string{"linux", "entity:web"}; !reflect.DeepEqual(e.Subscriptions, want) {
			t.Errorf("subscriptions = %v, want %v", e.Subscriptions, want)
		}
		if !reflect.DeepEqual(e.Redact, DefaultRedact()) {
			t.Errorf("redact = %v", e.Redact)
		}
		own := &Entity{Metadata: ObjectMeta{Name: "db"}, Redact: []string{"token"}}
		SetDefaults(own, "")
		if !reflect.DeepEqual(own.Redact, []string{"token"}) {
			t.Errorf("explicit redact replaced: %v", own.Redact)
		}
	})
	t.Run("silenced", func(t *testing.T) {
		for _, tt := range []struct{ sub, check, want string }{
			{"linux", "", "linux:*"}, {"", "disk", "*:disk"}, {"entity:web", "disk", "entity:web:disk"},
		} {
			s := &Silenced{Subscription: tt.sub, Check: tt.check}
			SetDefaults(s, "")
			if s.Metadata.Name != tt.want {
				t.Errorf("name = %q, want %q", s.Metadata.Name, tt.want)
			}
		}
	})
	t.Run("event", func(t *testing.T) {
		e := &Event{Timestamp: 0, Entity: &Entity{Metadata: ObjectMeta{Name: "web", Namespace: "ops"}}, Check: &Check{}}
		SetDefaults(e, "")
		if e.Metadata.Namespace != "ops" || e.Check.Metadata.Namespace != "ops" || e.Timestamp != 0 {
			t.Errorf("event = %+v", e.Metadata)
		}
		if !slices.Contains(e.Entity.Subscriptions, "entity:web") {
			t.Errorf("event entity subscriptions = %v", e.Entity.Subscriptions)
		}
	})
}

func TestCompareJSON(t *testing.T) {
	// The corpus test is only as good as its comparison: make sure it notices losses.
	num := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		orig, got any
		diff      bool
	}{
		{map[string]any{"a": num("1")}, map[string]any{}, true},
		{map[string]any{"a": num("1")}, map[string]any{"a": num("1.0")}, false},
		{map[string]any{"a": nil}, map[string]any{"a": []any{}}, false},
		{map[string]any{"a": nil}, map[string]any{}, false},
		{map[string]any{"a": []any{"x"}}, map[string]any{"a": []any{}}, true},
		{map[string]any{"a": "x"}, map[string]any{"a": "y"}, true},
		{map[string]any{"a": map[string]any{"b": true}}, map[string]any{"a": map[string]any{"b": false}}, true},
	}
	for i, tt := range tests {
		if got := len(compareJSON("", tt.orig, tt.got, false)) > 0; got != tt.diff {
			t.Errorf("case %d: diff = %v, want %v", i, got, tt.diff)
		}
	}
}

func BenchmarkEventJSON(b *testing.B) {
	e := &Event{
		Timestamp: 1700000000,
		Entity: &Entity{Metadata: ObjectMeta{Name: "web", Namespace: "default"}, EntityClass: "agent",
			Subscriptions: []string{"linux", "entity:web"}, Redact: DefaultRedact(),
			System: System{Hostname: "web", OS: "linux", Network: Network{Interfaces: []NetworkInterface{{Name: "lo", Addresses: []string{"127.0.0.1/8"}}}}}},
		Check: &Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu", Namespace: "default"}, Command: "check-cpu.sh",
			Interval: 60, Subscriptions: []string{"linux"}, Handlers: []string{"slack"}},
			Status: 2, Output: "CRITICAL", History: make([]History, 21)},
	}
	for b.Loop() {
		data, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		var back Event
		if err := json.Unmarshal(data, &back); err != nil {
			b.Fatal(err)
		}
	}
}

// TestValidNameIsNameRE: ValidName, written out for speed, answers as nameRE does, for
// every single byte and for names built from them.
func TestValidNameIsNameRE(t *testing.T) {
	cases := []string{"", "web-01", "a:b", "a b", "é", "a/b", "..", "x\n"}
	for c := 0; c < 256; c++ {
		cases = append(cases, string(rune(c)), "ok"+string([]byte{byte(c)}), string([]byte{byte(c)})+"ok")
	}
	for _, s := range cases {
		if got, want := ValidName(s), nameRE.MatchString(s); got != want {
			t.Errorf("ValidName(%q) = %v, nameRE says %v", s, got, want)
		}
	}
}
