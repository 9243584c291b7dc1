package etcdx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
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
	putAll(t, b, 500, func(i int) etcdx.CondPut {
		k := fmt.Sprintf("%s/k%03d", prefix, i)
		return etcdx.CondPut{Key: k, Value: []byte("v"), ModRev: 0, Extra: []etcdx.Write{{Key: k + "-extra", Value: []byte("x")}}}
	})
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
	putAll(t, b, 200, func(i int) etcdx.CondPut {
		return etcdx.CondPut{Key: fmt.Sprintf("%s/k%03d", prefix, i), Value: big, ModRev: -1}
	})
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

// Values written with Compress are stored compressed, read back plain, also when the
// write's condition fails and the group is settled write by write; a large one is
// compressed at once, so that its stored size, not its plain size, meets the limit.
func TestBatcherCompresses(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared etcd member")
	}
	ctx := context.Background()
	cli := sharedStore.Client()
	b := etcdx.NewBatcher(etcdx.ClientTxn(cli), 1, 1000, 20*time.Millisecond)
	defer b.Close()
	prefix := etcdx.Key("batchcompress", t.Name())
	t.Cleanup(func() { cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	event := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"metadata":{"namespace":"default"},"check":{"metadata":{"name":"c%d"},"output":"%s"}}`, i, strings.Repeat("ok ", 100)))
	}
	putAll(t, b, 20, func(i int) etcdx.CondPut {
		return etcdx.CondPut{Key: fmt.Sprintf("%s/k%02d", prefix, i), Value: event(i), Compress: true, ModRev: 0}
	})
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("%s/k%02d", prefix, i)
		raw, err := cli.Get(ctx, k)
		if err != nil || len(raw.Kvs) != 1 || raw.Kvs[0].Value[0] != 0xfe || len(raw.Kvs[0].Value) >= len(event(i))/2 {
			t.Fatalf("%s as stored: %v %v; want it compressed", k, raw, err)
		}
		if kv, err := sharedStore.Get(ctx, k); err != nil || !bytes.Equal(kv.Value, event(i)) {
			t.Fatalf("%s reads %q, %v", k, kv.Value, err)
		}
	}
	// A stale condition beside a good one: the group falls back, the good write is
	// stored compressed, the stale one refused with the current value plain.
	k0, k1 := prefix+"/k00", prefix+"/k01"
	cur, _ := cli.Get(ctx, k1)
	res := make(chan etcdx.CondResult, 2)
	for _, p := range []etcdx.CondPut{
		{Key: k0, Value: event(100), Compress: true, ModRev: 1},
		{Key: k1, Value: event(101), Compress: true, ModRev: cur.Kvs[0].ModRevision},
	} {
		go func(p etcdx.CondPut) {
			r, err := b.Put(ctx, p)
			if err != nil {
				t.Error(err)
			}
			res <- r
		}(p)
	}
	for i := 0; i < 2; i++ {
		<-res
	}
	if kv, _ := sharedStore.Get(ctx, k0); !bytes.Equal(kv.Value, event(0)) {
		t.Fatalf("the stale write replaced %s: %q", k0, kv.Value)
	}
	if raw, _ := cli.Get(ctx, k1); raw.Kvs[0].Value[0] != 0xfe || !bytes.Equal(etcdx.Decompress(raw.Kvs[0].Value), event(101)) {
		t.Fatalf("%s after the fallback: %q", k1, raw.Kvs[0].Value)
	}
	// 2 MiB of plain output: over the limit plain, far under it compressed.
	huge := []byte(`{"output":"` + strings.Repeat("CRITICAL disk /var 99% ", 90000) + `"}`)
	if _, err := b.Put(ctx, etcdx.CondPut{Key: prefix + "/huge", Value: huge, Compress: true, ModRev: -1}); err != nil {
		t.Fatalf("a %d-byte value that compresses: %v", len(huge), err)
	}
	if kv, err := sharedStore.Get(ctx, prefix+"/huge"); err != nil || !bytes.Equal(kv.Value, huge) {
		t.Fatalf("huge reads back %d bytes, %v", len(kv.Value), err)
	}
}

// putAll submits put(0) … put(n-1) to b at once and fails t unless every one is written.
func putAll(t *testing.T, b *etcdx.Batcher, n int, put func(i int) etcdx.CondPut) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(p etcdx.CondPut) {
			defer wg.Done()
			res, err := b.Put(context.Background(), p)
			if err == nil && !res.Written {
				err = fmt.Errorf("%s not written", p.Key)
			}
			errs <- err
		}(put(i))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
