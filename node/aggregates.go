package node

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// pruneAggregates is the aggregate-pruner task: it follows every aggregate result and
// removes those older than their retention (AggregateRecord.Retention, from the check's
// picket.io/aggregate-retention annotation or three intervals). Each delete is fenced by
// the election and by the result's mod revision, so neither a stale owner nor a fresh
// result written meanwhile is lost.
func (n *Node) pruneAggregates(ctx context.Context, l *etcdx.Leadership) error {
	prefix := etcdx.Key("aggregates")
	m := map[string]watchedRecord[events.AggregateRecord]{}
	return followPrefix(ctx, n, prefix, m, func(now time.Time) {
		var dels []string
		var fence []clientv3.Cmp
		flush := func() {
			if len(dels) == 0 {
				return
			}
			if err := n.pruneBatch(ctx, l, fence, dels); err != nil && ctx.Err() == nil && !errors.Is(err, etcdx.ErrConflict) {
				n.log.Warn("prune aggregate results", "err", err)
			}
			dels, fence = nil, nil
		}
		for key, wr := range m {
			if !wr.rec.Expired(now) {
				continue
			}
			dels = append(dels, key)
			fence = append(fence, clientv3.Compare(clientv3.ModRevision(key), "=", wr.rev))
			if len(dels) == 100 {
				flush()
			}
		}
		flush()
	})
}

// pruneBatch deletes keys in one transaction, if this server still owns the task and none
// of them changed; when one did, it deletes the others one by one.
func (n *Node) pruneBatch(ctx context.Context, l *etcdx.Leadership, fence []clientv3.Cmp, keys []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	leader := clientv3.Compare(clientv3.CreateRevision(l.Key()), "=", l.Rev)
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpDelete(k)
	}
	resp, err := n.client.Txn(ctx).If(append([]clientv3.Cmp{leader}, fence...)...).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		n.log.Info("aggregate results pruned", "count", len(keys))
		return nil
	}
	if len(keys) == 1 {
		return etcdx.ErrConflict
	}
	for i := range keys {
		_ = n.pruneBatch(ctx, l, fence[i:i+1], keys[i:i+1])
	}
	return nil
}
