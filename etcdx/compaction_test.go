package etcdx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

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
