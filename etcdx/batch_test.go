package etcdx_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
)

// TestBatcherGroupsAndKeepsCAS runs through both ways a server commits: a client's
// connection (an external etcd) and direct calls to an embedded member.
func TestBatcherGroupsAndKeepsCAS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared etcd member")
	}
	t.Run("client", func(t *testing.T) { testBatcherGroupsAndKeepsCAS(t, etcdx.ClientTxn(sharedStore.Client())) })
	t.Run("server", func(t *testing.T) { testBatcherGroupsAndKeepsCAS(t, shared.ServerTxn()) })
}

func testBatcherGroupsAndKeepsCAS(t *testing.T, txn etcdx.TxnFunc) {
	cli := sharedStore.Client()
	b := etcdx.NewBatcher(txn, 2, 200, 5*time.Millisecond)
	defer b.Close()
	ctx := context.Background()
	prefix := etcdx.Key("batchtest", t.Name())
	t.Cleanup(func() { cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })

	// 500 concurrent creates of distinct keys, each with an extra put: all land, in far
	// fewer transactions than writes.
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k := fmt.Sprintf("%s/k%03d", prefix, i)
			res, err := b.Put(ctx, etcdx.CondPut{Key: k, Value: []byte("v"), ModRev: 0,
				Extra: []etcdx.Write{{Key: k + "-extra", Value: []byte("x")}}})
			if err == nil && !res.Written {
				err = fmt.Errorf("%s not written", k)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := b.Stats()
	if st.Writes != 500 || st.Commits >= 500 {
		t.Fatalf("stats %+v: want 500 writes in fewer commits", st)
	}
	t.Logf("500 writes in %d transactions", st.Commits)
	resp, _ := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 1000 {
		t.Fatalf("%d keys stored, want 1000", resp.Count)
	}

	// A stale revision is refused and the current value returned; the extra put of a
	// refused write is not applied.
	k := prefix + "/k000"
	cur, _ := cli.Get(ctx, k)
	rev := cur.Kvs[0].ModRevision
	if res, err := b.Put(ctx, etcdx.CondPut{Key: k, Value: []byte("new"), ModRev: rev}); err != nil || !res.Written {
		t.Fatalf("CAS with the current revision: %+v %v", res, err)
	}
	res, err := b.Put(ctx, etcdx.CondPut{Key: k, Value: []byte("stale"), ModRev: rev,
		Extra: []etcdx.Write{{Key: prefix + "/must-not-exist", Value: []byte("x")}}})
	if err != nil || res.Written || string(res.Current.Value) != "new" {
		t.Fatalf("stale CAS: %+v %v", res, err)
	}
	if g, _ := cli.Get(ctx, prefix+"/must-not-exist"); len(g.Kvs) != 0 {
		t.Fatal("extra put of a refused write was applied")
	}
	// The same key twice concurrently: both are committed, in separate transactions.
	var w2 sync.WaitGroup
	for i := 0; i < 2; i++ {
		w2.Add(1)
		go func() {
			defer w2.Done()
			if _, err := b.Put(ctx, etcdx.CondPut{Key: prefix + "/dup", Value: []byte("d"), ModRev: -1}); err != nil {
				t.Error(err)
			}
		}()
	}
	w2.Wait()
}

func TestBatcherSplitsBySize(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared etcd member")
	}
	cli := sharedStore.Client()
	b := etcdx.NewBatcher(etcdx.ClientTxn(cli), 1, 1000, 20*time.Millisecond)
	defer b.Close()
	prefix := etcdx.Key("batchsize", t.Name())
	t.Cleanup(func() { cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	// 200 writes of 8 KiB would make one 1.6 MB transaction, over etcd's request limit.
	big := make([]byte, 8<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := b.Put(context.Background(), etcdx.CondPut{Key: fmt.Sprintf("%s/k%03d", prefix, i), Value: big, ModRev: -1})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Writes != 200 || st.Commits < 2 {
		t.Fatalf("stats %+v: want 200 writes in at least 2 transactions", st)
	}
	_, err := b.Put(context.Background(), etcdx.CondPut{Key: prefix + "/huge", Value: make([]byte, 2<<20), ModRev: -1})
	if !errors.Is(err, etcdx.ErrTooLarge) {
		t.Fatalf("a 2 MiB write: %v, want ErrTooLarge", err)
	}
}

// A group that mixes writes whose conditions hold with one whose condition fails is
// first tried as one flat transaction, which fails as a whole, and then settled write by
// write: the good writes land, the stale one is refused with the current value, and its
// extra put is not applied.
func TestBatcherMixedGroupFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared etcd member")
	}
	cli := sharedStore.Client()
	ctx := context.Background()
	prefix := etcdx.Key("batchtest", t.Name())
	t.Cleanup(func() { cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	stale := prefix + "/stale"
	if _, err := cli.Put(ctx, stale, "current"); err != nil {
		t.Fatal(err)
	}
	// One worker and a long gathering window: all 21 writes go into one group.
	b := etcdx.NewBatcher(etcdx.ClientTxn(cli), 1, 1000, 300*time.Millisecond)
	defer b.Close()
	type out struct {
		key string
		res etcdx.CondResult
		err error
	}
	outs := make(chan out, 21)
	var wg sync.WaitGroup
	for i := 0; i < 21; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := etcdx.CondPut{Key: fmt.Sprintf("%s/new%02d", prefix, i), Value: []byte("v"), ModRev: 0}
			if i == 20 {
				p = etcdx.CondPut{Key: stale, Value: []byte("lost"), ModRev: 1,
					Extra: []etcdx.Write{{Key: prefix + "/must-not-exist", Value: []byte("x")}}}
			}
			res, err := b.Put(ctx, p)
			outs <- out{p.Key, res, err}
		}(i)
	}
	wg.Wait()
	close(outs)
	for o := range outs {
		switch {
		case o.err != nil:
			t.Fatalf("%s: %v", o.key, o.err)
		case o.key == stale && (o.res.Written || string(o.res.Current.Value) != "current"):
			t.Fatalf("stale write: %+v", o.res)
		case o.key != stale && !o.res.Written:
			t.Fatalf("%s was not written: %+v", o.key, o.res)
		}
	}
	if st := b.Stats(); st.Writes != 21 || st.Commits != 1 {
		t.Fatalf("stats %+v: want the 21 writes settled in one nested transaction", st)
	}
	resp, _ := cli.Get(ctx, prefix+"/new", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 20 {
		t.Fatalf("%d new keys stored, want 20", resp.Count)
	}
	if g, _ := cli.Get(ctx, prefix+"/must-not-exist"); len(g.Kvs) != 0 {
		t.Fatal("extra put of a refused write was applied")
	}
}
