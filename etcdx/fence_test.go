package etcdx_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
)

// putTogether submits puts at once to a batcher with one worker and a long gather delay,
// so they commit in one flat transaction, and returns their results in order.
func putTogether(t *testing.T, b *etcdx.Batcher, puts ...etcdx.CondPut) []etcdx.CondResult {
	t.Helper()
	out := make([]etcdx.CondResult, len(puts))
	errs := make([]error, len(puts))
	var wg sync.WaitGroup
	for i, p := range puts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = b.Put(context.Background(), p)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %s: %v", puts[i].Key, err)
		}
	}
	return out
}

// TestFenceSettlesAndSkips: the owner's writes that carry the fence's revision settle
// under it; a write whose owner condition fails is refused as such; settled writes then
// commit without their own conditions while the fence stands; once anyone else moved
// the fence, the transaction is refused and the same writes are committed with their own
// conditions, so a key changed meanwhile is reported as changed, never overwritten
// blindly.
func TestFenceSettlesAndSkips(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared etcd member")
	}
	ctx := context.Background()
	cli := sharedStore.Client()
	prefix := etcdx.Key("fencetest")
	t.Cleanup(func() { cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	f := etcdx.NewFence(prefix+"/fence", "test")
	fctx, stop := context.WithCancel(ctx)
	var following sync.WaitGroup
	following.Add(1)
	go func() { defer following.Done(); f.Follow(fctx, cli, nil) }()
	defer following.Wait()
	defer stop()
	// The fence is created by Follow and usable once it stood still for FenceQuiet.
	deadline := time.Now().Add(10 * time.Second)
	for f.Current() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fence's revision never became known")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fence := f.Current()

	b := etcdx.NewBatcher(shared.ServerTxn(), 1, 100, 200*time.Millisecond)
	defer b.Close()
	b.SetFence(f)
	owner := prefix + "/owner"
	if _, err := cli.Put(ctx, owner, "me"); err != nil {
		t.Fatal(err)
	}
	k1, k2, k3 := prefix+"/k1", prefix+"/k2", prefix+"/k3"
	mine := func(p etcdx.CondPut) etcdx.CondPut {
		p.Fence, p.Owner, p.OwnerValue = fence, owner, []byte("me")
		return p
	}

	// Created by their owner: both settle.
	res := putTogether(t, b, mine(etcdx.CondPut{Key: k1, Value: []byte("1a")}), mine(etcdx.CondPut{Key: k2, Value: []byte("2a")}))
	if !res[0].Written || !res[1].Written || res[0].Settled != fence || res[1].Settled != fence {
		t.Fatalf("first writes: %+v; want both written and settled under %d", res, fence)
	}
	rev1 := res[1].Rev // k2's
	// A writer that does not own the keys is refused as such, and writes nothing.
	res = putTogether(t, b, etcdx.CondPut{Key: k3, Value: []byte("3a"), Fence: fence, Owner: owner, OwnerValue: []byte("someone else")})
	if res[0].Written || !res[0].NotOwner {
		t.Fatalf("a write of someone else's key: %+v; want it refused as not the owner's", res[0])
	}
	if _, err := sharedStore.Get(ctx, k3); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("k3 after a refused write: %v; want not found", err)
	}
	// A writer that owns nothing writes only while nobody claims the keys.
	res = putTogether(t, b, etcdx.CondPut{Key: k3, Value: []byte("3a"), Unclaimed: owner})
	if res[0].Written || !res[0].NotOwner {
		t.Fatalf("an unclaimed write of claimed keys: %+v; want it refused", res[0])
	}
	res = putTogether(t, b, etcdx.CondPut{Key: k3, Value: []byte("3a"), Unclaimed: prefix + "/nobody"})
	if !res[0].Written || res[0].Settled != 0 {
		t.Fatalf("an unclaimed write of unclaimed keys: %+v; want it written, not settled", res[0])
	}
	if _, err := cli.Delete(ctx, k3); err != nil {
		t.Fatal(err)
	}

	// Settled and skipping: the condition a writer passes (here a wrong one for k1) is
	// not checked while the fence stands.
	res = putTogether(t, b,
		etcdx.CondPut{Key: k1, Value: []byte("1b"), ModRev: 1, Fence: fence, Skip: true},
		etcdx.CondPut{Key: k2, Value: []byte("2b"), ModRev: rev1, Fence: fence, Skip: true},
	)
	if !res[0].Written || !res[1].Written || res[0].Settled != fence || res[1].Settled != fence {
		t.Fatalf("settled writes: %+v; want both written and settled under %d", res, fence)
	}
	if st := b.Stats(); st.Skipped != 2 {
		t.Fatalf("stats %+v: want 2 writes committed without their own conditions", st)
	}
	revK1, revK2 := res[0].Rev, res[1].Rev

	// A settled write that still carries an older fence than another write of its
	// transaction keeps its own condition, and settles only on its owner condition:
	// without one it is written, not settled.
	st0 := etcdx.NewStore(cli)
	st0.FenceWrites(prefix+"/other", f)
	if _, err := st0.Put(ctx, prefix+"/other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(etcdx.FenceQuiet + 100*time.Millisecond)
	fence2 := f.Current()
	res = putTogether(t, b,
		etcdx.CondPut{Key: k1, Value: []byte("1b2"), ModRev: revK1, Fence: fence, Skip: true},
		etcdx.CondPut{Key: k3, Value: []byte("3b"), Fence: fence2, Owner: owner, OwnerValue: []byte("me")},
	)
	if !res[0].Written || res[0].Settled != 0 || !res[1].Written || res[1].Settled != fence2 {
		t.Fatalf("a write with an older fence: %+v; want both written, only the second settled under %d", res, fence2)
	}
	revK1, fence = res[0].Rev, fence2

	// Someone else writes k1 and moves the fence, as every other writer does.
	st := etcdx.NewStore(cli)
	st.FenceWrites(prefix+"/k", f)
	if _, err := st.Put(ctx, k1, []byte("theirs")); err != nil {
		t.Fatal(err)
	}
	// The fence's new revision is known at once, and usable only after FenceQuiet.
	if f.Current() != 0 {
		t.Fatalf("fence usable at once after it moved (%d)", f.Current())
	}
	// The owner's next writes still carry the old fence (its watch may not have told it
	// yet): the transaction is refused, and each write is committed on its own
	// condition. k1 changed since and is reported with its current value.
	res = putTogether(t, b,
		etcdx.CondPut{Key: k1, Value: []byte("1c"), ModRev: revK1, Fence: fence, Skip: true},
		etcdx.CondPut{Key: k2, Value: []byte("2c"), ModRev: revK2, Fence: fence, Skip: true},
	)
	if res[0].Written || string(res[0].Current.Value) != "theirs" || !res[1].Written || res[1].Settled != 0 {
		t.Fatalf("after the fence moved: %+v; want k1 refused with their value, k2 written, unsettled", res)
	}
	if st := b.Stats(); st.Fenced < 1 {
		t.Fatalf("stats %+v: want a transaction refused by the fence", st)
	}
	if got, _ := sharedStore.Get(ctx, k1); string(got.Value) != "theirs" {
		t.Fatalf("k1 = %q; the other writer's value was overwritten", got.Value)
	}
	time.Sleep(etcdx.FenceQuiet + 100*time.Millisecond)
	if now := f.Current(); now <= fence {
		t.Fatalf("fence revision %d after the move; want above %d", now, fence)
	}

	// Deletes through the Store move it too.
	before := f.Current()
	if err := st.Delete(ctx, k2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(etcdx.FenceQuiet + 100*time.Millisecond)
	if f.Current() <= before {
		t.Fatalf("fence at %d after a delete; want above %d", f.Current(), before)
	}

	// A deleted fence key is created again, at a higher revision.
	before = f.Current()
	if _, err := cli.Delete(ctx, f.Key); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for f.Current() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("fence at %d after its key was deleted; want it created again above %d", f.Current(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
