package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// watchedRecord is one record a monitor follows, with the revision it was read at; the
// monitor's writes compare that revision, so a fresher keepalive or result always wins.
type watchedRecord[T any] struct {
	rec T
	rev int64
}

// followPrefix keeps m in step with the records under prefix until ctx ends, calling
// tick every second. It re-lists after a compacted watch.
func followPrefix[T any](ctx context.Context, n *Node, prefix string, m map[string]watchedRecord[T], tick func(now time.Time)) error {
	for ctx.Err() == nil {
		kvs, rev, err := n.store.ListAll(ctx, prefix)
		if err != nil {
			return err
		}
		clear(m)
		for _, kv := range kvs {
			var r T
			if json.Unmarshal(kv.Value, &r) == nil {
				m[kv.Key] = watchedRecord[T]{r, kv.ModRevision}
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := n.store.Watch(wctx, prefix, rev+1)
		ticker := time.NewTicker(time.Second)
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case now := <-ticker.C:
				tick(now)
			case we, ok := <-ch:
				if !ok || we.Type == etcdx.EventError {
					break loop
				}
				if we.Type == etcdx.EventDelete {
					delete(m, we.KV.Key)
					continue
				}
				var r T
				if json.Unmarshal(we.KV.Value, &r) == nil {
					m[we.KV.Key] = watchedRecord[T]{r, we.KV.ModRevision}
				}
			}
		}
		ticker.Stop()
		cancel()
	}
	return ctx.Err()
}

// splitKey returns the namespace and the names after prefix in a record key.
func splitKey(key, prefix string) []string {
	return strings.Split(strings.TrimPrefix(key, prefix+"/"), "/")
}

// runKeepaliveMonitor is the keepalive-monitor task: an agent whose keepalives stop gets
// a keepalive event, warning after its warning timeout and critical after its critical
// timeout; an entity with deregister set is removed instead.
func (n *Node) runKeepaliveMonitor(ctx context.Context, l *etcdx.Leadership) error {
	prefix := etcdx.Key("keepalives")
	m := map[string]watchedRecord[keepaliveRecord]{}
	return followPrefix(ctx, n, prefix, m, func(now time.Time) {
		for key, wr := range m {
			rec := wr.rec
			age := now.Unix() - rec.LastSeen
			var status uint32
			switch {
			case rec.CriticalTimeout > 0 && age > rec.CriticalTimeout:
				status = 2
			case age > rec.WarningTimeout:
				status = 1
			}
			if status == 0 || status == rec.Status {
				continue
			}
			parts := splitKey(key, prefix)
			if len(parts) != 2 {
				continue
			}
			if err := n.raiseKeepalive(ctx, l, parts[0], parts[1], wr, status, age, now); err != nil && ctx.Err() == nil {
				if !errors.Is(err, etcdx.ErrConflict) {
					n.log.Warn("raise keepalive event", "entity", parts[1], "namespace", parts[0], "err", err)
				}
			}
		}
	})
}

func (n *Node) raiseKeepalive(ctx context.Context, l *etcdx.Leadership, ns, name string, wr watchedRecord[keepaliveRecord], status uint32, age int64, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec := wr.rec
	fence := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(l.Key()), "=", l.Rev),
		clientv3.Compare(clientv3.ModRevision(keepaliveKey(ns, name)), "=", wr.rev),
	}
	ent, err := n.entityConfig(ctx, ns, name)
	if err != nil {
		return err
	}
	chk := &events.Check{}
	chk.Interval, chk.Timeout, chk.Ttl = rec.Interval, rec.WarningTimeout, rec.CriticalTimeout
	if rec.Deregister {
		// The agent is gone for good: remove its entity, events, keepalive record and claim,
		// then hand a deregistration event to its deregistration handler, if it has one.
		resp, err := n.client.Txn(ctx).If(fence...).Then(
			clientv3.OpDelete(entityKey(ns, name)),
			clientv3.OpDelete(etcdx.Key("events", ns, name)+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(etcdx.Key("ttl", ns, name)+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(keepaliveKey(ns, name)),
			clientv3.OpDelete(ownerKey(ns, name)), // a claim a crashed server left
			n.fence.BumpOp(),
		).Commit()
		if err == nil && resp.Succeeded {
			n.fence.Observe(resp.Header.Revision)
			n.log.Info("entity deregistered after its keepalives stopped", "entity", name, "namespace", ns, "silent_for", fmt.Sprintf("%ds", age))
			if ent != nil && ent.Deregistration.Handler != "" {
				ev := keepaliveEvent(ent, chk, 1, fmt.Sprintf("Entity %s deregistered: no keepalive for %d seconds", name, age), now)
				ev.Check.Metadata.Name = "deregistration"
				ev.Check.Handlers = []string{ent.Deregistration.Handler}
				n.afterStore(ev)
			}
		}
		return err
	}
	if ent == nil {
		ent = &events.Entity{EntityClass: events.EntityAgent}
		ent.Metadata = events.ObjectMeta{Name: name, Namespace: ns}
	}
	output := fmt.Sprintf("No keepalive sent from %s for %d seconds (>= %d)", name, age, rec.WarningTimeout)
	if status == 2 {
		output = fmt.Sprintf("No keepalive sent from %s for %d seconds (>= %d)", name, age, rec.CriticalTimeout)
	}
	ev := keepaliveEvent(ent, chk, status, output, now)
	rec.Status = status
	recVal, _ := json.Marshal(rec)
	err = n.handleResult(ctx, ev, now, fence, source{}, etcdx.Write{Key: keepaliveKey(ns, name), Value: recVal})
	if err == nil {
		n.log.Info("keepalive event raised", "entity", name, "namespace", ns, "status", status, "silent_for", fmt.Sprintf("%ds", age))
	}
	return err
}

// runTTLMonitor is the ttl-monitor task: a check result with a ttl that is not followed
// by another within the ttl raises an event saying so.
func (n *Node) runTTLMonitor(ctx context.Context, l *etcdx.Leadership) error {
	prefix := etcdx.Key("ttl")
	m := map[string]watchedRecord[ttlRecord]{}
	return followPrefix(ctx, n, prefix, m, func(now time.Time) {
		for key, wr := range m {
			rec := wr.rec
			if rec.Raised || now.Unix() <= rec.Executed+rec.TTL {
				continue
			}
			parts := splitKey(key, prefix)
			if len(parts) != 3 {
				continue
			}
			if err := n.raiseTTL(ctx, l, parts[0], parts[1], parts[2], wr, now); err != nil && ctx.Err() == nil && !errors.Is(err, etcdx.ErrConflict) {
				n.log.Warn("raise ttl event", "entity", parts[1], "check", parts[2], "err", err)
			}
		}
	})
}

func (n *Node) raiseTTL(ctx context.Context, l *etcdx.Leadership, ns, entity, check string, wr watchedRecord[ttlRecord], now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	prev, _, err := etcdx.GetJSON[*events.Event](ctx, n.store, eventKey(ns, entity, check))
	if err != nil {
		if errors.Is(err, etcdx.ErrNotFound) {
			return n.store.Delete(ctx, ttlKey(ns, entity, check))
		}
		return err
	}
	if prev.Check == nil || prev.Check.Ttl == 0 {
		// The check no longer has a ttl: its results stopped refreshing this record.
		return n.store.DeleteRev(ctx, ttlKey(ns, entity, check), wr.rev)
	}
	ev := &events.Event{Entity: prev.Entity, Timestamp: now.Unix()}
	ev.Metadata.Namespace = ns
	c := *prev.Check
	c.Status = 1
	c.Output = fmt.Sprintf("Last check execution was %d seconds ago", now.Unix()-wr.rec.Executed)
	c.Executed = now.Unix()
	c.Ttl = 0 // the TTL event itself does not arm another TTL
	ev.Check = &c
	rec := wr.rec
	rec.Raised = true
	recVal, _ := json.Marshal(rec)
	fence := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(l.Key()), "=", l.Rev),
		clientv3.Compare(clientv3.ModRevision(ttlKey(ns, entity, check)), "=", wr.rev),
	}
	err = n.handleResult(ctx, ev, now, fence, source{}, etcdx.Write{Key: ttlKey(ns, entity, check), Value: recVal})
	if err == nil {
		n.log.Info("ttl event raised", "entity", entity, "check", check, "namespace", ns)
	}
	return err
}
