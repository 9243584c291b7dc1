package agent

import (
	"math/rand/v2"
	"time"
)

// maxThrottle bounds how far repeated HTTP 429 answers stretch the backoff: the
// settings double per 429, up to this factor of the configured ones.
const maxThrottle = 8

// backoff computes reconnect delays: min·multiplier^attempt, plus up to 100 % random
// jitter, never more than max. Throttle (an HTTP 429 from a backend) doubles min and max;
// Reset restores the configured values and starts counting attempts again.
type backoff struct {
	min, max   time.Duration // configured
	curMin     time.Duration
	curMax     time.Duration
	multiplier float64
	attempt    int
	// random returns a number in [0, 1); a field so tests can pin the jitter.
	random func() float64
}

func newBackoff(min, max time.Duration, multiplier float64) *backoff {
	if multiplier < 1 {
		multiplier = 1
	}
	if max < min {
		max = min
	}
	return &backoff{min: min, max: max, curMin: min, curMax: max, multiplier: multiplier, random: rand.Float64}
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *backoff) Next() time.Duration {
	base := float64(b.curMin)
	for i := 0; i < b.attempt && base < float64(b.curMax); i++ {
		base *= b.multiplier
	}
	if base > float64(b.curMax) {
		base = float64(b.curMax)
	}
	b.attempt++
	d := time.Duration(base * (1 + b.random()))
	if d > b.curMax {
		d = b.curMax
	}
	if d < b.curMin {
		d = b.curMin
	}
	return d
}

// Throttle doubles the current minimum and maximum, up to maxThrottle times the
// configured ones, as Sensu agents do when a backend answers 429 Too Many Requests.
func (b *backoff) Throttle() {
	if b.curMin*2 <= b.min*maxThrottle {
		b.curMin *= 2
	}
	if b.curMax*2 <= b.max*maxThrottle {
		b.curMax *= 2
	}
}

// Reset returns to the configured settings, after a session that lasted.
func (b *backoff) Reset() {
	b.attempt = 0
	b.curMin, b.curMax = b.min, b.max
}

// rotation hands out backend URLs: shuffled once, then the next one on every attempt.
type rotation struct {
	urls []string
	i    int
}

func newRotation(urls []string, shuffle func(n int, swap func(i, j int))) *rotation {
	r := &rotation{urls: append([]string(nil), urls...)}
	if shuffle == nil {
		shuffle = rand.Shuffle
	}
	shuffle(len(r.urls), func(i, j int) { r.urls[i], r.urls[j] = r.urls[j], r.urls[i] })
	return r
}

// Next returns the URL of the next attempt.
func (r *rotation) Next() string {
	u := r.urls[r.i%len(r.urls)]
	r.i++
	return u
}

// sessionLength picks when a session ends under max-session-length: a random time in
// [l/2, l], 0 (never) when l is not positive.
func sessionLength(l time.Duration, random func() float64) time.Duration {
	if l <= 0 {
		return 0
	}
	return l/2 + time.Duration(float64(l/2)*random())
}
