package etcdx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
)

// TestFencedWritesOfAStaleOwner takes the leadership away from an owner that does not
// notice (its lease is revoked behind its back, as when it stalls past its TTL) and checks
// that its fenced writes fail while the new owner's succeed.
func TestFencedWritesOfAStaleOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("uses the shared etcd member")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	task := "fencing-test"
	a, err := sharedStore.Campaign(ctx, task, "server-a", 5)
	if err != nil {
		t.Fatal(err)
	}
	key := etcdx.Key("fencing-test", "value")
	if err := a.Fenced(ctx, clientv3.OpPut(key, "a1")); err != nil {
		t.Fatalf("owner's write: %v", err)
	}
	won := make(chan *etcdx.Leadership, 1)
	go func() {
		b, err := sharedStore.Campaign(ctx, task, "server-b", 5)
		if err != nil {
			t.Error(err)
		}
		won <- b
	}()
	// Server a stalls: its lease expires without it noticing.
	if _, err := sharedStore.Client().Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	var b *etcdx.Leadership
	select {
	case b = <-won:
	case <-ctx.Done():
		t.Fatal("b never won")
	}
	if b == nil {
		t.FailNow()
	}
	defer b.Resign(context.Background())
	if b.Rev <= a.Rev {
		t.Fatalf("new election revision %d is not after %d", b.Rev, a.Rev)
	}
	if owner, _ := sharedStore.TaskOwner(ctx, task); owner != "server-b" {
		t.Fatalf("owner %q", owner)
	}
	if err := b.Fenced(ctx, clientv3.OpPut(key, "b1")); err != nil {
		t.Fatalf("new owner's write: %v", err)
	}
	if err := a.Fenced(ctx, clientv3.OpPut(key, "a2")); !errors.Is(err, etcdx.ErrNotLeader) {
		t.Fatalf("stale owner's write: %v", err)
	}
	kv, err := sharedStore.Get(ctx, key)
	if err != nil || string(kv.Value) != "b1" {
		t.Fatalf("value %q %v, want b1", kv.Value, err)
	}
}
