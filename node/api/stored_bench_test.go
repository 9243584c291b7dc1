package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/picketmon/picket/events"
)

// BenchmarkStoredEvent encodes an event as the server stores every one it commits: a
// check result with a full history, compact and compressed. Allocations per op are the
// point: they are most of the collector's work under load.
func BenchmarkStoredEvent(b *testing.B) {
	now := time.Now()
	var prev, ev *events.Event
	for i := 0; i < 25; i++ {
		ev = &events.Event{Entity: &events.Entity{EntityClass: "agent", Subscriptions: []string{"linux", "entity:bench-00042"}},
			Check: &events.Check{Status: uint32(i % 3), Executed: now.Unix() + int64(i*10),
				Output: "LOAD OK - total load average: 0.52, 0.61, 0.66|load1=0.520;4.000;8.000;0; load5=0.610;3.000;6.000;0;\n"}}
		ev.Check.Command, ev.Check.Interval = "check-load -w 4,3,2 -c 8,6,4", 10
		ev.Check.Subscriptions, ev.Check.Handlers = []string{"linux"}, []string{"default"}
		ev.Entity.Metadata.Name, ev.Entity.Metadata.Namespace = "bench-00042", "default"
		ev.Entity.System.Hostname, ev.Entity.System.OS = "bench-00042", "linux"
		ev.Check.Metadata.Name = "bench-check-3"
		ev.ID = fmt.Sprintf("%032x", i)
		events.UpdateEventState(prev, ev, now.Add(time.Duration(i)*10*time.Second))
		prev = ev
	}
	val, err := StoredEvent(ev)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(val)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := StoredEvent(ev); err != nil {
			b.Fatal(err)
		}
	}
}
