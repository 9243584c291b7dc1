package node

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
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
	// scanned holds the entities (their event key prefix) whose stored events were read
	// all at once into entries: a key of theirs without a loaded entry was not stored
	// then. An agent's first results after it connects (to a new server, after a
	// restart or a failover) then cost one read for the entity, not one per check.
	scanned map[string]struct{}
	// entityReads and keyReads count the reads of misses: of an entity's events at once,
	// and of one key (of an entity with more than maxScan events, or after a read of its
	// entity failed to find it among the first maxScan).
	entityReads, keyReads atomic.Int64
}

// maxScan bounds the events read at once for one entity; an entity with more reads
// the rest one key at a time.
const maxScan = 256

// entityPrefix is the prefix of the event keys of key's entity, ending in "/".
func entityPrefix(key string) string { return key[:strings.LastIndexByte(key, '/')+1] }

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
	return &stateCache{max: max, m: map[string]*list.Element{}, lru: list.New(), scanned: map[string]struct{}{}}
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
		delete(c.scanned, entityPrefix(old.Value.(*stateEntry).key))
	}
	return e
}

// load reads e's stored event (the caller holds e.mu). The first miss of an entity reads
// all its stored events (up to maxScan) and fills the entries of the others too, unless
// they are busy; later misses of that entity need no read. Every write compares the mod
// revision it read, so an event stored by someone else meanwhile is noticed, not lost.
func (c *stateCache) load(ctx context.Context, store *etcdx.Store, e *stateEntry) error {
	prefix := entityPrefix(e.key)
	c.mu.Lock()
	_, scanned := c.scanned[prefix]
	c.mu.Unlock()
	if scanned {
		e.setStored(nil, 0)
		e.loaded = true
		return nil
	}
	c.entityReads.Add(1)
	kvs, more, err := store.List(ctx, prefix, maxScan, "")
	if err != nil {
		return err
	}
	found := false
	for _, kv := range kvs {
		if kv.Key == e.key {
			prev, err := decodeStored(kv)
			if err != nil {
				return err
			}
			e.setStored(prev, kv.ModRevision)
			found = true
			continue
		}
		o := c.entry(kv.Key)
		if !o.mu.TryLock() {
			continue // its own writer is loading or writing it
		}
		if !o.loaded {
			if prev, err := decodeStored(kv); err == nil {
				o.setStored(prev, kv.ModRevision)
				o.loaded = true
			}
		}
		o.mu.Unlock()
	}
	if !found {
		if more != "" {
			c.keyReads.Add(1)
			prev, rev, err := etcdx.GetJSON[*events.Event](ctx, store, e.key)
			if err != nil && !errors.Is(err, etcdx.ErrNotFound) {
				return err
			}
			e.setStored(prev, rev)
		} else {
			e.setStored(nil, 0)
		}
	}
	e.loaded = true
	if more == "" {
		c.mu.Lock()
		c.scanned[prefix] = struct{}{}
		c.mu.Unlock()
	}
	return nil
}

// unload makes e be read again on its next use: after a write whose outcome is unknown.
func (c *stateCache) unload(e *stateEntry) {
	e.loaded = false
	c.mu.Lock()
	delete(c.scanned, entityPrefix(e.key))
	c.mu.Unlock()
}

func decodeStored(kv etcdx.KV) (*events.Event, error) {
	ev := &events.Event{}
	if err := json.Unmarshal(kv.Value, ev); err != nil {
		return nil, fmt.Errorf("stored event %s: %w", kv.Key, err)
	}
	return ev, nil
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
		if err := n.states.load(ctx, n.store, e); err != nil {
			return false, err
		}
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
			n.states.unload(e) // the outcome is unknown: read through next time
			return false, err
		}
		if res.Written {
			e.committed(ev, res.Rev)
			return true, nil
		}
		// Someone else wrote the event since we read it: take theirs and recompute.
		var prev *events.Event
		if res.Current.ModRevision != 0 {
			if prev, err = decodeStored(res.Current); err != nil {
				n.states.unload(e)
				return false, err
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
