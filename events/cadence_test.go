package events

import (
	"crypto/md5"
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

var cadenceStart = time.Date(2026, 5, 17, 10, 11, 12, 13, time.UTC)

// onGrid reports whether t lies on the grid through g with spacing interval.
func onGrid(t, g time.Time, interval time.Duration) bool {
	return t.Sub(g)%interval == 0
}

func TestNextRunFormula(t *testing.T) {
	// Compute the documented formula with big integers, independently of the uint64 code.
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	tests := []struct {
		name     string
		interval time.Duration
		now      time.Time
	}{
		{"cpu", 10 * time.Second, cadenceStart},
		{"disk", time.Minute, cadenceStart.Add(17 * time.Hour)},
		{"agent-1:load", 30 * time.Second, time.Unix(0, 0)},
		{"memory", 24 * time.Hour, time.Date(2099, 12, 31, 23, 59, 59, 999, time.UTC)},
		{"", time.Nanosecond * 7, cadenceStart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum := md5.Sum([]byte(tt.name))
			h := new(big.Int)
			for i := 7; i >= 0; i-- { // little-endian
				h.Lsh(h, 8).Or(h, big.NewInt(int64(sum[i])))
			}
			d := new(big.Int).Sub(h, big.NewInt(tt.now.UnixNano()))
			d.Mod(d, two64).Mod(d, big.NewInt(int64(tt.interval)))
			want := tt.now.Add(time.Duration(d.Int64()))
			if got := NextRun(tt.name, tt.interval, tt.now); !got.Equal(want) {
				t.Fatalf("NextRun = %v, want %v", got, want)
			}
		})
	}
}

func TestNextRunGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"cpu", "disk", "web01:http", "a-very-long-check-name-with-dots.and.more"} {
		for _, interval := range []time.Duration{time.Second, 10 * time.Second, time.Minute, 7 * time.Minute, time.Hour} {
			t.Run(fmt.Sprintf("%s/%v", name, interval), func(t *testing.T) {
				g0 := NextRun(name, interval, cadenceStart)
				for range 1000 {
					// Arbitrary times within a month either side.
					now := cadenceStart.Add(time.Duration(rng.Int64N(int64(60*24*time.Hour))) - 30*24*time.Hour)
					got := NextRun(name, interval, now)
					if got.Before(now) || got.Sub(now) >= interval {
						t.Fatalf("NextRun(%v) = %v: not within one interval after now", now, got)
					}
					if !onGrid(got, g0, interval) {
						t.Fatalf("NextRun(%v) = %v: off the grid through %v", now, got, g0)
					}
					// Successive calls walk the grid one interval at a time.
					if next := NextRun(name, interval, got.Add(time.Nanosecond)); next.Sub(got) != interval {
						t.Fatalf("run after %v is %v, want one interval later", got, next)
					}
				}
			})
		}
	}
}

func TestNextRunDueNow(t *testing.T) {
	g := NextRun("cpu", time.Minute, cadenceStart)
	if got := NextRun("cpu", time.Minute, g); !got.Equal(g) {
		t.Fatalf("NextRun at a grid time = %v, want that time %v", got, g)
	}
	if got := NextRun("cpu", time.Minute, g.Add(-time.Nanosecond)); !got.Equal(g) {
		t.Fatalf("NextRun just before a grid time = %v, want %v", got, g)
	}
	if got := NextRun("cpu", 0, cadenceStart); !got.Equal(cadenceStart) {
		t.Fatalf("NextRun with no interval = %v, want now", got)
	}
}

// TestNextRunRestartInvariance starts a scheduler, then "restarts" it at arbitrary moments
// (as another server, or after a crash) and checks that it keeps to the same times.
func TestNextRunRestartInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const interval = 10 * time.Second
	first := map[time.Time]bool{}
	run := NextRun("cpu", interval, cadenceStart)
	end := cadenceStart.Add(24 * time.Hour)
	for ; run.Before(end); run = NextRun("cpu", interval, run.Add(time.Nanosecond)) {
		first[run] = true
	}
	for range 200 {
		restart := cadenceStart.Add(time.Duration(rng.Int64N(int64(23 * time.Hour))))
		run := NextRun("cpu", interval, restart)
		for range 50 {
			if !first[run] {
				t.Fatalf("after a restart at %v the check runs at %v, which the first scheduler never used", restart, run)
			}
			run = NextRun("cpu", interval, run.Add(time.Nanosecond))
		}
	}
}

// TestNextRunNoDrift simulates a scheduler whose timer fires late by up to half an
// interval every time: each run must still be exactly on the grid, one interval apart.
func TestNextRunNoDrift(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, interval := range []time.Duration{time.Second, 10 * time.Second, 90 * time.Second} {
		t.Run(interval.String(), func(t *testing.T) {
			g0 := NextRun("web01:http", interval, cadenceStart)
			next := g0
			for i := range 10000 {
				late := time.Duration(rng.Int64N(int64(interval/2) + 1))
				if i%10 == 0 {
					late = 0 // a timer that fires exactly on time must not run twice
				}
				woke := next.Add(late)
				if !onGrid(next, g0, interval) {
					t.Fatalf("run %d at %v drifted off the grid through %v", i, next, g0)
				}
				if want := g0.Add(time.Duration(i) * interval); !next.Equal(want) {
					t.Fatalf("run %d at %v, want %v", i, next, want)
				}
				after := woke
				if !after.After(next) {
					after = next.Add(time.Nanosecond)
				}
				next = NextRun("web01:http", interval, after)
			}
		})
	}
}

func TestNextRunPhasesDiffer(t *testing.T) {
	const interval = time.Minute
	seen := map[time.Duration]string{}
	for i := range 200 {
		name := fmt.Sprintf("check-%d", i)
		phase := NextRun(name, interval, cadenceStart).Sub(cadenceStart)
		if other, ok := seen[phase]; ok {
			t.Fatalf("%s and %s share the phase %v", name, other, phase)
		}
		seen[phase] = name
	}
	// The standalone key keeps the same check on two agents apart.
	a := NextRun(AgentCheckKey("web01", "http"), interval, cadenceStart)
	b := NextRun(AgentCheckKey("web02", "http"), interval, cadenceStart)
	if a.Equal(b) {
		t.Fatalf("web01:http and web02:http run at the same time %v", a)
	}
}

func TestAgentCheckKey(t *testing.T) {
	if got := AgentCheckKey("web01", "http"); got != "web01:http" {
		t.Fatalf("AgentCheckKey = %q, want web01:http", got)
	}
}
