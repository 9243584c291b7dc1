package agentgw

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Frames decoded in any order are processed in the order they were read within a key,
// and side by side across keys.
func TestFrameOrderKeepsReadOrderPerKey(t *testing.T) {
	for round := range 20 {
		o := newFrameOrder()
		const frames = 40
		var mu sync.Mutex
		got := map[frameKey][]uint64{}
		var wg sync.WaitGroup
		for _, seq := range rand.Perm(frames) {
			wg.Add(1)
			go func(seq uint64) {
				defer wg.Done()
				key := []frameKey{{"a", "disk"}, {"a", "cpu"}, {}, {"b", "disk"}}[seq%4]
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond) // decoding
				wait, done := o.enter(seq, key)
				if wait != nil {
					<-wait
				}
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond) // storing
				mu.Lock()
				got[key] = append(got[key], seq)
				mu.Unlock()
				o.leave(key, done)
			}(uint64(seq))
		}
		wg.Wait()
		for key, seqs := range got {
			if key == (frameKey{}) {
				continue
			}
			for i := 1; i < len(seqs); i++ {
				if seqs[i] < seqs[i-1] {
					t.Fatalf("round %d: key %s processed in the order %v", round, key, seqs)
				}
			}
		}
		if len(o.last) != 0 || o.next != frames {
			t.Fatalf("round %d: %d keys still chained, next %d", round, len(o.last), o.next)
		}
	}
}
