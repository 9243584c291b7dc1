package node

import (
	"log/slog"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// TestSilenceEndedOnResolve: an expire_on_resolve silence whose check resolved silences
// nothing more on this server, even before its delete has gone through (it may fail,
// and the sweep then tries again), and a replacement of it is a fresh silence.
func TestSilenceEndedOnResolve(t *testing.T) {
	c := newSilenceCache(&Node{log: slog.New(slog.DiscardHandler)})
	key := etcdx.Key("silenced", "default", "*:disk")
	c.put(etcdx.KV{Key: key, Value: []byte(`{"check":"disk","expire_on_resolve":true}`), ModRevision: 7})
	event := func(status uint32, history ...uint32) *events.Event {
		ent := &events.Entity{EntityClass: events.EntityAgent, Subscriptions: []string{"linux", "entity:web1"}}
		ent.Metadata = events.ObjectMeta{Name: "web1", Namespace: "default"}
		chk := &events.Check{}
		chk.Metadata = events.ObjectMeta{Name: "disk", Namespace: "default"}
		chk.Subscriptions, chk.Status = []string{"linux"}, status
		for _, s := range append(history, status) {
			chk.History = append(chk.History, events.History{Status: s})
		}
		return &events.Event{Entity: ent, Check: chk}
	}
	now := time.Now()
	incident := event(2, 0)
	c.apply(incident, now)
	if !incident.Check.IsSilenced {
		t.Fatal("the incident is not silenced")
	}
	resolution := event(0, 2)
	c.apply(resolution, now)
	kept, ok := c.resolve(resolution)
	if !ok || len(kept) != 0 {
		t.Fatalf("resolve: kept %v, ok %v", kept, ok)
	}
	if len(c.deletes) != 1 {
		t.Fatalf("%d deletes queued, want 1", len(c.deletes))
	}
	<-c.deletes // the delete "fails": nobody runs it
	c.pmu.Lock()
	clear(c.pending)
	c.pmu.Unlock()
	next := event(2, 0)
	c.apply(next, now)
	if next.Check.IsSilenced || len(next.Check.Silenced) != 0 {
		t.Fatalf("the next incident is silenced by the ended silence: %v", next.Check.Silenced)
	}
	if len(c.deletes) != 1 {
		t.Fatalf("the ended silence was not queued for delete again (%d queued)", len(c.deletes))
	}
	<-c.deletes
	// Replaced (a new revision): a fresh silence again.
	c.put(etcdx.KV{Key: key, Value: []byte(`{"check":"disk","expire_on_resolve":true}`), ModRevision: 9})
	again := event(2, 0)
	c.apply(again, now)
	if !again.Check.IsSilenced {
		t.Fatal("a replaced expire_on_resolve silence does not silence")
	}
}
