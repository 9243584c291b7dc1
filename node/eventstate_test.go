package node

import (
	"fmt"
	"testing"

	"github.com/picketmon/picket/events"
)

// TestStateEntrySeen: an entry recognises the stored event's ID and the last 16 stored
// (read or committed), and nothing else, after its stored event changed and its recent
// IDs wrapped.
func TestStateEntrySeen(t *testing.T) {
	e := &stateEntry{}
	stored := func(id string) *events.Event {
		return &events.Event{ID: id, Check: &events.Check{}}
	}
	e.setStored(stored("from-etcd"), 7)
	if !e.seen("from-etcd") || e.seen("other") || e.seen("") {
		t.Fatal("stored ID: seen wrong")
	}
	// Read again (a failed condition returns the same event): one place in recent.
	e.setStored(stored("from-etcd"), 7)
	e.setStored(stored("r-first"), 8)
	if !e.seen("from-etcd") || e.next != 2 {
		t.Fatalf("an ID read, then replaced by a commit, must stay known once: seen %v, %d recent", e.seen("from-etcd"), e.next)
	}
	for i := 0; i < 20; i++ {
		e.setStored(stored(fmt.Sprintf("r%d", i)), int64(9+i))
	}
	if e.seen("from-etcd") {
		t.Error("the ID stored before is still seen after it was replaced")
	}
	for i := 0; i < 20; i++ {
		if want := i >= 4; e.seen(fmt.Sprintf("r%d", i)) != want {
			t.Errorf("r%d: seen %v, want %v (the last 16 only)", i, !want, want)
		}
	}
	e.setStored(nil, 30)
	if e.seen("r19") != true || e.idSum != 0 || e.id != "" {
		t.Errorf("after the stored event was deleted: id %q sum %d; r19 must still be a recent commit", e.id, e.idSum)
	}
}
