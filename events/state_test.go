package events

import (
	"fmt"
	"testing"
	"time"
)

func historyOf(statuses ...uint32) []History {
	h := make([]History, len(statuses))
	for i, s := range statuses {
		h[i] = History{Status: s, Executed: int64(1000 + i)}
	}
	return h
}

func TestTotalStateChange(t *testing.T) {
	steady := make([]uint32, 21)
	alternating := make([]uint32, 21)
	newestChanged := make([]uint32, 21)
	oldestChanged := make([]uint32, 21)
	changedMidway := make([]uint32, 21)
	lastTenFlap := make([]uint32, 21)
	firstTenFlap := make([]uint32, 21)
	for i := range 21 {
		alternating[i] = uint32(i%2) * 2
		if i >= 10 {
			changedMidway[i] = 2
		}
		if i > 10 {
			lastTenFlap[i] = uint32(i%2) * 2
		}
		if i <= 10 {
			firstTenFlap[i] = uint32(i%2) * 2
		}
	}
	newestChanged[20] = 2
	oldestChanged[0] = 1
	tests := []struct {
		name     string
		statuses []uint32
		want     uint32
	}{
		{"steady", steady, 0},
		// 20 changes weigh 0.80+0.82+…+1.18 = 19.8 of 20; Sensu's float32 arithmetic makes
		// that 98, not 99.
		{"every result changes", alternating, 98},
		{"only the newest changed", newestChanged, 5}, // 1.18/20 = 5.9%
		{"only the oldest changed", oldestChanged, 4}, // 0.80/20 = 4%
		{"one change midway", changedMidway, 4},       // 0.98/20 = 4.9%
		{"the newest ten flap", lastTenFlap, 54},      // 10.9/20 = 54.5%
		{"the oldest ten flapped", firstTenFlap, 44},  // 8.9/20 = 44.5%
		{"short history", alternating[:20], 0},
		{"no history", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := totalStateChange(historyOf(tt.statuses...)); got != tt.want {
				t.Fatalf("totalStateChange(%v) = %d, want %d", tt.statuses, got, tt.want)
			}
		})
	}
}

// feed runs results with the given statuses through UpdateEventState as the pipeline
// would, storing each event as the previous one for the next, and returns every event.
func feed(base *Check, statuses ...uint32) []*Event {
	var prev *Event
	var out []*Event
	for i, s := range statuses {
		c := *base
		c.Status = s
		c.Executed = int64(2000 + 10*i)
		next := &Event{Check: &c, Entity: &Entity{Metadata: ObjectMeta{Name: "web01"}}}
		UpdateEventState(prev, next, time.Unix(5000, 0))
		out = append(out, next)
		prev = next
	}
	return out
}

func TestUpdateEventStateOccurrences(t *testing.T) {
	statuses := []uint32{0, 0, 2, 2, 2, 1, 0, 0, 0, 0, 2}
	want := []struct{ occ, mark int64 }{
		{1, 1}, // first result
		{2, 2},
		{1, 1}, // OK to non-OK starts a new incident
		{2, 2},
		{3, 3},
		{1, 3}, // CRITICAL to WARNING: a new status, the same incident
		{1, 3}, // the resolution still carries the incident's length
		{2, 3},
		{3, 3},
		{4, 4}, // as in Sensu, a long OK streak raises it again
		{1, 1},
	}
	events := feed(&Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu"}}}, statuses...)
	for i, e := range events {
		if e.Check.Occurrences != want[i].occ || e.Check.OccurrencesWatermark != want[i].mark {
			t.Errorf("result %d (status %d): occurrences %d, watermark %d; want %d, %d",
				i, statuses[i], e.Check.Occurrences, e.Check.OccurrencesWatermark, want[i].occ, want[i].mark)
		}
	}
}

func TestUpdateEventStateHistory(t *testing.T) {
	statuses := make([]uint32, 30)
	for i := range statuses {
		statuses[i] = uint32(i % 3)
	}
	events := feed(&Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu"}}}, statuses...)
	for i, e := range events {
		h := e.Check.History
		if want := min(i+1, 21); len(h) != want {
			t.Fatalf("result %d: history has %d entries, want %d", i, len(h), want)
		}
		if last := h[len(h)-1]; last.Status != statuses[i] || last.Executed != e.Check.Executed {
			t.Fatalf("result %d: newest history entry %+v, want status %d executed %d", i, last, statuses[i], e.Check.Executed)
		}
		if first := i + 1 - len(h); h[0].Executed != int64(2000+10*first) {
			t.Fatalf("result %d: oldest history entry %+v, want result %d", i, h[0], first)
		}
	}
	// The stored event is never changed through the new one.
	prev, next := events[28], events[29]
	before := fmt.Sprint(prev.Check.History)
	next.Check.History[0].Status = 99
	if after := fmt.Sprint(prev.Check.History); after != before {
		t.Fatalf("changing the new history changed the stored one: %s -> %s", before, after)
	}
}

func TestUpdateEventStateFlapping(t *testing.T) {
	flappy := &Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu"}, LowFlapThreshold: 20, HighFlapThreshold: 40}}
	var statuses []uint32
	for range 21 {
		statuses = append(statuses, 0)
	}
	for i := range 20 {
		statuses = append(statuses, uint32(i%2)*2) // 0 2 0 2 …
	}
	for range 21 {
		statuses = append(statuses, 2)
	}
	events := feed(flappy, statuses...)
	flapping := false
	started, stopped := -1, -1
	for i, e := range events {
		c := e.Check
		// Check the hysteresis against the rule, with the percentage computed independently.
		if tsc := totalStateChange(c.History); c.TotalStateChange != tsc {
			t.Fatalf("result %d: total_state_change %d, want %d", i, c.TotalStateChange, tsc)
		}
		switch {
		case !flapping && c.TotalStateChange >= 40:
			flapping, started = true, i
		case flapping && c.TotalStateChange <= 20: // Sensu keeps flapping only above low
			flapping, stopped = false, i
		}
		want := CheckStatePassing
		switch {
		case flapping:
			want = CheckStateFlapping
		case c.Status != 0:
			want = CheckStateFailing
		}
		if c.State != want {
			t.Fatalf("result %d (status %d, total_state_change %d): state %s, want %s", i, c.Status, c.TotalStateChange, c.State, want)
		}
	}
	if started < 0 || stopped < 0 {
		t.Fatalf("the sequence should start (at %d) and stop (at %d) flapping", started, stopped)
	}
	// Between the thresholds, the state depends on where the check came from.
	if tsc := events[stopped-1].Check.TotalStateChange; tsc >= 40 {
		t.Fatalf("flapping should outlast the high threshold: the result before it stopped had %d", tsc)
	}

	// Without both thresholds, nothing flaps.
	for _, cfg := range []CheckConfig{
		{LowFlapThreshold: 0, HighFlapThreshold: 40},
		{LowFlapThreshold: 20, HighFlapThreshold: 0},
		{},
	} {
		cfg.Metadata.Name = "cpu"
		for i, e := range feed(&Check{CheckConfig: cfg}, statuses...) {
			if e.Check.State == CheckStateFlapping {
				t.Fatalf("thresholds %d/%d: result %d flaps", cfg.LowFlapThreshold, cfg.HighFlapThreshold, i)
			}
		}
	}
}

func TestUpdateEventStateLastOK(t *testing.T) {
	events := feed(&Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu"}}}, 2, 0, 1, 2, 0, 2)
	want := []int64{0, 2010, 2010, 2010, 2040, 2040}
	for i, e := range events {
		if e.Check.LastOK != want[i] {
			t.Errorf("result %d: last_ok %d, want %d", i, e.Check.LastOK, want[i])
		}
	}
}

func TestUpdateEventStateInputs(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name  string
		prev  *Event
		next  *Event
		check func(t *testing.T, e *Event)
	}{
		{"nil next", nil, nil, func(t *testing.T, e *Event) {}},
		{"metrics only", nil, &Event{Metrics: &Metrics{}}, func(t *testing.T, e *Event) {
			if e.Check != nil || e.Timestamp != 0 {
				t.Fatalf("a metrics-only event was changed: %+v", e)
			}
		}},
		{"missing times become now", nil, &Event{Check: &Check{Status: 1}}, func(t *testing.T, e *Event) {
			if e.Check.Executed != now.Unix() || e.Timestamp != now.Unix() {
				t.Fatalf("executed %d, timestamp %d, want both %d", e.Check.Executed, e.Timestamp, now.Unix())
			}
			if e.Check.State != CheckStateFailing || e.Check.LastOK != 0 {
				t.Fatalf("state %s, last_ok %d; want failing, 0", e.Check.State, e.Check.LastOK)
			}
		}},
		{"client-sent state is ignored", nil,
			&Event{Timestamp: 7, Check: &Check{Status: 0, Executed: 9, History: historyOf(2, 2, 2), Occurrences: 99, OccurrencesWatermark: 99, LastOK: 3}},
			func(t *testing.T, e *Event) {
				c := e.Check
				if len(c.History) != 1 || c.Occurrences != 1 || c.OccurrencesWatermark != 1 || c.LastOK != 9 || e.Timestamp != 7 {
					t.Fatalf("got history %v, occurrences %d, watermark %d, last_ok %d, timestamp %d",
						c.History, c.Occurrences, c.OccurrencesWatermark, c.LastOK, e.Timestamp)
				}
			}},
		{"previous event without a check", &Event{}, &Event{Check: &Check{Status: 2, Executed: 5}}, func(t *testing.T, e *Event) {
			if len(e.Check.History) != 1 || e.Check.Occurrences != 1 {
				t.Fatalf("history %v, occurrences %d", e.Check.History, e.Check.Occurrences)
			}
		}},
		{"silencing is kept", &Event{Check: &Check{History: historyOf(0), Occurrences: 1, OccurrencesWatermark: 1}},
			&Event{Check: &Check{Status: 2, Executed: 5, IsSilenced: true, Silenced: []string{"linux:cpu"}}},
			func(t *testing.T, e *Event) {
				if !e.Check.IsSilenced || len(e.Check.Silenced) != 1 {
					t.Fatalf("is_silenced %v, silenced %v", e.Check.IsSilenced, e.Check.Silenced)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			UpdateEventState(tt.prev, tt.next, now)
			tt.check(t, tt.next)
		})
	}
}

// TestFlappingThresholdBoundaries: a check starts flapping at the high threshold and
// keeps flapping only while above the low one, as Sensu's isFlapping.
func TestFlappingThresholdBoundaries(t *testing.T) {
	c := &Check{CheckConfig: CheckConfig{LowFlapThreshold: 20, HighFlapThreshold: 40}}
	for _, tc := range []struct {
		tsc       uint32
		was, want bool
	}{{40, false, true}, {39, false, false}, {21, true, true}, {20, true, false}, {19, true, false}} {
		c.TotalStateChange = tc.tsc
		if got := isFlapping(c, tc.was); got != tc.want {
			t.Errorf("total_state_change %d, flapping before %v: flapping %v, want %v", tc.tsc, tc.was, got, tc.want)
		}
	}
}

// Holds: a result executed at the second and with the status of one in the history, no
// later than the latest, is held; anything else is not.
func TestCheckStateHolds(t *testing.T) {
	s := &CheckState{History: []History{{Status: 0, Executed: 100}, {Status: 2, Executed: 110}, {Status: 2, Executed: 120}}}
	for _, tc := range []struct {
		status   uint32
		executed int64
		want     bool
	}{
		{0, 100, true},
		{2, 110, true},
		{2, 120, true},  // the latest itself
		{0, 110, false}, // same second, another status
		{2, 115, false}, // between two results
		{2, 130, false}, // later than the latest
		{2, 0, false},   // no executed time: nothing to compare
	} {
		if got := s.Holds(&Check{Status: tc.status, Executed: tc.executed}); got != tc.want {
			t.Errorf("status %d executed %d: Holds = %v, want %v", tc.status, tc.executed, got, tc.want)
		}
	}
	if (&CheckState{}).Holds(&Check{Executed: 100}) || s.Holds(nil) {
		t.Error("an empty history or no check holds a result")
	}
}
