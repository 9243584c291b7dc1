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

	"github.com/picketmon/picket/agentgw"
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
	// entities holds what a read of all an entity's events (keyed by their prefix) told:
	// entityWasRead, a key of its without a loaded entry was not stored then;
	// entityLarge, it has more than maxScan events and its keys are read one at a time
	// (entityUnknown, the zero value: not read yet). An agent's
	// first results on a server with no state for it (after a restart or a failover)
	// then cost one read for the entity, not one per check.
	entities map[string]entityState
	// reading holds the entity reads in flight: a miss of the same entity meanwhile
	// waits for that read and takes its key from it.
	reading map[string]*entityRead
	// entityReads and keyReads count the reads of misses: of an entity's events at once,
	// and of one key (of an entity with more than maxScan events). conflicts counts the
	// writes whose condition failed because another writer had stored the event since.
	entityReads, keyReads, conflicts atomic.Int64
}

type entityState uint8

const (
	entityUnknown entityState = iota
	entityWasRead
	entityLarge
)

// entityRead is one read of an entity's events, shared by the misses that wait for it.
type entityRead struct {
	done chan struct{}
	kvs  map[string]etcdx.KV
	// complete is true when kvs holds all the entity's events; else last is the greatest
	// key read (keys up to it that kvs lacks were not stored).
	complete bool
	last     string
	err      error
	// waiters are the keys whose writers wait for this read (guarded by stateCache.mu).
	waiters map[string]bool
}

// maxScan bounds the events read at once for one entity; an entity with more reads
// the rest one key at a time.
const maxScan = 256

// entityPrefix is the prefix of the event keys of key's entity, ending in "/".
func entityPrefix(key string) string { return key[:strings.LastIndexByte(key, '/')+1] }

type stateEntry struct {
	key string
	// pins counts the users of the entry; it is incremented under stateCache.mu only,
	// so an entry seen unpinned there can be evicted.
	pins atomic.Int32
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
	// settled is the fence revision under which session settledBy's write of this
	// key committed (0: none since): that session's next write needs no condition of
	// its own while the fence stands there (owners.go).
	settled   int64
	settledBy uint64
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

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, m: map[string]*list.Element{}, lru: list.New(),
		entities: map[string]entityState{}, reading: map[string]*entityRead{}}
}

// entry returns key's entry, pinned: it is not evicted until release. Two entries for
// one key would let a write through the older one overwrite one through the newer, which
// its own write's skipped condition (owners.go) would no longer catch.
func (c *stateCache) entry(key string) *stateEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*stateEntry)
		e.pins.Add(1)
		return e
	}
	e := &stateEntry{key: key}
	e.pins.Add(1)
	c.m[key] = c.lru.PushFront(e)
	// Evict from the back, passing over pinned entries (a write in flight).
	old := c.lru.Back()
	for c.lru.Len() > c.max && old != nil {
		prev := old.Prev()
		if o := old.Value.(*stateEntry); o.pins.Load() == 0 {
			c.lru.Remove(old)
			delete(c.m, o.key)
			delete(c.entities, entityPrefix(o.key))
		}
		old = prev
	}
	return e
}

// release unpins e (see entry).
func (c *stateCache) release(e *stateEntry) { e.pins.Add(-1) }

// load reads e's stored event (the caller holds e.mu). The first miss of an entity reads
// all its stored events (up to maxScan) and fills the entries of the others that are not
// busy; misses of that entity while the read is in flight wait for it and take their key
// from it; later misses need no read. Every write compares the mod revision it read, so
// an event stored by someone else meanwhile is noticed, not lost.
func (c *stateCache) load(ctx context.Context, store *etcdx.Store, e *stateEntry) error {
	prefix := entityPrefix(e.key)
	for {
		c.mu.Lock()
		state := c.entities[prefix]
		r, wait := c.reading[prefix]
		switch {
		case state == entityWasRead:
			c.mu.Unlock()
			e.setStored(nil, 0)
			e.loaded = true
			return nil
		case state == entityLarge:
			c.mu.Unlock()
			return c.loadKey(ctx, store, e)
		case wait:
			r.waiters[e.key] = true
		default:
			r = &entityRead{done: make(chan struct{}), waiters: map[string]bool{}}
			c.reading[prefix] = r
		}
		c.mu.Unlock()
		if !wait {
			c.readEntity(ctx, store, prefix, e.key, r)
		} else {
			select {
			case <-r.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if r.err != nil {
			if wait {
				continue // the reader's context ended: read for ourselves
			}
			return r.err
		}
		kv, ok := r.kvs[e.key]
		switch {
		case ok:
			prev, err := decodeStored(kv)
			if err != nil {
				return err
			}
			e.setStored(prev, kv.ModRevision)
		case r.complete || e.key < r.last:
			e.setStored(nil, 0)
		default:
			return c.loadKey(ctx, store, e)
		}
		e.loaded = true
		return nil
	}
}

// readEntity reads the events of the entity at prefix into r for the writer of key and
// the waiters, fills the entries of the others that are not busy, and records what the
// read told about the entity.
func (c *stateCache) readEntity(ctx context.Context, store *etcdx.Store, prefix, key string, r *entityRead) {
	c.entityReads.Add(1)
	kvs, more, err := store.List(ctx, prefix, maxScan, "")
	var busy []string
	if err == nil {
		r.kvs = make(map[string]etcdx.KV, len(kvs))
		for _, kv := range kvs {
			r.kvs[kv.Key] = kv
			if kv.Key == key {
				continue
			}
			o := c.entry(kv.Key)
			if !o.mu.TryLock() {
				c.release(o)
				busy = append(busy, kv.Key) // its writer is loading it, or writing
				continue
			}
			if !o.loaded {
				if prev, err := decodeStored(kv); err == nil {
					o.setStored(prev, kv.ModRevision)
					o.loaded = true
				}
			}
			o.mu.Unlock()
			c.release(o)
		}
		r.complete = more == ""
		if len(kvs) > 0 {
			r.last = kvs[len(kvs)-1].Key
		}
	}
	r.err = err
	c.mu.Lock()
	delete(c.reading, prefix)
	switch {
	case err != nil:
	case !r.complete:
		c.entities[prefix] = entityLarge
	default:
		// A busy key whose writer does not wait for this read may be about to take
		// the entity for read and its key for absent: leave the entity unread then, so
		// that writer reads for itself.
		read := true
		for _, k := range busy {
			if !r.waiters[k] {
				read = false
				break
			}
		}
		// An entry this read filled and the cache evicted since would be taken for
		// absent on its next miss: leave the entity unread then too.
		for i := 0; read && i < len(kvs); i++ {
			_, read = c.m[kvs[i].Key]
		}
		if read {
			c.entities[prefix] = entityWasRead
		}
	}
	c.mu.Unlock()
	close(r.done)
}

// loadKey reads e's stored event alone.
func (c *stateCache) loadKey(ctx context.Context, store *etcdx.Store, e *stateEntry) error {
	c.keyReads.Add(1)
	prev, rev, err := etcdx.GetJSON[*events.Event](ctx, store, e.key)
	if err != nil && !errors.Is(err, etcdx.ErrNotFound) {
		return err
	}
	e.setStored(prev, rev)
	e.loaded = true
	return nil
}

// unload makes e be read again on its next use: after a write whose outcome is unknown.
func (c *stateCache) unload(e *stateEntry) {
	e.loaded = false
	c.mu.Lock()
	if c.entities[entityPrefix(e.key)] == entityWasRead {
		delete(c.entities, entityPrefix(e.key))
	}
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
// result already stored, which it leaves alone. from.session is the agent session that
// owns the entity's events and delivered ev, 0 for any other writer, which moves the
// events fence when a session claims the entity (owners.go).
//
// A resend is known by its ID when this server stored or read it (the cache keeps the
// last 16 IDs of a key). Stored by another server (before a failover), only the last
// result's ID is in the stored event; an earlier one that the agent marked as a resend
// of its own entity's result is known by the history instead: a result executed at the
// second and with the status of one there, no later than the stored one, was stored.
// (Two results of one check at the same second with the same status, an on-demand run
// beside a scheduled one, cannot be told apart that way.) Results not marked are taken
// by their ID alone: after an agent's clock stepped back, a new result can look just
// like that.
func (n *Node) writeEvent(ctx context.Context, ev *events.Event, now time.Time, from source, extra ...etcdx.Write) (stored bool, err error) {
	session := from.session
	ns := ev.Entity.Metadata.Namespace
	key := eventKey(ns, ev.Entity.Metadata.Name, ev.Check.Metadata.Name)
	ev.Check.Metadata.Namespace = ns
	e := n.states.entry(key)
	defer n.states.release(e)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		if err := n.states.load(ctx, n.store, e); err != nil {
			return false, err
		}
	}
	// known: ev was stored already, by its ID or, for a resend of the agent's own
	// result, by the history. A proxy entity's results come from several agents, which
	// may report at the same second with the same status, so only the ID tells theirs.
	known := func() bool {
		return e.seen(ev.ID) || (from.resent && from.session != 0 && e.hasState && e.state.Holds(ev.Check))
	}
	if known() {
		return false, nil
	}
	silenced, isSilenced := ev.Check.Silenced, ev.Check.IsSilenced
	// bump: this write moves the fence, as every write but the owner's does (unless the
	// entity is unclaimed), and the owner's after someone else wrote the key.
	bump := false
	reclaimed := false
	for attempt := 0; attempt < 8; attempt++ {
		var last *events.CheckState
		if e.hasState {
			last = &e.state
		}
		events.UpdateState(last, ev, now)
		// A resolution ends the expire_on_resolve silences that covered it, and is
		// stored as no longer covered by them, as in Sensu. Whether it is one depends on
		// the state just computed, which a retry may compute again.
		var ending []silenceEntry
		if len(silenced) > 0 && n.pipe != nil {
			ev.Check.Silenced, ev.Check.IsSilenced = silenced, isSilenced
			if ev.IsResolution() {
				ending = n.pipe.silences.ending(ev)
			}
		}
		val, err := api.CompactEvent(ev) // compressed by the grouped writer
		if err != nil {
			return false, err
		}
		put := etcdx.CondPut{Key: key, Value: val, Compress: true, ModRev: e.rev, Extra: extra}
		switch {
		case session == 0 && !bump:
			// Not the owner's write: while no session claims the entity (a proxy, an
			// agent not connected), nobody's writes of its events skip their
			// conditions, and this one need not move the fence.
			put.Unclaimed = ownerKey(ns, ev.Entity.Metadata.Name)
		case bump:
			put.Extra = append(extra[:len(extra):len(extra)], n.fence.Bump())
		default:
			// The owner's write: settled, it skips its conditions; else it holds only
			// while the session still owns the agent's events.
			put.Fence = n.fence.Current()
			put.Skip = put.Fence > 0 && e.settled == put.Fence && e.settledBy == session
			put.Owner, put.OwnerValue = ownerKey(ns, ev.Entity.Metadata.Name), n.ownerValue(session)
		}
		res, err := n.batch.Put(ctx, put)
		if err != nil {
			n.states.unload(e) // the outcome is unknown: read through next time
			return false, err
		}
		if res.NotOwner && session == 0 {
			bump = true // the entity is claimed: move the fence
			continue
		}
		if res.NotOwner {
			// Another session holds the agent's events, or none does. The gateway's
			// current session for the agent claims them back when none does or another
			// session of this server does (its claim lost a race with the session it
			// replaced); else this write moves the fence, as a writer of someone else's
			// events.
			o := agentgw.Origin{Namespace: ns, Agent: ev.Entity.Metadata.Name, Session: session}
			if reclaimed || n.gateway == nil || !n.gateway.Current(o) || n.reclaimAgent(ctx, o) != nil {
				bump = true
			}
			reclaimed = true
			continue
		}
		if res.Written {
			e.setStored(ev, res.Rev)
			if bump {
				n.fence.Observe(res.Rev)
			} else if res.Settled > 0 {
				e.settled, e.settledBy = res.Settled, session
			}
			if len(ending) > 0 {
				n.pipe.silences.end(ev, ending)
			}
			return true, nil
		}
		// Someone else wrote the event since we read it: take theirs and recompute.
		n.states.conflicts.Add(1)
		var prev *events.Event
		if res.Current.ModRevision != 0 {
			if prev, err = decodeStored(res.Current); err != nil {
				n.states.unload(e)
				return false, err
			}
		}
		e.setStored(prev, res.Current.ModRevision)
		if known() {
			return false, nil // what was written meanwhile holds this very result, resent
		}
		bump = true
	}
	return false, fmt.Errorf("store event %s: %w", key, etcdx.ErrConflict)
}

// setStored records ev (nil: none) as the event stored at mod revision rev, whoever
// wrote it. It keeps what the next result's state needs and ev's ID, so the cache's
// memory does not grow with check output and entity size, and adds the ID to the recent
// ones: a result stored by another server (read after a failover, or when a write's
// condition failed) is then known too when its agent resends it here. The history is
// shared, never changed: each new event gets a fresh one (events.UpdateState).
func (e *stateEntry) setStored(ev *events.Event, rev int64) {
	e.state, e.hasState = events.StateOf(ev)
	e.settled, e.settledBy = 0, 0
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
