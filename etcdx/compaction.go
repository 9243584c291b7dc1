package etcdx

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// HistoryGuard keeps etcd's history of old revisions from filling the backend when the
// write rate is high. etcd keeps every revision until it is compacted, and its own
// compactor works by time (an hour by default): at 10,000 events/s of about 2 KB each,
// an hour of history is 75 GB, and the 4 GiB quota is reached within minutes, after
// which etcd refuses every write (NOSPACE). The guard samples the store's revision and
// the backend's size in use; when the size in use passes Threshold it compacts to the
// revision it saw Keep ago, so the history never holds more than about Keep of writes.
// Below the threshold it does nothing and etcd's own compaction applies. Keep is short
// (10 s by default) because at such rates a minute of history is itself gigabytes; a
// watcher that falls further behind re-lists.
//
// Compacting is idempotent and cluster-wide: every server may run a guard, and the
// watches that lose history to it re-list (etcdx.Store.Watch reports ErrCompacted).
type HistoryGuard struct {
	Client *clientv3.Client
	// Endpoint is the member whose Status is read (the local member, or the first
	// endpoint of an external cluster).
	Endpoint string
	// Threshold is the backend size in use, in bytes, above which the guard compacts.
	Threshold int64
	// Keep is how much history the guard leaves (DefaultGuardKeep when 0); Interval how
	// often it looks (DefaultGuardInterval when 0).
	Keep, Interval time.Duration
	Logger         *slog.Logger

	compactions atomic.Int64
}

// Defaults of HistoryGuard.
const (
	DefaultGuardKeep     = 10 * time.Second
	DefaultGuardInterval = 5 * time.Second
)

// GuardThreshold is the threshold a server gives its guard: 40 % of the backend quota.
func GuardThreshold(quota int64) int64 { return quota / 5 * 2 }

// Compactions is how many times the guard compacted.
func (g *HistoryGuard) Compactions() int64 { return g.compactions.Load() }

type revSample struct {
	at  time.Time
	rev int64
}

// Run samples and compacts until ctx ends.
func (g *HistoryGuard) Run(ctx context.Context) {
	keep, every := g.Keep, g.Interval
	if keep <= 0 {
		keep = DefaultGuardKeep
	}
	if every <= 0 {
		every = DefaultGuardInterval
	}
	log := g.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var samples []revSample
	var compacted int64
	var lastWarn time.Time
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, every)
		st, err := g.Client.Status(sctx, g.Endpoint)
		cancel()
		if err != nil {
			continue // the member is away; the next tick tries again
		}
		now := time.Now()
		samples = append(samples, revSample{now, st.Header.Revision})
		// The newest sample at least keep old is the compaction target; older ones are
		// no longer needed.
		target := int64(0)
		for len(samples) > 1 && now.Sub(samples[1].at) >= keep {
			samples = samples[1:]
		}
		if now.Sub(samples[0].at) >= keep {
			target = samples[0].rev
		}
		inUse := st.DbSizeInUse
		if inUse == 0 {
			inUse = st.DbSize // etcd before 3.4 reports no size in use
		}
		if inUse < g.Threshold || target <= compacted {
			continue
		}
		// Under a sustained high rate this repeats every few ticks: say it once in a
		// while, and count every compaction.
		if now.Sub(lastWarn) >= 10*time.Minute {
			log.Warn("etcd backend in use is over the guard's threshold: compacting history to the last "+keep.String()+
				" (the write rate is too high for etcd-auto-compaction-retention; picket_etcd_history_compactions_total counts these)",
				"in_use_bytes", inUse, "threshold_bytes", g.Threshold)
			lastWarn = now
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = g.Client.Compact(cctx, target)
		cancel()
		switch {
		case err == nil:
			compacted = target
			g.compactions.Add(1)
			log.Debug("compacted etcd history", "revision", target)
		case errors.Is(err, rpctypes.ErrCompacted):
			compacted = target // another server (or etcd's compactor) got there first
		case ctx.Err() == nil:
			log.Warn("compact etcd history", "revision", target, "err", err)
		}
	}
}
