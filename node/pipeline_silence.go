package node

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// silenceSweepEvery is how often each server looks for silences past their expire_at.
const silenceSweepEvery = 2 * time.Second

// silenceCache holds every silence, by namespace, fed by a watch. Silences past their
// expire_at are ignored at once and deleted lazily by whichever server notices (an event
// it stores, or its periodic sweep); each delete compares the mod revision it saw, so a
// silence replaced in the meantime survives.
type silenceCache struct {
	n    *Node
	mu   sync.RWMutex
	byNS map[string]map[string]silenceEntry
	// deletes queues deletions for run; pending dedupes them by key and revision.
	deletes chan silenceEntry
	pending map[silenceEntry]bool
	pmu     sync.Mutex
}

type silenceEntry struct {
	s   *events.Silenced
	key string
	rev int64
	// ended is set when an expire_on_resolve silence's check resolved here: it silences
	// nothing more, and the sweep deletes it again until that succeeds (or the
	// silence is replaced, which clears it).
	ended bool
}

func newSilenceCache(n *Node) *silenceCache {
	return &silenceCache{n: n, byNS: map[string]map[string]silenceEntry{},
		deletes: make(chan silenceEntry, 1024), pending: map[silenceEntry]bool{}}
}

func (c *silenceCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, m := range c.byNS {
		n += len(m)
	}
	return n
}

func (c *silenceCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byNS = map[string]map[string]silenceEntry{}
}

func (c *silenceCache) put(kv etcdx.KV) {
	ns, name, ok := nsName(kv.Key, "silenced")
	if !ok {
		return
	}
	s := &events.Silenced{}
	if err := json.Unmarshal(kv.Value, s); err != nil {
		c.n.log.Warn("stored silence is not valid JSON; ignored", "key", kv.Key, "err", err)
		return
	}
	s.Metadata.Namespace, s.Metadata.Name = ns, name
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byNS[ns]
	if m == nil {
		m = map[string]silenceEntry{}
		c.byNS[ns] = m
	}
	m[name] = silenceEntry{s: s, key: kv.Key, rev: kv.ModRevision}
}

func (c *silenceCache) delete(key string) {
	ns, name, ok := nsName(key, "silenced")
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byNS[ns], name)
}

// apply sets ev's check.silenced and is_silenced from the silences in effect at now.
// An event in a namespace without silences costs one map lookup.
func (c *silenceCache) apply(ev *events.Event, now time.Time) {
	ev.Check.Silenced, ev.Check.IsSilenced = nil, false
	if ev.Entity == nil {
		return
	}
	c.mu.RLock()
	m := c.byNS[ev.Entity.Metadata.Namespace]
	if len(m) == 0 {
		c.mu.RUnlock()
		return
	}
	subs := events.SilenceSubscriptions(ev)
	var names []string
	var expired []silenceEntry
	for name, e := range m {
		if e.s.Expired(now) || e.ended {
			expired = append(expired, e)
			continue
		}
		if e.s.Begun(now) && e.s.Matches(ev, subs) {
			names = append(names, name)
		}
	}
	c.mu.RUnlock()
	for _, e := range expired {
		c.queueDelete(e)
	}
	sort.Strings(names)
	ev.Check.Silenced, ev.Check.IsSilenced = names, len(names) > 0
}

// resolve ends the expire_on_resolve silences that cover a resolution event and
// returns the names of the others; ok is false when there were none to end. An ended
// silence silences nothing more on this server even while its delete has not gone
// through: the sweep tries again until it does.
func (c *silenceCache) resolve(ev *events.Event) (kept []string, ok bool) {
	ended := c.ending(ev)
	kept = ev.Check.Silenced
	if len(ended) == 0 {
		return kept, false
	}
	c.end(ev, ended)
	return kept, true
}

// ending takes the expire_on_resolve silences out of a resolution event's silenced
// (is_silenced follows) and returns them, for end once the event is stored.
func (c *silenceCache) ending(ev *events.Event) []silenceEntry {
	ns := ev.Entity.Metadata.Namespace
	var kept []string
	var ended []silenceEntry
	c.mu.RLock()
	for _, name := range ev.Check.Silenced {
		if e, found := c.byNS[ns][name]; found && e.s.ExpireOnResolve {
			ended = append(ended, e)
			continue
		}
		kept = append(kept, name)
	}
	c.mu.RUnlock()
	if len(ended) > 0 {
		ev.Check.Silenced, ev.Check.IsSilenced = kept, len(kept) > 0
	}
	return ended
}

// end marks silences ended by a stored resolution, so that they silence nothing more
// here, and queues their deletes.
func (c *silenceCache) end(ev *events.Event, ended []silenceEntry) {
	ns := ev.Entity.Metadata.Namespace
	var first []silenceEntry
	c.mu.Lock()
	for _, e := range ended {
		cur, found := c.byNS[ns][e.s.Metadata.Name]
		if !found || cur.rev != e.rev || cur.ended {
			continue // replaced or deleted meanwhile, or ended already
		}
		cur.ended = true
		c.byNS[ns][e.s.Metadata.Name] = cur
		first = append(first, cur)
	}
	c.mu.Unlock()
	for _, e := range first {
		c.n.log.Info("silence ends: its check resolved", "silence", e.s.Metadata.Name, "namespace", ns,
			"event", ev.StoreName())
		c.queueDelete(e)
	}
}

// queueDelete asks run to delete e, once per key and revision, without blocking.
func (c *silenceCache) queueDelete(e silenceEntry) {
	k := silenceEntry{key: e.key, rev: e.rev}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.pending[k] {
		return
	}
	select {
	case c.deletes <- e:
		c.pending[k] = true
	default: // the next sweep tries again
	}
}

// run deletes queued silences and sweeps for expired ones until ctx ends.
func (c *silenceCache) run(ctx context.Context) {
	t := time.NewTicker(silenceSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-c.deletes:
			c.deleteEntry(ctx, e)
		case now := <-t.C:
			c.mu.RLock()
			var expired []silenceEntry
			for _, m := range c.byNS {
				for _, e := range m {
					if e.s.Expired(now) || e.ended {
						expired = append(expired, e)
					}
				}
			}
			c.mu.RUnlock()
			for _, e := range expired {
				c.queueDelete(e)
			}
		}
	}
}

// deleteEntry removes a silence if it is still the revision that was seen.
func (c *silenceCache) deleteEntry(ctx context.Context, e silenceEntry) {
	defer func() {
		c.pmu.Lock()
		delete(c.pending, silenceEntry{key: e.key, rev: e.rev})
		c.pmu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A conflict or a missing key means someone changed or deleted it first: fine.
	switch err := c.n.store.DeleteRev(ctx, e.key, e.rev); {
	case err == nil:
		c.n.log.Info("silence deleted", "silence", e.s.Metadata.Name, "namespace", e.s.Metadata.Namespace,
			"expired", e.s.Expired(time.Now()))
	case errors.Is(err, etcdx.ErrConflict), errors.Is(err, etcdx.ErrNotFound):
	case ctx.Err() == nil:
		c.n.log.Warn("delete silence", "silence", e.s.Metadata.Name, "namespace", e.s.Metadata.Namespace, "err", err)
	}
}
