package etcdx

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fence lets the usual writer of a set of keys drop the condition of each write, and
// keep one condition per grouped transaction instead.
//
// A writer that caches what it stored (the server holding an agent's session caches
// that agent's events) normally conditions each write on the key's mod revision, so a
// write by anyone else meanwhile is noticed, never overwritten blindly. That condition
// costs etcd a read of the key's stored value per write. With a Fence, every other
// writer of those keys also puts the fence key (Bump) in the same transaction. A cached
// copy confirmed while the fence key stood at revision F (settled under F) is then
// still the stored value as long as the fence key is still at F, and a grouped commit
// checks that once for all its settled writes (CondPut.Skip).
//
// A Fence follows its key with a watch (Follow), so a server learns of a bump within a
// round trip; the transaction's own comparison of the fence is what makes it safe.
type Fence struct {
	// Key is the fence key.
	Key string
	// by is the value this process's bumps write: who moved the fence last.
	by  string
	rev atomic.Int64 // the fence key's mod revision as last seen; -1: not known yet
	// changed is when rev last moved (unix nanoseconds).
	changed atomic.Int64
}

// FenceQuiet is how long a fence must stand still before writes settle under it again.
// Bumps come in bursts (agents reconnecting after a failover, a script writing events
// through the API): while they last, a transaction that compares the fence would
// likely be refused and redone, so writes keep their own conditions instead.
const FenceQuiet = time.Second

// NewFence returns a fence on key whose revision is not known yet; by is the value its
// bumps write (who moved the fence last, for whoever reads the key).
func NewFence(key, by string) *Fence {
	f := &Fence{Key: key, by: by}
	f.rev.Store(-1)
	f.changed.Store(time.Now().UnixNano())
	return f
}

// Observe records that the fence key stood at mod revision rev (or later).
func (f *Fence) Observe(rev int64) {
	for {
		cur := f.rev.Load()
		if rev <= cur {
			return
		}
		// The time first: Current never pairs the new revision with the old time.
		f.changed.Store(time.Now().UnixNano())
		if f.rev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// Lost forgets the fence's revision seen, the key having been found deleted, until it is
// observed again; a later revision observed meanwhile is kept.
func (f *Fence) Lost(seen int64) {
	for {
		cur := f.rev.Load()
		if cur > seen {
			return
		}
		f.changed.Store(time.Now().UnixNano())
		if f.rev.CompareAndSwap(cur, -1) {
			return
		}
	}
}

// Current returns the fence revision writes may settle under now: 0 while it is not
// known or has moved within FenceQuiet.
func (f *Fence) Current() int64 {
	if f == nil {
		return 0
	}
	rev := f.rev.Load()
	if rev <= 0 || time.Now().UnixNano()-f.changed.Load() < int64(FenceQuiet) {
		return 0
	}
	return rev
}

// Bump is the write that moves the fence.
func (f *Fence) Bump() Write { return Write{Key: f.Key, Value: []byte(f.by)} }

// BumpOp is Bump as a clientv3 operation.
func (f *Fence) BumpOp() clientv3.Op { return clientv3.OpPut(f.Key, f.by) }

// Follow keeps the fence's revision current until ctx ends: it creates the fence key
// when it does not exist (so its revision is never 0), reads it, and watches it,
// starting again after an error.
func (f *Fence) Follow(ctx context.Context, c *clientv3.Client, onErr func(error)) {
	for ctx.Err() == nil {
		rev, at, err := f.read(ctx, c)
		if err == nil {
			f.Observe(rev)
			// From the read's revision, not the key's: a fence that stood still for long
			// is older than what etcd's compaction keeps.
			wctx, cancel := context.WithCancel(ctx)
		watch:
			for resp := range c.Watch(clientv3.WithRequireLeader(wctx), f.Key, clientv3.WithRev(at+1)) {
				if err = resp.Err(); err != nil {
					break
				}
				for _, ev := range resp.Events {
					if ev.Type == clientv3.EventTypeDelete {
						f.Lost(ev.Kv.ModRevision)
						break watch // read again, which creates it again
					}
					f.Observe(ev.Kv.ModRevision)
				}
			}
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && onErr != nil {
			onErr(err)
		}
		Sleep(ctx, time.Second)
	}
}

// read returns the fence key's mod revision and the revision it was read at, creating
// the key first when it is missing.
func (f *Fence) read(ctx context.Context, c *clientv3.Client) (rev, at int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(f.Key), "=", 0)).
		Then(f.BumpOp()).
		Else(clientv3.OpGet(f.Key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return 0, 0, fmt.Errorf("fence key %s was deleted while being read", f.Key)
	}
	return kvs[0].ModRevision, resp.Header.Revision, nil
}
