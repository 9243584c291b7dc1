package node

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/api"
)

// stateCache keeps the latest stored event of recently seen entity/check pairs in
// memory, so computing a result's state (history, occurrences, flapping) needs no etcd
// read. Entries are read through from etcd on a miss and carry the mod revision they
// were stored at; writes compare it, so a write by another server or a monitor is
// noticed, re-read and never overwritten blindly.
type stateCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*list.Element
	lru *list.List
}

type stateEntry struct {
	key string
	// mu serialises state computation and the write for one key, so two results of the
	// same check never race on the same previous state.
	mu     sync.Mutex
	loaded bool
	// state is that of the stored event when hasState (held by value: one allocation
	// less per event), id its ID.
	state    events.CheckState
	hasState bool
	id       string
	rev      int64
	// recent holds the IDs of the last 16 events stored at this key that this server
	// wrote or read, so a result an agent resends (its ack was lost) is acknowledged, not
	// stored twice.
	recent [16]string
	next   int
	// idSum and recentSum are short hashes of id and recent, compared first: the
	// strings themselves lie elsewhere in memory, a cache miss each.
	idSum     uint32
	recentSum [16]uint32
}

var idSeed = maphash.MakeSeed()

func idHash(id string) uint32 { return uint32(maphash.String(idSeed, id)) }

func (e *stateEntry) seen(id string) bool {
	if id == "" {
		return false
	}
	h := idHash(id)
	if e.idSum == h && e.id == id {
		return true
	}
	for i, s := range e.recentSum {
		if s == h && e.recent[i] == id {
			return true
		}
	}
	return false
}

// storedEarlier reports whether ev, whose ID is not among the known ones, is a result
// the stored history already holds: executed before the newest stored result, at the
// same second and with the same status as one of the history's. That is what an agent
// resends after a failover when another server stored the result but its ack was lost:
// storing it again would put an old result over newer ones and count it twice. A result
// older than the whole history (21 results) is not recognised and is stored. Proxy
// checks are left out: several agents may run one at the same second, on clocks apart.
func (e *stateEntry) storedEarlier(ev *events.Event) bool {
	c := ev.Check
	if ev.ID == "" || !e.hasState || c.Executed == 0 || c.ProxyEntityName != "" {
		return false
	}
	var newest int64
	for _, h := range e.state.History {
		newest = max(newest, h.Executed)
	}
	if c.Executed >= newest {
		return false
	}
	for _, h := range e.state.History {
		if h.Executed == c.Executed && h.Status == c.Status {
			return true
		}
	}
	return false
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, m: map[string]*list.Element{}, lru: list.New()}
}

func (c *stateCache) entry(key string) *stateEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*stateEntry)
	}
	e := &stateEntry{key: key}
	c.m[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*stateEntry).key)
	}
	return e
}

func (c *stateCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// writeEvent computes ev's state from the previous event of its entity and check and
// stores it through the grouped writer, with extra puts committed alongside. It
// returns once the write is committed, reporting false when ev was a resend of a
// result already stored (by its ID), which it leaves alone.
func (n *Node) writeEvent(ctx context.Context, ev *events.Event, now time.Time, extra ...etcdx.Write) (stored bool, err error) {
	ns := ev.Entity.Metadata.Namespace
	key := eventKey(ns, ev.Entity.Metadata.Name, ev.Check.Metadata.Name)
	ev.Check.Metadata.Namespace = ns
	e := n.states.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		prev, rev, err := etcdx.GetJSON[*events.Event](ctx, n.store, key)
		if err != nil && !errors.Is(err, etcdx.ErrNotFound) {
			return false, err
		}
		e.setStored(prev, rev)
		e.loaded = true
	}
	if e.seen(ev.ID) || e.storedEarlier(ev) {
		return false, nil
	}
	for attempt := 0; attempt < 8; attempt++ {
		var last *events.CheckState
		if e.hasState {
			last = &e.state
		}
		events.UpdateState(last, ev, now)
		val, err := api.StoredEvent(ev)
		if err != nil {
			return false, err
		}
		res, err := n.batch.Put(ctx, etcdx.CondPut{Key: key, Value: val, ModRev: e.rev, Extra: extra})
		if err != nil {
			e.loaded = false // the outcome is unknown: read through next time
			return false, err
		}
		if res.Written {
			e.committed(ev, res.Rev)
			return true, nil
		}
		// Someone else wrote the event since we read it: take theirs and recompute.
		var prev *events.Event
		if res.Current.ModRevision != 0 {
			prev = &events.Event{}
			if err := json.Unmarshal(res.Current.Value, prev); err != nil {
				e.loaded = false
				return false, fmt.Errorf("stored event %s: %w", key, err)
			}
		}
		e.setStored(prev, res.Current.ModRevision)
		if e.seen(ev.ID) || e.storedEarlier(ev) {
			return false, nil // what was written meanwhile is this very result, resent
		}
	}
	return false, fmt.Errorf("store event %s: %w", key, etcdx.ErrConflict)
}

// committed records ev as written by this server at mod revision rev.
func (e *stateEntry) committed(ev *events.Event, rev int64) { e.setStored(ev, rev) }

// setStored records ev (nil: none) as the event stored at mod revision rev, whoever
// wrote it. It keeps what the next result's state needs and ev's ID, so the cache's
// memory does not grow with check output and entity size, and adds the ID to the recent
// ones: a result stored by another server (read after a failover, or when a write's
// condition failed) is then known too when its agent resends it here. The history is
// shared, never changed: each new event gets a fresh one (events.UpdateState).
func (e *stateEntry) setStored(ev *events.Event, rev int64) {
	e.state, e.hasState = events.StateOf(ev)
	if ev != nil && ev.ID != "" && !e.seen(ev.ID) {
		i := e.next % len(e.recent)
		e.recent[i], e.recentSum[i] = ev.ID, idHash(ev.ID)
		e.next++
	}
	e.id, e.idSum, e.rev = "", 0, rev
	if ev != nil {
		e.id, e.idSum = ev.ID, idHash(ev.ID)
	}
}
