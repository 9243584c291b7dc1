package etcdx_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
)

// TestBatcherLastWriteWins: writes of one key that reach a committer in order commit in
// that order, even when they would fit one transaction (etcd refuses a key twice in one,
// so the batcher splits there), whether the key is a write's own or one of its Extra
// puts. The last write of a key is the one that stays, and the key's history in etcd
// holds every value in order.
func TestBatcherLastWriteWins(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared etcd member")
	}
	cli := sharedStore.Client()
	ctx := context.Background()
	prefix := etcdx.Key("batchorder", t.Name())
	t.Cleanup(func() { cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })

	// One committer gathering for a long time: every write below arrives while it gathers.
	b := etcdx.NewBatcher(etcdx.ClientTxn(cli), 1, 400, time.Second)
	defer b.Close()
	key, shared := prefix+"/key", prefix+"/shared"
	const n = 8
	revs := make([]int64, 2*n)
	var wg sync.WaitGroup
	for i := 0; i < 2*n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := etcdx.CondPut{Key: key, Value: []byte(strconv.Itoa(i)), ModRev: -1}
			if i%2 == 1 {
				// Odd writes touch the key only through an Extra put of another key.
				p = etcdx.CondPut{Key: fmt.Sprintf("%s/own%d", prefix, i), Value: []byte("x"), ModRev: -1,
					Extra: []etcdx.Write{{Key: key, Value: []byte(strconv.Itoa(i))}, {Key: shared, Value: []byte(strconv.Itoa(i))}}}
			}
			res, err := b.Put(ctx, p)
			if err != nil || !res.Written {
				t.Errorf("write %d: %v %+v", i, err, res)
			}
			revs[i] = res.Rev
		}(i)
		time.Sleep(20 * time.Millisecond) // submission order is i
	}
	wg.Wait()
	for i := 1; i < len(revs); i++ {
		if revs[i] <= revs[i-1] {
			t.Fatalf("write %d committed at revision %d, not after write %d (%d): %v", i, revs[i], i-1, revs[i-1], revs)
		}
	}
	for k, want := range map[string]string{key: strconv.Itoa(2*n - 1), shared: strconv.Itoa(2*n - 1)} {
		resp, err := cli.Get(ctx, k)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
			t.Fatalf("%s = %v (%v), want the last write %s", k, resp.Kvs, err, want)
		}
	}
	// Every value of the key is in its history, in submission order.
	for i, rev := range revs {
		resp, err := cli.Get(ctx, key, clientv3.WithRev(rev))
		if err != nil || string(resp.Kvs[0].Value) != strconv.Itoa(i) {
			t.Fatalf("at revision %d the key is %v, want %d", rev, resp.Kvs, i)
		}
	}
}

// TestBatcherOrderPerKeyUnderLoad: with several committers and many writers, each writer
// updating its own key in sequence (as the event writer does: one write in flight per
// entity and check) with compare-and-swap, no write is lost or reordered.
func TestBatcherOrderPerKeyUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared etcd member")
	}
	cli := sharedStore.Client()
	ctx := context.Background()
	prefix := etcdx.Key("batchorder", t.Name())
	t.Cleanup(func() { cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	b := etcdx.NewBatcher(etcdx.ClientTxn(cli), 6, 128, 2*time.Millisecond)
	defer b.Close()
	const writers, writes = 40, 25
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := fmt.Sprintf("%s/k%02d", prefix, w)
			rev := int64(0)
			for i := 1; i <= writes; i++ {
				res, err := b.Put(ctx, etcdx.CondPut{Key: key, Value: []byte(strconv.Itoa(i)), ModRev: rev,
					Extra: []etcdx.Write{{Key: key + "-last", Value: []byte(strconv.Itoa(i))}}})
				if err != nil || !res.Written {
					t.Errorf("%s write %d: %v %+v", key, i, err, res)
					return
				}
				if res.Rev <= rev {
					t.Errorf("%s write %d committed at %d, before the previous write (%d)", key, i, res.Rev, rev)
				}
				rev = res.Rev
			}
		}(w)
	}
	wg.Wait()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2*writers {
		t.Fatalf("%d keys, want %d", len(resp.Kvs), 2*writers)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != strconv.Itoa(writes) {
			t.Fatalf("%s = %s, want the last write %d", kv.Key, kv.Value, writes)
		}
	}
	if st := b.Stats(); st.Commits >= st.Writes {
		t.Fatalf("no grouping: %d commits for %d writes", st.Commits, st.Writes)
	}
}
