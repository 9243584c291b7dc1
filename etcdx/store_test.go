package etcdx_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	serverrors "go.etcd.io/etcd/server/v3/etcdserver/errors"
)

// testKey is a key unique to the running test, so tests sharing the member do not meet.
func testKey(t *testing.T, parts ...string) string {
	return etcdx.Key(append([]string{"test", t.Name()}, parts...)...)
}

// clearTestKeys deletes the keys of the running test left by an earlier run (-count).
func clearTestKeys(t *testing.T) {
	t.Helper()
	if _, err := sharedStore.Client().Delete(t.Context(), testKey(t)+"/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"checks", "default", "cpu"}, "/picket/checks/default/cpu"},
		{[]string{"checks", "", "cpu"}, "/picket/checks/cpu"},
		{[]string{"/checks/", "default/"}, "/picket/checks/default"},
		{nil, "/picket/"},
		{[]string{"events", "default", "web-1", "cpu"}, "/picket/events/default/web-1/cpu"},
	}
	for _, tt := range tests {
		if got := etcdx.Key(tt.parts...); got != tt.want {
			t.Errorf("Key(%q) = %q, want %q", tt.parts, got, tt.want)
		}
	}
}

func TestCRUD(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	key := testKey(t, "a")

	if _, err := s.Get(ctx, key); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("Get missing: err = %v, want ErrNotFound", err)
	}
	rev1, err := s.Create(ctx, key, []byte("one"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	kv, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(kv.Value) != "one" || kv.ModRevision != rev1 || kv.CreateRevision != rev1 || kv.Key != key {
		t.Fatalf("Get = %+v, want value one at revision %d", kv, rev1)
	}

	_, err = s.Create(ctx, key, []byte("again"))
	if !errors.Is(err, etcdx.ErrExists) || !strings.Contains(err.Error(), key) {
		t.Fatalf("Create existing: err = %v, want ErrExists naming %s", err, key)
	}

	rev2, err := s.Update(ctx, key, []byte("two"), rev1)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if rev2 <= rev1 {
		t.Fatalf("Update revision %d, want > %d", rev2, rev1)
	}
	if _, err := s.Update(ctx, key, []byte("stale"), rev1); !errors.Is(err, etcdx.ErrConflict) {
		t.Fatalf("Update stale: err = %v, want ErrConflict", err)
	}
	if _, err := s.Update(ctx, key, []byte("zero"), 0); !errors.Is(err, etcdx.ErrConflict) {
		t.Fatalf("Update with revision 0: err = %v, want ErrConflict", err)
	}

	rev3, err := s.Put(ctx, key, []byte("three"))
	if err != nil || rev3 <= rev2 {
		t.Fatalf("Put = %d, %v; want revision > %d", rev3, err, rev2)
	}
	kv, _ = s.Get(ctx, key)
	if string(kv.Value) != "three" || kv.CreateRevision != rev1 {
		t.Fatalf("after Put: %+v", kv)
	}

	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(ctx, key); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("Delete missing: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, key, []byte("gone"), rev3); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("Update missing: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("Get deleted: err = %v, want ErrNotFound", err)
	}
	// Put creates as well.
	if _, err := s.Put(ctx, key, []byte("new")); err != nil {
		t.Fatalf("Put new: %v", err)
	}
}

// DeleteRev tells a changed key (ErrConflict) from a deleted one (ErrNotFound), naming
// the key, and deletes only at the revision it was given.
func TestDeleteRev(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	key := testKey(t, "a")

	rev1, err := s.Create(ctx, key, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := s.Update(ctx, key, []byte("two"), rev1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRev(ctx, key, rev1); !errors.Is(err, etcdx.ErrConflict) || !strings.Contains(err.Error(), key) {
		t.Fatalf("DeleteRev at an old revision: err = %v, want ErrConflict naming %s", err, key)
	}
	if kv, err := s.Get(ctx, key); err != nil || string(kv.Value) != "two" {
		t.Fatalf("after a refused DeleteRev: %+v, %v; want the value kept", kv, err)
	}
	if err := s.DeleteRev(ctx, key, 0); !errors.Is(err, etcdx.ErrConflict) {
		t.Fatalf("DeleteRev at revision 0: err = %v, want ErrConflict", err)
	}
	if err := s.DeleteRev(ctx, key, rev2); err != nil {
		t.Fatalf("DeleteRev at the current revision: %v", err)
	}
	if err := s.DeleteRev(ctx, key, rev2); !errors.Is(err, etcdx.ErrNotFound) || !strings.Contains(err.Error(), key) {
		t.Fatalf("DeleteRev of a deleted key: err = %v, want ErrNotFound naming %s", err, key)
	}
}

func TestUpdateConcurrentConflict(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	key := testKey(t, "x")
	rev, err := s.Create(ctx, key, []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		kv, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 && kv.ModRevision != rev {
			t.Fatalf("mod revision %d, want %d", kv.ModRevision, rev)
		}
		const writers = 2
		errs := make([]error, writers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range writers {
			wg.Go(func() {
				<-start
				_, errs[i] = s.Update(ctx, key, fmt.Appendf(nil, "writer %d", i), kv.ModRevision)
			})
		}
		close(start)
		wg.Wait()
		wins, conflicts := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, etcdx.ErrConflict):
				conflicts++
			default:
				t.Fatalf("Update: %v", err)
			}
		}
		if wins != 1 || conflicts != writers-1 {
			t.Fatalf("round %d: %d updates won and %d conflicted, want 1 and %d", round, wins, conflicts, writers-1)
		}
	}
}

func TestListPaging(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	dir := testKey(t, "items")
	var want []string
	for i := range 25 {
		k := etcdx.Key("test", t.Name(), "items", fmt.Sprintf("k%02d", i))
		if _, err := s.Put(ctx, k, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}

	all, next, err := s.List(ctx, dir, 0, "")
	if err != nil || next != "" || len(all) != 25 {
		t.Fatalf("List all: %d keys, next %q, err %v; want 25 keys", len(all), next, err)
	}

	for _, limit := range []int64{1, 5, 10, 24, 25, 26} {
		var got []string
		var sizes []int
		cont := ""
		for page := 0; ; page++ {
			if page > 30 {
				t.Fatalf("limit %d: too many pages", limit)
			}
			kvs, next, err := s.List(ctx, dir+"/", limit, cont)
			if err != nil {
				t.Fatalf("limit %d page %d: %v", limit, page, err)
			}
			if int64(len(kvs)) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(kvs))
			}
			sizes = append(sizes, len(kvs))
			for _, kv := range kvs {
				got = append(got, kv.Key)
			}
			if next == "" {
				break
			}
			cont = next
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("limit %d: got keys %q, want %q", limit, got, want)
		}
		wantPages := int((25 + limit - 1) / limit)
		if len(sizes) != wantPages {
			t.Errorf("limit %d: page sizes %v, want %d pages", limit, sizes, wantPages)
		}
	}

	// Typed listing pages the same way.
	vals, next, err := etcdx.ListJSON[int](ctx, s, dir, 10, "")
	if err != nil || len(vals) != 10 || next == "" || vals[9] != 9 {
		t.Fatalf("ListJSON: %v, next %q, err %v", vals, next, err)
	}
}

func TestListBadContinue(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	if _, err := s.Put(ctx, testKey(t, "a", "1"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, testKey(t, "a", "2"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	_, tok, err := s.List(ctx, testKey(t, "a"), 1, "")
	if err != nil || tok == "" {
		t.Fatalf("List: token %q, err %v", tok, err)
	}
	for _, tc := range []struct{ prefix, cont string }{
		{testKey(t, "a"), "not base64!"},
		{testKey(t, "b"), tok}, // a token of another prefix
	} {
		if _, _, err := s.List(ctx, tc.prefix, 1, tc.cont); !errors.Is(err, etcdx.ErrBadContinue) {
			t.Errorf("List(%s, cont %q): err = %v, want ErrBadContinue", tc.prefix, tc.cont, err)
		}
	}
	if _, _, err := s.List(ctx, "", 0, ""); err == nil {
		t.Error("List with an empty prefix succeeded")
	}
}

func TestListPrefixIsolation(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	for _, ns := range []string{"default", "default2", "defaul"} {
		for _, name := range []string{"cpu", "mem"} {
			if _, err := s.Put(ctx, testKey(t, "checks", ns, name), []byte(ns)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A key equal to the prefix without the slash is not under it either.
	if _, err := s.Put(ctx, testKey(t, "checks", "default"), []byte("self")); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{testKey(t, "checks", "default"), testKey(t, "checks", "default") + "/"} {
		kvs, _, err := s.List(ctx, prefix, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) != 2 {
			t.Fatalf("List(%s) returned %d keys, want 2: %+v", prefix, len(kvs), kvs)
		}
		for _, kv := range kvs {
			if string(kv.Value) != "default" {
				t.Errorf("List(%s) returned %s", prefix, kv.Key)
			}
		}
		all, _, err := s.ListAll(ctx, prefix)
		if err != nil || len(all) != 2 {
			t.Fatalf("ListAll(%s) = %d keys, %v; want 2", prefix, len(all), err)
		}
	}
}

func TestTxn(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	a, b, c := testKey(t, "a"), testKey(t, "b"), testKey(t, "c")
	if err := s.Txn(ctx, etcdx.CreateOp(a, []byte("a")), etcdx.CreateOp(b, []byte("b")), etcdx.PutOp(c, []byte("c"))); err != nil {
		t.Fatalf("Txn: %v", err)
	}
	kvB, _ := s.Get(ctx, b)

	// One existing key fails the whole transaction, naming the key.
	d := testKey(t, "d")
	err := s.Txn(ctx, etcdx.CreateOp(d, []byte("d")), etcdx.CreateOp(a, []byte("a2")))
	if !errors.Is(err, etcdx.ErrExists) || !strings.Contains(err.Error(), a) {
		t.Fatalf("Txn with an existing key: err = %v, want ErrExists naming %s", err, a)
	}
	if _, err := s.Get(ctx, d); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("failed Txn wrote %s: %v", d, err)
	}

	// Updates compare revisions.
	err = s.Txn(ctx, etcdx.UpdateOp(b, []byte("b2"), kvB.ModRevision-1), etcdx.PutOp(d, []byte("d")))
	if !errors.Is(err, etcdx.ErrConflict) || !strings.Contains(err.Error(), b) {
		t.Fatalf("Txn with a stale update: err = %v, want ErrConflict naming %s", err, b)
	}
	err = s.Txn(ctx, etcdx.UpdateOp(d, []byte("d"), 1))
	if !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("Txn updating a missing key: err = %v, want ErrNotFound", err)
	}
	if err := s.Txn(ctx, etcdx.UpdateOp(b, []byte("b2"), kvB.ModRevision), etcdx.DeleteOp(c)); err != nil {
		t.Fatalf("Txn update+delete: %v", err)
	}
	if kv, _ := s.Get(ctx, b); string(kv.Value) != "b2" {
		t.Fatalf("b = %q after update", kv.Value)
	}
	if _, err := s.Get(ctx, c); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("c not deleted: %v", err)
	}

	// More ops than etcd's default limit of 128 fit with the embedded default.
	var ops []etcdx.Op
	for i := range 300 {
		ops = append(ops, etcdx.CreateOp(testKey(t, "bulk", fmt.Sprint(i)), []byte("x")))
	}
	if err := s.Txn(ctx, ops...); err != nil {
		t.Fatalf("Txn of 300 creates: %v", err)
	}

	if err := s.Txn(ctx, etcdx.PutOp(a, nil), etcdx.PutOp(a, nil)); err == nil {
		t.Fatal("Txn with a duplicate key succeeded")
	}
}

type check struct {
	Name     string `json:"name"`
	Interval int    `json:"interval"`
}

func TestJSON(t *testing.T) {
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	key := testKey(t, "cpu")
	rev, err := etcdx.CreateJSON(ctx, s, key, check{Name: "cpu", Interval: 10})
	if err != nil {
		t.Fatal(err)
	}
	got, gotRev, err := etcdx.GetJSON[check](ctx, s, key)
	if err != nil || got != (check{"cpu", 10}) || gotRev != rev {
		t.Fatalf("GetJSON = %+v, %d, %v", got, gotRev, err)
	}
	if _, err := etcdx.UpdateJSON(ctx, s, key, check{Name: "cpu", Interval: 20}, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdx.UpdateJSON(ctx, s, key, check{Name: "cpu", Interval: 30}, rev); !errors.Is(err, etcdx.ErrConflict) {
		t.Fatalf("UpdateJSON stale: %v", err)
	}
	if _, err := etcdx.PutJSON(ctx, s, testKey(t, "mem"), check{Name: "mem"}); err != nil {
		t.Fatal(err)
	}
	list, next, err := etcdx.ListJSON[check](ctx, s, testKey(t), 0, "")
	if err != nil || next != "" || len(list) != 2 || list[0].Interval != 20 || list[1].Name != "mem" {
		t.Fatalf("ListJSON = %+v, %q, %v", list, next, err)
	}
	if _, err := s.Put(ctx, testKey(t, "bad"), []byte("{")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := etcdx.GetJSON[check](ctx, s, testKey(t, "bad")); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Fatalf("GetJSON of invalid JSON: %v", err)
	}
	if _, _, err := etcdx.GetJSON[check](ctx, s, testKey(t, "none")); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("GetJSON missing: %v", err)
	}
}

// next receives one watch event or fails after a timeout.
func next(t *testing.T, ch <-chan etcdx.WatchEvent) etcdx.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event after 5s")
	}
	panic("unreachable")
}

func TestWatch(t *testing.T) {
	checkGoroutines(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := sharedStore
	clearTestKeys(t)
	dir := testKey(t, "checks", "default")
	if _, err := s.Put(ctx, dir+"/before", []byte("0")); err != nil {
		t.Fatal(err)
	}
	kvs, rev, err := s.ListAll(ctx, dir)
	if err != nil || len(kvs) != 1 {
		t.Fatalf("ListAll: %d keys, %v", len(kvs), err)
	}
	ch := s.Watch(ctx, dir, rev+1)

	r1, _ := s.Put(ctx, dir+"/cpu", []byte("1"))
	if _, err := s.Put(ctx, testKey(t, "checks", "default2", "cpu"), []byte("other")); err != nil {
		t.Fatal(err)
	}
	r2, _ := s.Update(ctx, dir+"/cpu", []byte("2"), r1)
	if err := s.Delete(ctx, dir+"/cpu"); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		typ, val string
		rev      int64
	}{{etcdx.EventPut, "1", r1}, {etcdx.EventPut, "2", r2}, {etcdx.EventDelete, "", r2 + 1}}
	for i, w := range want {
		ev := next(t, ch)
		if ev.Type != w.typ || string(ev.KV.Value) != w.val || ev.KV.Key != dir+"/cpu" || ev.KV.ModRevision != w.rev || ev.Err != nil {
			t.Fatalf("event %d = %+v, want %s %q at %d", i, ev, w.typ, w.val, w.rev)
		}
	}

	cancel()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("event after cancel: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed after cancel")
	}
}

func TestWatchCompacted(t *testing.T) {
	checkGoroutines(t)
	ctx := t.Context()
	s := sharedStore
	clearTestKeys(t)
	key := testKey(t, "k")
	r1, _ := s.Put(ctx, key, []byte("1"))
	r2, _ := s.Put(ctx, key, []byte("2"))
	if _, err := s.Client().Compact(ctx, r2); err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, testKey(t), r1)
	ev := next(t, ch)
	if ev.Type != etcdx.EventError || !errors.Is(ev.Err, etcdx.ErrCompacted) {
		t.Fatalf("event = %+v, want an error wrapping ErrCompacted", ev)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after the error event")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after the error event")
	}
}

// TestIsTimeout: etcd's "request timed out" is recognised through a client and from an
// embedded member's KV server, wrapped or not; other errors are not.
func TestIsTimeout(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrTimeout, true},
		{fmt.Errorf("commit: %w", rpctypes.ErrTimeout), true},
		{serverrors.ErrTimeout, true},
		{fmt.Errorf("batch: %w", serverrors.ErrTimeout), true},
		{rpctypes.ErrTimeoutDueToLeaderFail, false},
		{context.DeadlineExceeded, false},
		{etcdx.ErrConflict, false},
		{nil, false},
	} {
		if got := etcdx.IsTimeout(c.err); got != c.want {
			t.Errorf("IsTimeout(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
