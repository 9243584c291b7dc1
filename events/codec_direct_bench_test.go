package events

import (
	"encoding/json"
	"strings"
	"testing"
)

// The server's hot paths (the agent gateway's frame decoder, the json mutator, the event
// store) call the event codec directly, not through encoding/json, which would scan the
// input again and compact the output again. These benchmarks measure that codec alone.
// Command: go test -run XXX -bench EventCodec -benchmem ./events/

// BenchmarkEventCodecDecode measures Event.UnmarshalJSON on one agent event.
func BenchmarkEventCodecDecode(b *testing.B) {
	data := []byte(benchEventJSON)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var ev Event
		if err := ev.UnmarshalJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventCodecEncode measures Event.MarshalJSON on one stored event.
func BenchmarkEventCodecEncode(b *testing.B) {
	var ev Event
	if err := json.Unmarshal([]byte(benchEventJSON), &ev); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ev.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventCodecEncodeHooks measures Event.MarshalJSON on an event whose check ran
// two hooks, the deepest nesting of keeping types (event → check → hooks).
func BenchmarkEventCodecEncodeHooks(b *testing.B) {
	var ev Event
	if err := json.Unmarshal([]byte(benchEventJSON), &ev); err != nil {
		b.Fatal(err)
	}
	ev.Check.Hooks = []Hook{
		{HookConfig: HookConfig{Metadata: ObjectMeta{Name: "ps", Namespace: "default"}, Command: "ps aux", Timeout: 10}, Executed: 1700000000, Output: "..."},
		{HookConfig: HookConfig{Metadata: ObjectMeta{Name: "df", Namespace: "default"}, Command: "df -h", Timeout: 10}, Executed: 1700000000, Output: "..."},
	}
	for b.Loop() {
		if _, err := ev.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventCodecDecodeUnknown measures Event.UnmarshalJSON on events with a key Picket
// does not know, at the top and in entity.system: those take the slower paths.
func BenchmarkEventCodecDecodeUnknown(b *testing.B) {
	for _, bm := range []struct{ name, old, new string }{
		{"top", `"timestamp"`, `"zz":1,"timestamp"`},
		{"system", `"hostname"`, `"zz":1,"hostname"`},
	} {
		b.Run(bm.name, func(b *testing.B) {
			data := []byte(strings.Replace(benchEventJSON, bm.old, bm.new, 1))
			for b.Loop() {
				var ev Event
				if err := ev.UnmarshalJSON(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEventCodecCompact measures the form events are stored in against the full
// form on the same stored event: encoding it, and reading the stored bytes back. Bytes
// per op is the size of each form.
func BenchmarkEventCodecCompact(b *testing.B) {
	var ev Event
	if err := json.Unmarshal([]byte(benchEventJSON), &ev); err != nil {
		b.Fatal(err)
	}
	for _, form := range []struct {
		name string
		enc  func() ([]byte, error)
	}{{"full", ev.MarshalJSON}, {"compact", ev.MarshalCompact}} {
		data, err := form.enc()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(form.name+"/encode", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := form.enc(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form.name+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var back Event
				if err := back.UnmarshalJSON(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
