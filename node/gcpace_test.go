package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// The pacer raises GOGC at the high rate, keeps it while the rate stays above the low
// one, and restores the default only after the quiet period below it.
func TestGCPacerFollowsTheEventRate(t *testing.T) {
	var writes int64
	var set []int
	p := newGCPacer(func() int64 { return writes }, nil)
	p.setPercent = func(pct int) int { set = append(set, pct); return 0 }
	at := time.Unix(1_800_000_000, 0)
	step := func(rate int64, wantPct int) {
		t.Helper()
		writes += rate * 5
		at = at.Add(5 * time.Second)
		p.sample(at)
		if got := int(p.current.Load()); got != wantPct {
			t.Fatalf("after %d events/s at %s: GOGC %d, want %d (set %v)", rate, at.Format("15:04:05"), got, wantPct, set)
		}
	}
	p.sample(at) // the first sample only sets the baseline
	step(500, 100)
	step(1999, 100)
	step(20000, 200)
	step(1500, 200) // between the thresholds: stays raised
	for range 5 {
		step(200, 200) // quiet, but not yet for 30 s
	}
	step(200, 100) // 30 s below 1,000/s
	step(0, 100)
	step(2500, 200)
	if want := []int{200, 100, 200}; len(set) != len(want) || set[0] != 200 || set[1] != 100 || set[2] != 200 {
		t.Fatalf("SetGCPercent calls %v, want %v", set, want)
	}
}

// run raises the target under load and puts the base back when it stops.
func TestGCPacerRestoresTheBaseOnStop(t *testing.T) {
	var writes atomic.Int64
	set := make(chan int, 10)
	p := newGCPacer(func() int64 { return writes.Add(1_000_000) }, nil)
	p.setPercent = func(pct int) int { set <- pct; return 0 }
	p.interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	if pct := <-set; pct != 200 {
		t.Fatalf("under load: GOGC %d, want 200", pct)
	}
	cancel()
	<-done
	if pct := <-set; pct != 100 || p.current.Load() != 100 {
		t.Fatalf("after stopping: GOGC %d (current %d), want 100", pct, p.current.Load())
	}
}
