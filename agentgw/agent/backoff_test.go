package agent

import (
	"slices"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	tests := []struct {
		name       string
		min, max   time.Duration
		multiplier float64
		random     float64
		want       []time.Duration
	}{
		{"no jitter doubles up to max", time.Second, 10 * time.Second, 2, 0,
			[]time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}},
		{"full jitter doubles each base, capped", time.Second, 10 * time.Second, 2, 0.999999999,
			[]time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}},
		{"half jitter", time.Second, 120 * time.Second, 2, 0.5,
			[]time.Duration{1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, 12 * time.Second}},
		{"multiplier 3", 100 * time.Millisecond, time.Second, 3, 0,
			[]time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, time.Second}},
		{"multiplier below 1 acts as 1", time.Second, 5 * time.Second, 0.5, 0,
			[]time.Duration{time.Second, time.Second, time.Second}},
		{"max below min is raised to min", 2 * time.Second, time.Second, 2, 0,
			[]time.Duration{2 * time.Second, 2 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackoff(tt.min, tt.max, tt.multiplier)
			b.random = func() float64 { return tt.random }
			var got []time.Duration
			for range tt.want {
				got = append(got, b.Next().Round(time.Millisecond))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("delays = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBackoffRandomStaysInBounds(t *testing.T) {
	b := newBackoff(time.Second, 120*time.Second, 2)
	for attempt := 0; attempt < 200; attempt++ {
		base := time.Second << min(attempt, 7)
		if base > 120*time.Second {
			base = 120 * time.Second
		}
		d := b.Next()
		hi := 2 * base
		if hi > 120*time.Second {
			hi = 120 * time.Second
		}
		if d < base || d > hi {
			t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, base, hi)
		}
	}
}

func TestBackoffThrottleAndReset(t *testing.T) {
	b := newBackoff(time.Second, 120*time.Second, 2)
	b.random = func() float64 { return 0 }
	b.Throttle() // 429: settings double
	if got := b.Next(); got != 2*time.Second {
		t.Fatalf("first delay after one 429 = %v, want 2s", got)
	}
	if b.curMax != 240*time.Second {
		t.Fatalf("max after one 429 = %v, want 240s", b.curMax)
	}
	for range 10 {
		b.Throttle()
	}
	if b.curMin != 8*time.Second || b.curMax != 960*time.Second {
		t.Fatalf("throttle is bounded at %dx: min %v max %v", maxThrottle, b.curMin, b.curMax)
	}
	b.Reset()
	if got := b.Next(); got != time.Second {
		t.Fatalf("first delay after reset = %v, want 1s", got)
	}
}

func TestRotation(t *testing.T) {
	urls := []string{"ws://a:8081", "ws://b:8081", "ws://c:8081"}
	t.Run("rotates in shuffled order", func(t *testing.T) {
		reverse := func(n int, swap func(i, j int)) {
			for i := 0; i < n/2; i++ {
				swap(i, n-1-i)
			}
		}
		r := newRotation(urls, reverse)
		var got []string
		for range 7 {
			got = append(got, r.Next())
		}
		want := []string{"ws://c:8081", "ws://b:8081", "ws://a:8081", "ws://c:8081", "ws://b:8081", "ws://a:8081", "ws://c:8081"}
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("real shuffle visits every URL once per round", func(t *testing.T) {
		r := newRotation(urls, nil)
		for round := 0; round < 5; round++ {
			seen := map[string]bool{}
			for range urls {
				seen[r.Next()] = true
			}
			if len(seen) != len(urls) {
				t.Fatalf("round %d visited %v", round, seen)
			}
		}
		if !slices.Equal(urls, []string{"ws://a:8081", "ws://b:8081", "ws://c:8081"}) {
			t.Fatal("the caller's slice was shuffled")
		}
	})
}

func TestSessionLength(t *testing.T) {
	for _, tt := range []struct {
		l      time.Duration
		random float64
		want   time.Duration
	}{
		{0, 0.5, 0},
		{-time.Second, 0.5, 0},
		{time.Hour, 0, 30 * time.Minute},
		{time.Hour, 0.5, 45 * time.Minute},
		{time.Hour, 0.9999999999, time.Hour},
	} {
		got := sessionLength(tt.l, func() float64 { return tt.random }).Round(time.Second)
		if got != tt.want {
			t.Errorf("sessionLength(%v, %v) = %v, want %v", tt.l, tt.random, got, tt.want)
		}
	}
}
