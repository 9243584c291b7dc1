package etcdx_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
)

// The guard compacts history older than Keep once the backend in use passes its
// threshold, and leaves history alone below it; the latest values are never touched.
func TestHistoryGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	e, _ := startMember(t, t.TempDir(), nil)
	c := newClient(t, e)
	ctx := context.Background()
	write := func(n int) int64 {
		var rev int64
		for i := 0; i < n; i++ {
			resp, err := c.Put(ctx, "/guard/k", fmt.Sprintf("v%d", i))
			if err != nil {
				t.Fatal(err)
			}
			rev = resp.Header.Revision
		}
		return rev
	}
	first := write(50)
	oldReadable := func() error {
		_, err := c.Get(ctx, "/guard/k", clientv3.WithRev(first))
		return err
	}
	run := func(threshold int64) (*etcdx.HistoryGuard, context.CancelFunc, chan struct{}) {
		g := &etcdx.HistoryGuard{Client: c, Endpoint: e.ClientURLs()[0], Threshold: threshold,
			Keep: 300 * time.Millisecond, Interval: 50 * time.Millisecond}
		gctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); g.Run(gctx) }()
		return g, cancel, done
	}

	// Far under the threshold: nothing is compacted.
	g, cancel, done := run(1 << 40)
	time.Sleep(600 * time.Millisecond)
	write(10)
	time.Sleep(600 * time.Millisecond)
	cancel()
	<-done
	if n := g.Compactions(); n != 0 {
		t.Fatalf("%d compactions under the threshold", n)
	}
	if err := oldReadable(); err != nil {
		t.Fatalf("revision %d not readable under the threshold: %v", first, err)
	}

	// Over it (any size is): history older than Keep goes, later writes stay.
	g, cancel, done = run(1)
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for g.Compactions() == 0 && time.Now().Before(deadline) {
		write(5)
		time.Sleep(50 * time.Millisecond)
	}
	if g.Compactions() == 0 {
		t.Fatal("no compaction over the threshold in 10s")
	}
	if err := oldReadable(); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("revision %d after the guard compacted: err %v, want ErrCompacted", first, err)
	}
	last := write(1)
	resp, err := c.Get(ctx, "/guard/k")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != last {
		t.Fatalf("latest value after compaction: %v %v", resp, err)
	}
}

// The member deletes compacted revisions in batches of CompactionBatchLimit, each with
// its own backend commit (and fsync): 10,000 revisions (100 keys written 100 times) take
// three batches, where etcd's default of 1,000 would take eleven.
func TestCompactionBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	e, _ := startMember(t, t.TempDir(), nil)
	c := newClient(t, e)
	ctx := context.Background()
	const n = 10_000
	var rev int64
	for i := 0; i < n/100; i++ {
		ops := make([]clientv3.Op, 0, 100)
		for j := 0; j < 100; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/batches/k%02d", j), strconv.Itoa(i)))
		}
		resp, err := c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	before := compactionBatches(t)
	if _, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// The metric is observed after the batch's commit; the physical compaction has
	// returned by then, but the last observation may trail it by a moment.
	var got uint64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = compactionBatches(t) - before; got >= n/etcdx.CompactionBatchLimit+1 {
			break
		}
	}
	if want := uint64(n/etcdx.CompactionBatchLimit + 1); got != want {
		t.Fatalf("compacting %d revisions took %d batches, want %d (of %d revisions each)", n, got, want, etcdx.CompactionBatchLimit)
	}
	// What the batches removed is history only: every key keeps its last value.
	resp, err := c.Get(ctx, "/batches/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 100 {
		t.Fatalf("%d keys after compaction, want 100", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != strconv.Itoa(n/100-1) {
			t.Fatalf("%s = %q after compaction, want %q", kv.Key, kv.Value, strconv.Itoa(n/100-1))
		}
	}
}

// compactionBatches is how many compaction batches etcd members of this process ran.
func compactionBatches(t *testing.T) uint64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("etcd's compaction pause histogram is not registered")
	return 0
}
