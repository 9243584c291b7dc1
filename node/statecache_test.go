package node

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
)

// testStore starts an embedded etcd member for the test and returns a store on it.
func testStore(t *testing.T) *etcdx.Store {
	t.Helper()
	var urls []string
	for i := 0; i < 2; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "http://"+l.Addr().String())
		l.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := etcdx.StartEmbedded(ctx, etcdx.EmbedConfig{Dir: t.TempDir(), ListenClientURLs: urls[:1], ListenPeerURLs: urls[1:]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	c, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: e.ClientURLs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return etcdx.NewStore(c)
}

// TestStateCacheEviction: an entry in use is never evicted (two entries for one key
// would let a write through the older overwrite one through the newer), and an entity
// read whose filled entries the cache evicted meanwhile does not take their keys for
// absent afterwards.
func TestStateCacheEviction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	store := testStore(t)
	ctx := context.Background()
	c := newStateCache(2)

	// Pinned entries stay.
	a := c.entry("/picket/events/default/pin/a")
	for i := 0; i < 5; i++ {
		c.release(c.entry(fmt.Sprintf("/picket/events/default/pin/x%d", i)))
	}
	if again := c.entry(a.key); again != a {
		t.Fatal("an entry in use was evicted: a second entry now stands for its key")
	} else {
		c.release(again)
	}
	c.release(a)

	// Four stored events of one entity, read into a cache of three: filling the fourth
	// evicts the second. While the others are in use, the second's next miss evicts
	// nothing of the entity (they are pinned), so only the read itself can tell that the
	// second's key was not absent.
	c = newStateCache(3)
	for _, k := range []string{"a", "b", "c", "d"} {
		val := fmt.Sprintf(`{"entity":{"metadata":{"name":"scan","namespace":"default"}},"check":{"metadata":{"name":%q},"status":2,"occurrences":3,"history":[{"status":2,"executed":1}]},"id":"stored-%s"}`, k, k)
		if _, err := store.Put(ctx, "/picket/events/default/scan/"+k, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	ea := c.entry("/picket/events/default/scan/a")
	defer c.release(ea)
	ea.mu.Lock()
	err := c.load(ctx, store, ea)
	ea.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !ea.hasState || ea.id != "stored-a" {
		t.Fatalf("a: state %v, id %q; want the stored event", ea.hasState, ea.id)
	}
	for _, k := range []string{"c", "d"} {
		defer c.release(c.entry("/picket/events/default/scan/" + k))
	}
	eb := c.entry("/picket/events/default/scan/b")
	defer c.release(eb)
	eb.mu.Lock()
	defer eb.mu.Unlock()
	if eb.loaded {
		t.Fatal("b's entry survived the read; the test no longer evicts it")
	}
	if err := c.load(ctx, store, eb); err != nil {
		t.Fatal(err)
	}
	if !eb.hasState || eb.id != "stored-b" {
		t.Fatalf("b after its entry was evicted during the entity's read: state %v, id %q; want the stored event, not absent", eb.hasState, eb.id)
	}
}
