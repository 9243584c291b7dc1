package agentgw

import (
	"sync"

	"github.com/picketmon/picket/events"
)

// frameOrder keeps one session's results of the same entity and check in the order they
// were read, while the gateway's workers decode and store its frames side by side.
//
// Without it, results of one check that arrive back to back (an agent sending its queue
// after a reconnect, a check that ran several times while the agent was cut off) were
// stored in whatever order their workers reached the event's state, and the event shown
// afterwards could be an older result than the last one sent. Each frame gets a
// sequence number when it is handed to a worker; after decoding, the worker enters in
// that order (a frame waits only for the ones read before it to be decoded) and is
// chained behind the frame read before it with the same key, which it waits for before
// it is processed. Frames with different keys still go side by side.
type frameOrder struct {
	mu   sync.Mutex
	cond sync.Cond // on mu (newFrameOrder)
	// next is the sequence number of the frame whose turn it is to enter.
	next uint64
	// last holds, per key, the done channel of the last frame that entered with it and
	// has not yet left.
	last map[frameKey]chan struct{}
}

// frameKey is what a frame's event is ordered by: the entity and check of the event it
// is stored as. The zero key orders nothing. Two strings rather than one joined: the key
// is taken for every frame, and joining would allocate.
type frameKey struct{ entity, check string }

func newFrameOrder() *frameOrder {
	o := &frameOrder{}
	o.cond.L = &o.mu
	return o
}

// keyOf returns the key of a frame's event: its entity and check (the proxy entity's
// when it names one), the keepalive check for a keepalive, none for metrics only.
func keyOf(ev *events.Event, keepalive bool) frameKey {
	switch {
	case keepalive:
		return frameKey{ev.Entity.Metadata.Name, "keepalive"}
	case ev.Check == nil || ev.Check.Metadata.Name == "":
		return frameKey{}
	case ev.Check.ProxyEntityName != "":
		return frameKey{ev.Check.ProxyEntityName, ev.Check.Metadata.Name}
	}
	return frameKey{ev.Entity.Metadata.Name, ev.Check.Metadata.Name}
}

// enter waits for frame seq's turn (every frame before it has entered), then returns
// what it must wait for before it is processed (nil: nothing), and its own done
// channel, which leave closes. A frame with the zero key is ordered with nothing.
func (o *frameOrder) enter(seq uint64, key frameKey) (wait, done chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.next != seq {
		o.cond.Wait()
	}
	o.next++
	o.cond.Broadcast()
	if key == (frameKey{}) {
		return nil, nil
	}
	if o.last == nil {
		o.last = map[frameKey]chan struct{}{}
	}
	wait = o.last[key]
	done = make(chan struct{})
	o.last[key] = done
	return wait, done
}

// leave ends a frame that entered with key: the next one of the same key may go.
func (o *frameOrder) leave(key frameKey, done chan struct{}) {
	if done == nil {
		return
	}
	o.mu.Lock()
	if o.last[key] == done {
		delete(o.last, key)
	}
	o.mu.Unlock()
	close(done)
}
