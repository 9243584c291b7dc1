package node

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// gcPacer raises Go's garbage-collection target while the server stores events at a high
// rate, and lowers it again when the rate falls.
//
// The event path makes short-lived garbage in proportion to the rate: at 20,000 events/s
// the collector's marking took about 9.5 % of the server's CPU at Go's default (GOGC=100,
// a collection every 0.4 s over ~140 MB live), 4.8 % at GOGC=200 (BENCHMARKS.md, fifteenth
// session). Collecting half as often costs the live heap once more in garbage waiting,
// about 140 MB at that rate, which a server storing that many events can spare; an idle
// server, or one with many quiet agents, keeps the default and its smaller footprint (at
// GOGC=200, 9,000 idle agents took 66 instead of 47 KB of RSS each).
//
// The pacer samples the events written every interval: at highRate events/s or more it
// sets the raised percentage; after quietFor below lowRate it restores the base. A GOGC
// set in the environment is the operator's choice, and the server does not run a pacer
// then (see Config.PaceGC).
type gcPacer struct {
	writes            func() int64  // event writes committed so far
	setPercent        func(int) int // debug.SetGCPercent
	base, raised      int           // GC percentages
	highRate, lowRate float64       // events/s
	interval          time.Duration // between samples
	quietFor          time.Duration // below lowRate before the base is restored
	onChange          func(pct int, rate float64)

	current   atomic.Int64 // the percentage set, for /metrics
	last      int64
	lastAt    time.Time
	busySince time.Time // last sample at lowRate or more
}

// newGCPacer returns a pacer over writes with the server's thresholds: GOGC=200 from 2,000
// events/s, back to Go's default after 30 s below 1,000/s, sampled every 5 s.
func newGCPacer(writes func() int64, onChange func(pct int, rate float64)) *gcPacer {
	p := &gcPacer{writes: writes, setPercent: debug.SetGCPercent, base: 100, raised: 200,
		highRate: 2000, lowRate: 1000, interval: 5 * time.Second, quietFor: 30 * time.Second, onChange: onChange}
	p.current.Store(int64(p.base))
	return p
}

// run samples until ctx ends, then restores the base percentage.
func (p *gcPacer) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	p.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			if p.current.Load() != int64(p.base) {
				p.apply(p.base, 0)
			}
			return
		case now := <-t.C:
			p.sample(now)
		}
	}
}

// sample takes the rate since the previous sample and moves the percentage.
func (p *gcPacer) sample(now time.Time) {
	w := p.writes()
	if p.lastAt.IsZero() {
		p.last, p.lastAt = w, now
		return
	}
	secs := now.Sub(p.lastAt).Seconds()
	if secs <= 0 {
		return
	}
	rate := float64(w-p.last) / secs
	p.last, p.lastAt = w, now
	if rate >= p.lowRate {
		p.busySince = now
	}
	cur := int(p.current.Load())
	switch {
	case rate >= p.highRate && cur != p.raised:
		p.apply(p.raised, rate)
	case cur != p.base && rate < p.lowRate && now.Sub(p.busySince) >= p.quietFor:
		p.apply(p.base, rate)
	}
}

func (p *gcPacer) apply(pct int, rate float64) {
	p.setPercent(pct)
	p.current.Store(int64(pct))
	if p.onChange != nil {
		p.onChange(pct, rate)
	}
}
