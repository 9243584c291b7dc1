package events

import (
	"crypto/md5"
	"encoding/binary"
	"time"
)

// NextRun returns the first time at or after now on the run grid of the check called name
// that runs every interval. The grid depends only on name and interval, so every server,
// and every restart, schedules the check at the same phase: with h the first 8 bytes of
// MD5(name) read little-endian, the next run is now + ((h − now) mod 2^64) mod interval,
// now in Unix nanoseconds, in wrapping uint64 arithmetic as Sensu computes it.
//
// A result equal to now means now is itself on the grid: the run is due at once. A
// scheduler therefore computes each run from the clock, never by adding interval to the
// last one, and asks for the run after one it has just started with a time past it:
//
//	next := NextRun(name, interval, time.Now())
//	for {
//		sleep until next (the wake-up may be late)
//		run the check for grid time next
//		next = NextRun(name, interval, later(time.Now(), next.Add(time.Nanosecond)))
//	}
//
// A wake-up later than one interval skips the missed grid times rather than bunching them.
// An interval of zero or less has no grid; NextRun returns now.
func NextRun(name string, interval time.Duration, now time.Time) time.Time {
	if interval <= 0 {
		return now
	}
	n := uint64(now.UnixNano())
	offset := (splayHash(name) - n) % uint64(interval)
	return now.Add(time.Duration(offset))
}

// AgentCheckKey is the cadence name of a check defined in an agent's own configuration
// (a standalone check), "agentname:checkname", so that the same check on two agents runs
// at two different phases.
func AgentCheckKey(agent, check string) string {
	return agent + ":" + check
}

// splayHash is the first 8 bytes of the MD5 of name, read little-endian.
func splayHash(name string) uint64 {
	sum := md5.Sum([]byte(name))
	return binary.LittleEndian.Uint64(sum[:8])
}
