package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// TestOverlaysExist: the types of an event have overlays, so the deep path copies
// nothing for them; a type holding a keeping type in a map has none and keeps copying.
func TestOverlaysExist(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Event](), reflect.TypeFor[Entity](), reflect.TypeFor[Check](),
		reflect.TypeFor[CheckConfig](), reflect.TypeFor[Hook](), reflect.TypeFor[System](), reflect.TypeFor[recNode]()} {
		p := deepPlanFor(typ)
		if p.overlay == nil {
			t.Errorf("%v has no overlay", typ)
			continue
		}
		if p.overlay.Size() != typ.Size() {
			t.Errorf("%v: overlay of %d bytes, type of %d", typ, p.overlay.Size(), typ.Size())
		}
	}
	if deepPlanFor(reflect.TypeFor[holder]()).overlay != nil {
		t.Error("holder (keeping types in maps) has an overlay")
	}
}

// withCopyingTwin runs f with overlays switched off.
func withCopyingTwin[T any](f func() T) T {
	copyTwinOnly.Store(true)
	defer copyTwinOnly.Store(false)
	return f()
}

// TestOverlayMatchesCopyingTwin: on random events, encoding through the overlay gives the
// bytes the copying twin gives, and decoding gives deeply equal values.
func TestOverlayMatchesCopyingTwin(t *testing.T) {
	forRandomEvents(3, 4, func(i int, _ *rand.Rand, ev *Event) {
		over := encodeWith(ev)
		copied := withCopyingTwin(func() encodeResult { return encodeWith(ev) })
		if !bytes.Equal(over.out, copied.out) || over.err != copied.err {
			t.Fatalf("random %d: encodings differ\n overlay: %s (%q)\n copied:  %s (%q)", i, over.out, over.err, copied.out, copied.err)
		}
		if over.err != "" {
			return
		}
		fresh := func() json.Unmarshaler { return &Event{} }
		a := decodeWith(over.out, fresh)
		b := withCopyingTwin(func() decodeResult { return decodeWith(over.out, fresh) })
		if a.err != b.err || !reflect.DeepEqual(a.v, b.v) {
			t.Fatalf("random %d: decodings differ\n overlay: %s (%q)\n copied:  %s (%q)", i, dumpValue(a.v), a.err, dumpValue(b.v), b.err)
		}
	})
}

// TestOverlayUnderGC: events decoded through overlays hold memory the garbage collector
// scans by the overlay types' layout. Decode many at once while collecting all the time,
// then collect again and check every event still encodes to what it was decoded from: a
// pointer the collector missed would have been freed and reused.
func TestOverlayUnderGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	n := 4000
	if testing.Short() {
		n = 400
	}
	src := make([][]byte, n)
	for i := range src {
		doc := strings.Replace(benchEventJSON, `"check-cpu"`, fmt.Sprintf(`"check-%d"`, i), 1)
		ev := &Event{}
		if err := ev.UnmarshalJSON([]byte(doc)); err != nil {
			t.Fatal(err)
		}
		ev.Check.History = append(ev.Check.History, History{Status: uint32(i), Executed: int64(i)})
		ev.Check.Hooks = []Hook{{Output: strings.Repeat("h", i%50)}}
		b, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		src[i] = b
	}
	got := make([]*Event, n)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				ev := &Event{}
				if err := ev.UnmarshalJSON(src[i]); err != nil {
					t.Error(err)
					return
				}
				got[i] = ev
				_ = make([]byte, 4096) // garbage, so the collector runs
			}
		}(w)
	}
	wg.Wait()
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	for i, ev := range got {
		if ev == nil {
			continue
		}
		b, err := ev.MarshalJSON()
		if err != nil || !bytes.Equal(b, src[i]) {
			t.Fatalf("event %d after collections:\n %s (%v)\nwant\n %s", i, b, err, src[i])
		}
	}
}
