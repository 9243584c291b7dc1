package events

import (
	"testing"
	"time"
)

func TestAggregateRecordAndSummary(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ev := testEvent(2)
	ev.Check.Interval = 10
	ev.Check.Executed = now.Unix()
	r := NewAggregateRecord(ev)
	if r.Retention != 30 || r.Entity != "web1" || r.Check != "disk" {
		t.Fatalf("record %+v, want a retention of 3 intervals", r)
	}
	ev.Check.Metadata.Annotations = map[string]string{AggregateRetentionAnnotation: "2m"}
	if r := NewAggregateRecord(ev); r.Retention != 120 {
		t.Fatalf("annotated retention %d", r.Retention)
	}
	ev.Check.Metadata.Annotations[AggregateRetentionAnnotation] = "7"
	if r := NewAggregateRecord(ev); r.Retention != 7 {
		t.Fatalf("retention in seconds %d", r.Retention)
	}
	cfg := &CheckConfig{Command: "x", Interval: 10, Aggregate: "web"}
	cfg.Metadata = ObjectMeta{Name: "c", Annotations: map[string]string{AggregateRetentionAnnotation: "soon"}}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a bad retention passed validation")
	}
	recs := []AggregateRecord{
		{Entity: "a", Check: "c", Status: 0, Executed: now.Unix(), Interval: 10, Retention: 30},
		{Entity: "b", Check: "c", Status: 0, Executed: now.Unix() - 5, Interval: 10, Retention: 30},
		{Entity: "c", Check: "c", Status: 2, Executed: now.Unix(), Interval: 10, Retention: 30},
		{Entity: "d", Check: "c", Status: 1, Executed: now.Unix(), Interval: 10, Retention: 30},
		{Entity: "e", Check: "c", Status: 7, Executed: now.Unix(), Interval: 10, Retention: 30},
		{Entity: "f", Check: "c", Status: 0, Executed: now.Unix() - 25, Interval: 10, Retention: 30}, // stale
		{Entity: "g", Check: "c", Status: 0, Executed: now.Unix() - 31, Interval: 10, Retention: 30}, // expired
	}
	a := Summarize("web", recs, now)
	if a.OK != 2 || a.Critical != 1 || a.Warning != 1 || a.Unknown != 1 || a.Stale != 1 || a.Total != 6 || len(a.Results) != 6 {
		t.Fatalf("summary %+v", a)
	}
	if a.Results[0].Entity != "a" || !a.Results[5].Stale {
		t.Fatalf("results %+v", a.Results)
	}
}

// TestAggregateAgeByServerClock: a result's age counts from when the server stored it,
// not from the agent's check.executed, so a skewed agent clock neither prunes it at
// once nor keeps it from going stale.
func TestAggregateAgeByServerClock(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	slow := AggregateRecord{Entity: "slow", Executed: now.Unix() - 300, Received: now.Unix() - 1, Interval: 10, Retention: 30}
	if slow.Expired(now) || slow.Stale(now) {
		t.Fatalf("a result stored a second ago by an agent 5 min slow counts as expired %v or stale %v", slow.Expired(now), slow.Stale(now))
	}
	fast := AggregateRecord{Entity: "fast", Executed: now.Unix() + 300, Received: now.Unix() - 25, Interval: 10, Retention: 30}
	if !fast.Stale(now) || fast.Expired(now) {
		t.Fatalf("a result stored 25 s ago by an agent 5 min fast: stale %v (want true), expired %v (want false)", fast.Stale(now), fast.Expired(now))
	}
	if old := (AggregateRecord{Executed: now.Unix() - 31, Retention: 30}); !old.Expired(now) {
		t.Fatal("a record written before received existed must still age by executed")
	}
}
