package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testEvent(status uint32, history ...uint32) *Event {
	ent := &Entity{EntityClass: EntityAgent, Subscriptions: []string{"linux", "entity:web1"}}
	ent.Metadata = ObjectMeta{Name: "web1", Namespace: "default", Labels: map[string]string{"env": "prod"}}
	c := &Check{}
	c.Metadata = ObjectMeta{Name: "disk", Namespace: "default"}
	c.Subscriptions = []string{"linux"}
	c.Status, c.Output, c.Executed = status, "disk output", time.Now().Unix()
	c.Handlers = []string{"h"}
	for _, s := range history {
		c.History = append(c.History, History{Status: s, Executed: c.Executed})
	}
	c.History = append(c.History, History{Status: status, Executed: c.Executed})
	c.Occurrences = 1
	return &Event{Entity: ent, Check: c, Timestamp: c.Executed}
}

func TestFilterRemoves(t *testing.T) {
	monday10 := time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC) // a Monday
	cases := []struct {
		name    string
		filter  EventFilter
		ev      *Event
		now     time.Time
		removed bool
		err     bool
	}{
		{"allow all true", EventFilter{Action: "allow", Expressions: []string{"event.check.occurrences == 1", "event.entity.labels.env == 'prod'"}}, testEvent(2), monday10, false, false},
		{"allow one false", EventFilter{Action: "allow", Expressions: []string{"event.check.occurrences == 1", "event.check.status == 0"}}, testEvent(2), monday10, true, false},
		{"deny none true", EventFilter{Action: "deny", Expressions: []string{"event.check.status == 0", "event.entity.name == 'db1'"}}, testEvent(2), monday10, false, false},
		{"deny one true", EventFilter{Action: "deny", Expressions: []string{"event.check.status == 0", "event.entity.name == 'web1'"}}, testEvent(2), monday10, true, false},
		{"metadata lifted", EventFilter{Action: "allow", Expressions: []string{"event.check.name == 'disk' && event.entity.metadata.name == 'web1'"}}, testEvent(1), monday10, false, false},
		{"helpers", EventFilter{Action: "allow", Expressions: []string{"seconds_since(event.check.executed) < 60", "hour(0) == 0", "weekday(0) == 4"}}, testEvent(1), monday10, false, false},
		{"runtime error continues", EventFilter{Action: "allow", Expressions: []string{"event.nothing.here == 1"}}, testEvent(1), monday10, false, true},
		{"runtime error on deny continues", EventFilter{Action: "deny", Expressions: []string{"undefinedFunction()"}}, testEvent(1), monday10, false, true},
		{"allow inside when", EventFilter{Action: "allow", Expressions: []string{"true"},
			When: json.RawMessage(`{"days":{"monday":[{"begin":"9:00 AM","end":"5:00 PM"}]}}`)}, testEvent(1), monday10, false, false},
		{"allow outside when", EventFilter{Action: "allow", Expressions: []string{"true"},
			When: json.RawMessage(`{"days":{"monday":[{"begin":"9:00 AM","end":"5:00 PM"}]}}`)}, testEvent(1), monday10.Add(8 * time.Hour), true, false},
		{"deny inside when, expression false", EventFilter{Action: "deny", Expressions: []string{"false"},
			When: json.RawMessage(`{"days":{"all":[{"begin":"9:00 AM","end":"5:00 PM"}]}}`)}, testEvent(1), monday10, false, false},
		{"deny inside when, expression true", EventFilter{Action: "deny", Expressions: []string{"true"},
			When: json.RawMessage(`{"days":{"all":[{"begin":"9:00 AM","end":"5:00 PM"}]}}`)}, testEvent(1), monday10, true, false},
		{"deny outside when, expression true", EventFilter{Action: "deny", Expressions: []string{"true"},
			When: json.RawMessage(`{"days":{"all":[{"begin":"9:00 AM","end":"5:00 PM"}]}}`)}, testEvent(1), monday10.Add(-2 * time.Hour), false, false},
		{"computed fields", EventFilter{Action: "allow", Expressions: []string{
			"event.is_incident === true && event.has_check === true && event.has_metrics === false",
			"event.is_resolution === false && event.is_silenced === false"}}, testEvent(2, 0), monday10, false, false},
		{"is_resolution", EventFilter{Action: "allow", Expressions: []string{"event.is_resolution && !event.is_incident"}}, testEvent(0, 2), monday10, false, false},
		{"deny outside when", EventFilter{Action: "deny", Expressions: []string{"false"},
			When: json.RawMessage(`{"days":{"all":[{"begin":"9:00 AM","end":"5:00 PM"}]}}`)}, testEvent(1), monday10.Add(-2 * time.Hour), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.filter.Metadata.Name = "f"
			f, err := CompileFilter(&c.filter)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			removed, err := f.Removes(c.ev, c.now)
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if removed != c.removed {
				t.Fatalf("removed = %v, want %v", removed, c.removed)
			}
		})
	}
}

func TestFilterCompileErrorReported(t *testing.T) {
	f := &EventFilter{Action: "allow", Expressions: []string{"event.check.status ==", "true"}}
	f.Metadata.Name = "broken"
	cf, err := CompileFilter(f)
	if err == nil {
		t.Fatal("a broken expression compiled")
	}
	removed, err := cf.Removes(testEvent(1), time.Now())
	if removed || err == nil {
		t.Fatalf("a filter that does not compile must let the event continue with an error: removed %v, err %v", removed, err)
	}
}

func TestFilterValidateNamesExpression(t *testing.T) {
	f := &EventFilter{Action: "allow", Expressions: []string{"event.check.status == 1", "event.check.status === (", "ok("}}
	f.Metadata.Name = "f"
	err := f.Validate()
	var ve ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	fields := map[string]string{}
	for _, fe := range ve {
		fields[fe.Field] = fe.Message
	}
	if _, ok := fields["expressions[0]"]; ok {
		t.Fatalf("a valid expression was reported: %v", ve)
	}
	for _, k := range []string{"expressions[1]", "expressions[2]"} {
		if !strings.Contains(fields[k], "column") {
			t.Fatalf("%s: want the error with its position, got %q (all: %v)", k, fields[k], ve)
		}
	}
	bad := &EventFilter{Action: "allow", Expressions: []string{"true"}, When: json.RawMessage(`{"days":{"someday":[]}}`)}
	bad.Metadata.Name = "w"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "when") {
		t.Fatalf("bad when: %v", err)
	}
}

func TestBuiltinFilters(t *testing.T) {
	silenced := testEvent(2)
	silenced.Check.IsSilenced, silenced.Check.Silenced = true, []string{"linux:*"}
	metrics := testEvent(0)
	metrics.Metrics = &Metrics{Points: []MetricPoint{{Name: "x", Value: 1}}}
	cases := []struct {
		filter  string
		ev      *Event
		removed bool
	}{
		{FilterIsIncident, testEvent(2), false},
		{FilterIsIncident, testEvent(1, 0), false},
		{FilterIsIncident, testEvent(0, 2), false}, // resolution
		{FilterIsIncident, testEvent(0, 0), true},
		{FilterIsIncident, testEvent(0), true},
		{FilterIsIncident, &Event{}, true},
		{FilterNotSilenced, testEvent(2), false},
		{FilterNotSilenced, silenced, true},
		{FilterHasMetrics, testEvent(0), true},
		{FilterHasMetrics, metrics, false},
	}
	for i, c := range cases {
		if got := BuiltinRemoves(c.filter, c.ev); got != c.removed {
			t.Errorf("%d: %s removed = %v, want %v", i, c.filter, got, c.removed)
		}
	}
}

func BenchmarkFilterEval(b *testing.B) {
	cf := benchFilter(b, "event.check.occurrences == 1 && event.entity.labels.env == 'prod'")
	cf.exprs.native = nil // in goja, as this benchmark always measured (filter_native.go would take it)
	benchRemoves(b, cf, testEvent(2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
}

// BenchmarkFilterEvalNative is a filter of the simple kind, evaluated without
// JavaScript (filter_native.go) and in goja: the bench's filter of BENCHMARKS.md.
func BenchmarkFilterEvalNative(b *testing.B) {
	const expr = "event.check.occurrences >= 3 && event.check.status != 0"
	ev := testEvent(2, 2, 2, 2)
	ev.Check.Occurrences = 4
	b.Run("native", func(b *testing.B) { benchRemoves(b, benchFilter(b, expr), ev) })
	b.Run("javascript", func(b *testing.B) {
		cf := benchFilter(b, expr)
		cf.exprs.native = nil
		benchRemoves(b, cf, ev)
	})
}

// benchFilter compiles an allow filter of one expression.
func benchFilter(b *testing.B, expr string) *Filter {
	f := &EventFilter{Action: "allow", Expressions: []string{expr}}
	f.Metadata.Name = "bench"
	cf, err := CompileFilter(f)
	if err != nil {
		b.Fatal(err)
	}
	return cf
}

// benchRemoves runs cf on ev in parallel, failing if it removes ev.
func benchRemoves(b *testing.B, cf *Filter, ev *Event) {
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if removed, err := cf.Removes(ev, now); err != nil || removed {
				b.Fatalf("removed %v err %v", removed, err)
			}
		}
	})
}

func TestLazyViewMatchesSynthesize(t *testing.T) {
	ev := testEvent(2, 0, 1)
	ev.Metrics = &Metrics{Handlers: []string{"m"}, Points: []MetricPoint{{Name: "a", Value: 1.5, Tags: []MetricTag{{Name: "k", Value: "v"}}}}}
	ev.Check.Subdue = json.RawMessage(`{"days":{}}`)
	ev.Check.extra = map[string]json.RawMessage{"custom": json.RawMessage(`{"x":[1,2]}`)}
	vm := newRuntime()
	if err := vm.Set("event", jsValue(vm, reflect.ValueOf(ev))); err != nil {
		t.Fatal(err)
	}
	v, err := vm.RunString("JSON.stringify(event)")
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal([]byte(v.String()), &got); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(Synthesize(ev))
	_ = json.Unmarshal(raw, &want)
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		t.Fatalf("lazy view differs from Synthesize:\n got %s\nwant %s", g, raw)
	}
	// Scripts may write to the view; the event stays as it was.
	if _, err := vm.RunString("event.check.status = 0; event.check.history.push({status: 9}); delete event.entity.name"); err != nil {
		t.Fatal(err)
	}
	if ev.Check.Status != 2 || len(ev.Check.History) != 3 {
		t.Fatalf("a script changed the event: %+v", ev.Check)
	}
	// The script sees its own writes: a field set, one deleted, new keys in the order
	// they were added, each once however often it was set.
	v, err = vm.RunString(`event.check.added = 1; event.check.later = 2; event.check.added = 3;
		var k = Object.keys(event.check);
		[event.check.status, event.check.history.length, event.entity.name === undefined,
		 event.check.added, k.slice(k.length - 2).join(","), k.filter(function (x) { return x === "added" }).length].join(" ")`)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.String(); got != "0 4 true 3 added,later 1" {
		t.Fatalf("the script's view after its writes: %q, want %q", got, "0 4 true 3 added,later 1")
	}
}

// TestJSErrorPositions: a syntax error is reported at its place in the user's own text,
// not in the text wrapped around it, and an expression or script that ends too soon is
// told apart from a stray token.
func TestJSErrorPositions(t *testing.T) {
	exprs := []struct{ src, want string }{
		{"event.check.status ==", "line 1, column 22: unexpected end: the expression ends too soon"},
		{"event.check.status == 1 )", "line 1, column 25: Unexpected token )"},
		{"(event.check.status", "line 1, column 20: unexpected end"},
		{"event.check.status ==\n  == 2", "line 2, column 3: Unexpected token =="},
		{"a b", "line 1, column 3: Unexpected identifier"},
		{"event.check.status == 1 // a trailing comment", ""},
	}
	for _, c := range exprs {
		_, err := CompileExpressions([]string{c.src})
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: want it to compile, got %v", c.src, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: want %q in the error, got %v", c.src, c.want, err)
		}
	}
	scripts := []struct{ src, want string }{
		{"return {", "line 1, column 9: unexpected end: the script ends too soon"},
		{"var x = 1;\n  return x +;", "line 2, column 13: Unexpected token ;"},
		{"return event)", "line 1, column 13: Unexpected token )"},
	}
	for _, c := range scripts {
		_, err := compileMutatorScript(c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mutator %q: want %q in the error, got %v", c.src, c.want, err)
		}
	}
}

// TestWhenShapeValidated: a key a when does not have, which would leave it without
// windows (the filter would then apply at all hours), and a value of the wrong shape are
// refused in the filter's terms, not Go's.
func TestWhenShapeValidated(t *testing.T) {
	for _, c := range []struct{ when, want string }{
		{`{"day":{"monday":[{"begin":"17:00","end":"18:00"}]}}`, `unknown key "day"; the only key is days`},
		{`"weekdays"`, `must be an object like {"days"`},
		{`{"days":{"monday":[{"begin":"17:00","end":"18:00","tz":"UTC"}]}}`, `days.monday[0]: unknown key "tz"; a window has begin and end`},
		{`{"days":{"monday":{"begin":"17:00"}}}`, `days.monday must be a list of windows`},
		{`{"days":{"monday":[{"begin":"17:00","end":"18:00"}]}}`, ""},
	} {
		f := &EventFilter{Action: "deny", Expressions: []string{"true"}, When: json.RawMessage(c.when)}
		f.Metadata.Name = "w"
		err := f.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("when %s: %v", c.when, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "when") || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "Go value") {
			t.Errorf("when %s: want %q, got %v", c.when, c.want, err)
		}
	}
	chk := &CheckConfig{Command: "x", Interval: 10, Subdue: json.RawMessage(`{"dayz":{}}`)}
	chk.Metadata.Name = "c"
	if err := chk.Validate(); err == nil || !strings.Contains(err.Error(), `subdue: unknown key "dayz"`) {
		t.Errorf("subdue with a typo: %v", err)
	}
}
