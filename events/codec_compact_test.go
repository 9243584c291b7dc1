package events

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestCompactRoundTrip: on random events, the compact form reads back as the event it
// was written from: it encodes in full exactly as that event read back from its full
// form does (which turns invalid UTF-8 into U+FFFD); and it is never longer.
func TestCompactRoundTrip(t *testing.T) {
	compacted := 0
	n := forRandomEvents(5, 6, func(i int, _ *rand.Rand, ev *Event) {
		full, err := ev.MarshalJSON()
		if err != nil {
			return // the full form refuses it too (a float JSON cannot hold)
		}
		compact, err := ev.MarshalCompact()
		if err != nil {
			t.Fatalf("random %d: %v\n full: %s", i, err, full)
		}
		if len(compact) > len(full) {
			t.Fatalf("random %d: compact form of %d bytes, full form of %d\n compact: %s\n full:    %s", i, len(compact), len(full), compact, full)
		}
		if len(compact) < len(full) {
			compacted++
		}
		// AppendCompact, which the server stores events with, gives the same bytes,
		// after what the buffer held.
		appended, err := ev.AppendCompact([]byte("prefix"))
		if err != nil || !bytes.Equal(appended, append([]byte("prefix"), compact...)) {
			t.Fatalf("random %d: AppendCompact gave %q (%v), want prefix + %q", i, appended, err, compact)
		}
		back := &Event{}
		if err := back.UnmarshalJSON(compact); err != nil {
			t.Fatalf("random %d: compact form does not read back: %v\n%s", i, err, compact)
		}
		again, err := back.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		fromFull := &Event{}
		if err := fromFull.UnmarshalJSON(full); err != nil {
			t.Fatal(err)
		}
		want, _ := fromFull.MarshalJSON()
		if !bytes.Equal(again, want) {
			t.Fatalf("random %d: read back from the compact form, the event encodes differently\n got:  %s\n want: %s\n compact: %s", i, again, want, compact)
		}
	})
	if compacted < n/2 {
		t.Errorf("only %d of %d random events were shorter in the compact form", compacted, n)
	}
}

// TestCompactEvent: a typical stored event loses its empty fields (lists apart), keeps
// the rest, and is much shorter; an event with keys Picket does not know is stored in full, keeping them.
func TestCompactEvent(t *testing.T) {
	ev := &Event{}
	full := `{"timestamp":1795313287,"entity":{"metadata":{"name":"web-01","namespace":"default"},"entity_class":"agent",` +
		`"system":{"hostname":"web-01","os":"linux","arch":"amd64"},"subscriptions":["linux","entity:web-01"]},` +
		`"check":{"metadata":{"name":"cpu","namespace":"default"},"command":"check-cpu.sh","interval":10,"handlers":["slack"],"runtime_assets":[],` +
		`"executed":1795313287,"history":[{"status":0,"executed":1795313277},{"status":2,"executed":1795313287}],` +
		`"output":"CPU CRITICAL","state":"failing","status":2,"occurrences":1,"occurrences_watermark":1},"id":"8466aea89cad2e3c5030cbd5030cbff5"}`
	if err := ev.UnmarshalJSON([]byte(full)); err != nil {
		t.Fatal(err)
	}
	expanded, _ := ev.MarshalJSON()
	compact, err := ev.MarshalCompact()
	if err != nil {
		t.Fatal(err)
	}
	for _, empty := range []string{`:0,`, `:0}`, `:false`, `:""`, `"status":0`, `"proxy_entity_name"`} {
		if strings.Contains(string(compact), empty) {
			t.Errorf("compact form holds %s:\n%s", empty, compact)
		}
	}
	// Lists are kept when not nil: an empty one and none differ for a handler. None
	// (null) is left out, and reads back as none.
	for _, kept := range []string{`"history":[{"executed":1795313277},{"status":2,"executed":1795313287}]`, `"handlers":["slack"]`, `"occurrences":1`,
		`"metadata":{"name":"cpu","namespace":"default"}`, `"runtime_assets":[]`} {
		if !strings.Contains(string(compact), kept) {
			t.Errorf("compact form lacks %s:\n%s", kept, compact)
		}
	}
	for _, left := range []string{`:null`, `"check_hooks"`, `"interfaces"`} {
		if strings.Contains(string(compact), left) {
			t.Errorf("compact form holds %s:\n%s", left, compact)
		}
	}
	if len(compact)*4 > len(expanded)*3 {
		t.Errorf("compact form of %d bytes against %d in full; want at most three quarters", len(compact), len(expanded))
	}
	back := &Event{}
	if err := back.UnmarshalJSON(compact); err != nil {
		t.Fatal(err)
	}
	if again, _ := back.MarshalJSON(); !bytes.Equal(again, expanded) {
		t.Errorf("read back:\n got:  %s\n want: %s", again, expanded)
	}

	unknown := &Event{}
	if err := json.Unmarshal([]byte(strings.Replace(full, `"command"`, `"future_field":{"a":1},"command"`, 1)), unknown); err != nil {
		t.Fatal(err)
	}
	got, err := unknown.MarshalCompact()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := unknown.MarshalJSON(); !bytes.Equal(got, want) {
		t.Errorf("an event with unknown keys is not stored in full:\n got:  %s\n want: %s", got, want)
	}
}

// TestCompactTypes: the compact type of an event has its layout; a type with methods of
// its own is kept as it is.
func TestCompactTypes(t *testing.T) {
	o := deepPlanFor(reflect.TypeFor[Event]()).overlay
	c := compactType(o)
	if c == o {
		t.Fatal("the event overlay has no compact type")
	}
	if c.Size() != o.Size() || c.Align() != o.Align() || c.NumField() != o.NumField() {
		t.Fatalf("compact type of %d bytes (align %d), overlay of %d (align %d)", c.Size(), c.Align(), o.Size(), o.Align())
	}
	omitted := 0
	for i := 0; i < c.NumField(); i++ {
		cf, of := c.Field(i), o.Field(i)
		if cf.Offset != of.Offset || cf.Type.Size() != of.Type.Size() || cf.Name != of.Name {
			t.Errorf("field %d: %s at %d (%d bytes), overlay's %s at %d (%d bytes)", i, cf.Name, cf.Offset, cf.Type.Size(), of.Name, of.Offset, of.Type.Size())
		}
		tag, otag := cf.Tag.Get("json"), of.Tag.Get("json")
		opt := ""
		if otag != "-" && !strings.Contains(otag, "omitempty") {
			opt = omitOption(cf.Type.Kind())
		}
		if opt != "" && !strings.HasSuffix(tag, opt) || opt == "" && tag != otag {
			t.Errorf("field %d (%s, %v): tag %q, overlay's %q", i, cf.Name, cf.Type.Kind(), tag, otag)
		}
		if strings.HasSuffix(tag, ",omitempty") || strings.HasSuffix(tag, ",omitzero") {
			omitted++
		}
	}
	if omitted < 4 {
		t.Errorf("only %d fields of the event's compact type are omitempty", omitted)
	}
	for _, kept := range []reflect.Type{reflect.TypeFor[json.RawMessage](), reflect.TypeFor[Entity](), reflect.TypeFor[int]()} {
		if got := compactType(kept); got != kept {
			t.Errorf("compact type of %v is %v", kept, got)
		}
	}
}
