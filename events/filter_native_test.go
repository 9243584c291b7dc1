package events

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// nativePaths lists event paths for random expressions: every scalar field reachable
// through structs to depth 3 (by JSON name), the lifted metadata keys, the computed event
// fields, and keys that do not exist.
func nativePaths() []string {
	var out []string
	var walk func(t reflect.Type, prefix string, depth int)
	walk = func(t reflect.Type, prefix string, depth int) {
		info := typeInfo(t)
		for _, f := range info.fields {
			ft := t.FieldByIndex(f.index).Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			p := prefix + "." + f.name
			switch ft.Kind() {
			case reflect.Struct:
				if depth < 3 {
					walk(ft, p, depth+1)
				}
			case reflect.Map:
				for _, k := range []string{"a", "é", "env", "zz", "toString"} {
					out = append(out, p+"."+k)
				}
			default:
				out = append(out, p)
			}
		}
		if _, ok := info.byName["metadata"]; ok {
			for _, k := range metaLifted {
				out = append(out, prefix+"."+k)
			}
			out = append(out, prefix+".labels.env", prefix+".annotations.a")
		}
		out = append(out, prefix+".nosuch")
	}
	walk(eventType, "event", 0)
	for _, k := range []string{"has_check", "has_metrics", "is_incident", "is_resolution", "is_silenced"} {
		out = append(out, "event."+k)
	}
	return out
}

var nativeLiterals = []string{"0", "1", "-1", "2", "3", "0.5", "-0", "1e21", "9007199254740993", "NaN", "Infinity",
	`""`, `"a"`, `"web-01"`, `"é"`, `"<a&b>"`, `"0"`, `"1"`, `"\uD800"`, `"😀"`, `"\uFFFD"`, "true", "false", "null", "undefined"}

var nativeOps = []string{"==", "!=", "===", "!==", "<", "<=", ">", ">="}

// literalKind is the type of a literal of nativeLiterals, as compileNative sees it.
func literalKind(s string) jsKind {
	switch {
	case strings.HasPrefix(s, `"`):
		return jsString
	case s == "true" || s == "false":
		return jsBool
	case s == "null" || s == "undefined" || s == "NaN" || s == "Infinity":
		return jsUndefined
	}
	return jsNumber
}

// pathKind is the type of a path, jsUndefined when it is not native.
func pathKind(p string) jsKind {
	o, ok := compilePath(strings.Split(p, ".")[1:])
	if !ok {
		return jsUndefined
	}
	return o.static()
}

// randomExpr builds a random expression over paths and literals, of the simple kind or
// near it: the two sides of a comparison are mostly of one type.
func randomExpr(rng *rand.Rand, paths []string, depth int) string {
	operand := func() string {
		if rng.IntN(3) == 0 {
			return nativeLiterals[rng.IntN(len(nativeLiterals))]
		}
		return paths[rng.IntN(len(paths))]
	}
	sameKind := func(a string) string {
		k := pathKind(a)
		for range 20 {
			b := operand()
			if k == jsUndefined || rng.IntN(10) == 0 {
				return b
			}
			if (strings.HasPrefix(b, "event.") && pathKind(b) == k) || (!strings.HasPrefix(b, "event.") && literalKind(b) == k) {
				return b
			}
		}
		return operand()
	}
	r := rng.IntN(10)
	if depth > 2 {
		r = rng.IntN(6)
	}
	switch {
	case r < 5:
		a := paths[rng.IntN(len(paths))]
		b := sameKind(a)
		if rng.IntN(2) == 0 {
			a, b = b, a
		}
		return a + " " + nativeOps[rng.IntN(len(nativeOps))] + " " + b
	case r == 5:
		return operand()
	case r == 6:
		return "!" + randomExpr(rng, paths, depth+1)
	case r == 7:
		return "(" + randomExpr(rng, paths, depth+1) + ") && " + randomExpr(rng, paths, depth+1)
	case r == 8:
		return randomExpr(rng, paths, depth+1) + " || (" + randomExpr(rng, paths, depth+1) + ")"
	}
	return "seconds_since(" + paths[rng.IntN(len(paths))] + ") > 0" // never native
}

// sameValues gives some of ev's fields the values the literals and other fields have,
// so that comparisons come out true as well as false.
func sameValues(rng *rand.Rand, ev *Event) {
	if ev.Check != nil && rng.IntN(2) == 0 {
		ev.Check.Occurrences = int64(rng.IntN(4))
		ev.Check.Status = uint32(rng.IntN(3))
		ev.Check.OccurrencesWatermark = ev.Check.Occurrences
		ev.Check.State = []string{"", "passing", "failing"}[rng.IntN(3)]
	}
	if ev.Entity != nil && rng.IntN(2) == 0 {
		ev.Entity.Metadata.Name = []string{"", "a", "web-01", "0", "1", "😀", "\uFFFD"}[rng.IntN(7)]
		switch rng.IntN(3) {
		case 0:
			ev.Entity.Metadata.Labels = map[string]string{"env": []string{"", "a", "web-01", "é"}[rng.IntN(4)], "toString": "a"}
		case 1:
			ev.Entity.Metadata.Labels = map[string]string{}
		}
	}
}

// TestNativeMatchesJavaScript evaluates random expressions on random events both ways:
// wherever the native evaluation answers, goja must give the same truth value and no
// error, for an allow filter (stop at the first false) and a deny filter (at the first
// true).
func TestNativeMatchesJavaScript(t *testing.T) {
	paths := nativePaths()
	rng := rand.New(rand.NewPCG(11, 12))
	var compiled, native, answered, fellBack int
	exprs := 6000
	if testing.Short() {
		exprs = 1500
	}
	for i := 0; i < exprs; i++ {
		src := []string{randomExpr(rng, paths, 0)}
		if rng.IntN(3) == 0 {
			src = append(src, randomExpr(rng, paths, 0))
		}
		e, err := CompileExpressions(src)
		if err != nil {
			continue // not JavaScript (e.g. "NaN" == …: fine; a syntax error: skipped)
		}
		compiled++
		if e.native == nil {
			continue
		}
		native++
		js := jsOnly(e)
		for j := 0; j < 8; j++ {
			ev := &Event{}
			randomFill(rng, reflect.ValueOf(ev).Elem(), 0)
			sameValues(rng, ev)
			for _, want := range []bool{true, false} {
				is, ok := e.native.firstIs(ev, want)
				if !ok {
					fellBack++
					continue
				}
				answered++
				jsIs, jsErr := js.firstIs(ev, want)
				if jsErr != nil || jsIs != is {
					t.Fatalf("%q on %s, want %v: native %v, JavaScript %v (err %v)", src, eventSummary(ev), want, is, jsIs, jsErr)
				}
			}
		}
	}
	t.Logf("%d expressions compiled, %d native; %d native answers agreed, %d left to JavaScript", compiled, native, answered, fellBack)
	if native < compiled/10 || answered < 1000 {
		t.Fatalf("too few native evaluations to mean anything: %d of %d expressions, %d answers", native, compiled, answered)
	}
}

// jsOnly is e evaluated in goja only.
func jsOnly(e *Expressions) *Expressions {
	js := &Expressions{src: e.src, progs: e.progs}
	js.pool.New = e.pool.New
	return js
}

func eventSummary(ev *Event) string {
	var b strings.Builder
	if ev.Check != nil {
		fmt.Fprintf(&b, "check{occurrences %d status %d state %q name %q extra %v} ", ev.Check.Occurrences, ev.Check.Status, ev.Check.State, ev.Check.Metadata.Name, ev.Check.extra)
	} else {
		b.WriteString("no check ")
	}
	if ev.Entity != nil {
		fmt.Fprintf(&b, "entity{name %q} ", ev.Entity.Metadata.Name)
	}
	return b.String()
}

// TestNativeKinds pins which expressions are evaluated natively: the usual filter
// expressions are; calls, assignments, other names, coercions between types and maps
// are not.
func TestNativeKinds(t *testing.T) {
	native := []string{
		"event.check.occurrences == 1",
		"event.check.occurrences >= 3 && event.check.status != 0",
		"!(event.check.status === 0) || event.is_silenced",
		"event.entity.name == 'web1' && event.check.name != \"disk\"",
		"event.check.occurrences <= event.check.occurrences_watermark",
		"event.check.state",
		"event.entity.metadata.namespace === 'default'",
		"event.entity.labels.env == 'prod'",
		"event.check.metadata.annotations.team != event.entity.labels.team",
	}
	for _, s := range native {
		if compileNative([]string{s}) == nil {
			t.Errorf("%q: not native", s)
		}
	}
	notNative := []string{
		"event.entity.labels == null",           // a map
		"event.entity.labels.toString == 'x'",   // a key every object has
		"event.entity.labels.a.b == 'x'",        // a property of a string
		"event.check.status == '0'",             // number against string: coerced
		"seconds_since(event.check.issued) > 5", // a call
		"event.check.status = 2",                // an assignment
		"x == 1",                                // another name
		"event.check.nosuch == 1",               // undefined
		"event.check.status > true",             // booleans ordered
		"event.check.history[0].status == 0",    // an index
		"event.check == null",                   // an object
		"event.check.output == '\\uD800'",       // a lone surrogate
	}
	for _, s := range notNative {
		if compileNative([]string{s}) != nil {
			t.Errorf("%q: native", s)
		}
	}
	if compileNative([]string{"event.check.occurrences == 1", "event.check.status = 2"}) != nil {
		t.Error("a filter with one expression that is not native must be left to JavaScript whole")
	}
}

// TestNativeFallsBack checks that what JavaScript would throw on, or sees differently,
// is left to it: a path through a missing object, and a kept unknown key that shadows a
// lifted field.
func TestNativeFallsBack(t *testing.T) {
	e, err := CompileExpressions([]string{"event.check.name == 'disk'"})
	if err != nil || e.native == nil {
		t.Fatalf("not native: %v", err)
	}
	if _, ok := e.native.firstIs(&Event{}, false); ok {
		t.Error("no check: answered natively, JavaScript throws")
	}
	ev := testEvent(0)
	if is, ok := e.native.firstIs(ev, false); !ok || is {
		t.Errorf("check disk: firstIs(false) = %v, %v; want false, true", is, ok)
	}
	ev.Check.extra = map[string]json.RawMessage{"name": json.RawMessage(`"other"`)}
	if _, ok := e.native.firstIs(ev, false); ok {
		t.Error("a kept unknown key named name: answered natively")
	}
	f := &EventFilter{Action: "allow", Expressions: []string{"event.check.name == 'disk'"}}
	f.Metadata.Name = "shadow"
	cf, err := CompileFilter(f)
	if err != nil {
		t.Fatal(err)
	}
	// JavaScript sees the kept key: the filter removes the event.
	if removed, err := cf.Removes(ev, time.Now()); err != nil || !removed {
		t.Errorf("removed %v, err %v; want removed (the kept key says other)", removed, err)
	}
}

// TestNativeNumbers compares numbers, literals and fields, as goja does: whole numbers up
// to 2^53 in size as integers, the rest as floats.
func TestNativeNumbers(t *testing.T) {
	nums := []string{"0", "-0", "1", "-1", "0.5", "2", "2.0", "1e3", "1000", "9007199254740992", "9007199254740993",
		"9007199254740992.0", "1152921504606846976", "1152921504606846977", "1152921504606846976.0", "1e21", "-1e21",
		"9223372036854775807", "Infinity", "event.check.occurrences", "event.check.executed", "event.check.status"}
	ev := testEvent(0)
	ev.Check.Occurrences, ev.Check.Executed, ev.Check.Status = 1<<53+1, 1<<60+1, 1<<32-1
	var n int
	for _, a := range nums {
		for _, b := range nums {
			for _, op := range nativeOps {
				src := []string{a + " " + op + " " + b}
				e, err := CompileExpressions(src)
				if err != nil {
					t.Fatalf("%q: %v", src[0], err)
				}
				if e.native == nil {
					continue // Infinity is a name
				}
				js := jsOnly(e)
				is, ok := e.native.firstIs(ev, true)
				jsIs, jsErr := js.firstIs(ev, true)
				if !ok || jsErr != nil || is != jsIs {
					t.Errorf("%q: native %v (ok %v), JavaScript %v (err %v)", src[0], is, ok, jsIs, jsErr)
				}
				n++
			}
		}
	}
	if n < 1000 {
		t.Fatalf("only %d comparisons native", n)
	}
	vm := newRuntime()
	for _, f := range []float64{0, 1, 0.5, 1 << 53, 1<<53 + 2, 1 << 60, -(1 << 53), -(1 << 54), 1e21} {
		goInt := reflect.TypeOf(vm.ToValue(f).Export()).Kind() == reflect.Int64
		if got := numberScalar(f).isInt; got != goInt {
			t.Errorf("numberScalar(%g).isInt = %v, goja holds it as an integer: %v", f, got, goInt)
		}
	}
	for _, i := range []int64{0, -1, 1 << 53, 1<<53 + 1, -(1 << 53), -(1<<53 + 1), 1 << 62} {
		goInt := reflect.TypeOf(vm.ToValue(i).Export()).Kind() == reflect.Int64
		if got := intScalar(i).isInt; got != goInt {
			t.Errorf("intScalar(%d).isInt = %v, goja holds it as an integer: %v", i, got, goInt)
		}
	}
}

func FuzzNativeFilter(f *testing.F) {
	for _, s := range []string{"event.check.occurrences == 1", "event.check.status >= 1 && !event.is_silenced",
		"event.entity.name < 'm' || event.check.output != ''", "event.check.executed > 1.5e9"} {
		f.Add(s, uint64(1))
	}
	f.Fuzz(func(t *testing.T, expr string, seed uint64) {
		e, err := CompileExpressions([]string{expr})
		if err != nil || e.native == nil {
			return
		}
		js := jsOnly(e)
		rng := rand.New(rand.NewPCG(seed, 3))
		for i := 0; i < 4; i++ {
			ev := &Event{}
			randomFill(rng, reflect.ValueOf(ev).Elem(), 0)
			sameValues(rng, ev)
			is, ok := e.native.firstIs(ev, true)
			if !ok {
				continue
			}
			if jsIs, err := js.firstIs(ev, true); err != nil || jsIs != is {
				t.Fatalf("%q: native %v, JavaScript %v (err %v)", expr, is, jsIs, err)
			}
		}
	})
}
