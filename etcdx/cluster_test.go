package etcdx_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
)

// freePortOn returns a port that was free on ip a moment ago.
func freePortOn(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (Linux routes all of 127/8 to loopback): %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// clusterMember is one in-process member of a test cluster on its own loopback address.
type clusterMember struct {
	name, ip        string
	clientURL, peer string
	dir             string
	e               *etcdx.Embedded
}

func (m *clusterMember) config(ic, state string, logger *slog.Logger) etcdx.EmbedConfig {
	return etcdx.EmbedConfig{
		Name: m.name, Dir: m.dir,
		ListenClientURLs: []string{m.clientURL}, ListenPeerURLs: []string{m.peer},
		InitialCluster: ic, InitialClusterState: state, InitialClusterToken: "etcdx-cluster-test",
		HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		Logger: logger, StartTimeout: 30 * time.Second, JoinCheckWait: time.Second,
	}
}

func newMember(t *testing.T, name, ip string) *clusterMember {
	return &clusterMember{
		name: name, ip: ip, dir: filepath.Join(t.TempDir(), "etcd"),
		clientURL: fmt.Sprintf("http://%s:%d", ip, freePortOn(t, ip)),
		peer:      fmt.Sprintf("http://%s:%d", ip, freePortOn(t, ip)),
	}
}

func (m *clusterMember) close() {
	if m.e != nil {
		m.e.Close()
		m.e = nil
	}
}

// TestThreeMemberCluster runs one in-process cluster on 127.0.0.1, 127.0.0.2 and
// 127.0.0.3 through the membership operations and the checks around a member's start.
func TestThreeMemberCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-member etcd cluster")
	}
	logger, _ := testLogger(t, slog.LevelWarn)
	ms := []*clusterMember{newMember(t, "m1", "127.0.0.1"), newMember(t, "m2", "127.0.0.2"), newMember(t, "m3", "127.0.0.3")}
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.name+"="+m.peer)
	}
	ic := strings.Join(parts, ",")
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.e, errs[i] = etcdx.StartEmbedded(t.Context(), m.config(ic, "new", logger))
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range ms {
			m.close()
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %s: %v", ms[i].name, err)
		}
	}
	cli, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: []string{ms[0].clientURL, ms[1].clientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := t.Context()
	store := etcdx.NewStore(cli)
	for i := 0; i < 50; i++ {
		if _, err := store.Create(ctx, etcdx.Key("test", fmt.Sprint(i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	countKeys := func(t *testing.T, c *clientv3.Client) int64 {
		t.Helper()
		resp, err := c.Get(ctx, etcdx.Key("test")+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}

	t.Run("health", func(t *testing.T) {
		h := etcdx.ClusterHealth(ctx, cli, etcdx.ClientConfig{}, 3*time.Second)
		if len(h.ClusterHealth) != 3 {
			t.Fatalf("health: %+v", h)
		}
		for _, m := range h.ClusterHealth {
			if !m.Healthy {
				t.Fatalf("member %s unhealthy: %s", m.Name, m.Err)
			}
		}
		sts, err := etcdx.ClusterStatus(ctx, cli, etcdx.ClientConfig{}, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range sts {
			if st.Err != "" || st.Leader == 0 || st.Leader != sts[0].Leader || st.RaftTerm != sts[0].RaftTerm {
				t.Fatalf("members do not agree on one leader and term: %+v", sts)
			}
		}
	})

	t.Run("unhealthy member shows the dial error", func(t *testing.T) {
		ms[2].close()
		h := etcdx.ClusterHealth(ctx, cli, etcdx.ClientConfig{}, 2*time.Second)
		var bad *etcdx.MemberHealth
		for i, m := range h.ClusterHealth {
			if m.Name == "m3" {
				bad = &h.ClusterHealth[i]
			}
		}
		if bad == nil || bad.Healthy || !strings.Contains(bad.Err, "dial tcp 127.0.0.3") || !strings.Contains(bad.Err, "refused") {
			t.Fatalf("m3 health: %+v", bad)
		}
	})

	t.Run("a wiped member is not restarted under its old ID", func(t *testing.T) {
		if err := os.RemoveAll(ms[2].dir); err != nil {
			t.Fatal(err)
		}
		for _, state := range []string{"new", "existing"} {
			_, err := etcdx.StartEmbedded(ctx, ms[2].config(ic, state, logger))
			if !errors.Is(err, etcdx.ErrAlreadyBootstrapped) || !strings.Contains(err.Error(), "picket cluster replace m3") {
				t.Fatalf("state %s: %v", state, err)
			}
		}
	})

	t.Run("replace in the safe order", func(t *testing.T) {
		ml, err := etcdx.ListMembers(ctx, cli)
		if err != nil {
			t.Fatal(err)
		}
		var old uint64
		for _, m := range ml.Members {
			if m.Name == "m3" {
				old = m.ID
			}
		}
		if err := etcdx.RemoveMember(ctx, cli, old); err != nil {
			t.Fatal(err)
		}
		add, err := etcdx.AddMember(ctx, cli, []string{ms[2].peer}, true)
		if err != nil {
			t.Fatal(err)
		}
		if !add.Member.IsLearner || add.Member.ID == old {
			t.Fatalf("added: %+v (old %x)", add.Member, old)
		}
		// Only one learner at a time.
		if _, err := etcdx.AddMember(ctx, cli, []string{"http://127.0.0.3:1"}, true); err == nil {
			t.Fatal("a second learner was added")
		}
		newIC, err := add.InitialCluster("m3")
		if err != nil {
			t.Fatal(err)
		}
		if newIC != ic {
			t.Fatalf("initial cluster %q, want %q", newIC, ic)
		}
		if err := etcdx.UpdateMember(ctx, cli, add.Member.ID, []string{ms[2].peer}); !errors.Is(err, etcdx.ErrLearner) {
			t.Fatalf("update of a learner: %v", err)
		}
		ms[2].e, err = etcdx.StartEmbedded(ctx, ms[2].config(newIC, "existing", logger))
		if err != nil {
			t.Fatal(err)
		}
		if !ms[2].e.IsLearner() {
			t.Fatal("the re-added member is not a learner")
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := etcdx.PromoteMember(pctx, cli, add.Member.ID); err != nil {
			t.Fatal(err)
		}
		if err := ms[2].e.WaitPromoted(pctx); err != nil {
			t.Fatal(err)
		}
		c3, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: []string{ms[2].clientURL}})
		if err != nil {
			t.Fatal(err)
		}
		defer c3.Close()
		if n := countKeys(t, c3); n != 50 {
			t.Fatalf("the replaced member has %d keys, want 50", n)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			h := etcdx.ClusterHealth(ctx, cli, etcdx.ClientConfig{}, 2*time.Second)
			ok := len(h.ClusterHealth) == 3
			for _, m := range h.ClusterHealth {
				ok = ok && m.Healthy
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not healthy after replace: %+v", h)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("a member that is not in the cluster may not join", func(t *testing.T) {
		m4 := newMember(t, "m4", "127.0.0.1")
		_, err := etcdx.StartEmbedded(ctx, m4.config(ic+",m4="+m4.peer, "existing", logger))
		if !errors.Is(err, etcdx.ErrNotAMember) || !strings.Contains(err.Error(), "member-add m4") {
			t.Fatalf("join without member-add: %v", err)
		}
	})

	t.Run("a member started before it was configured to join", func(t *testing.T) {
		m4 := newMember(t, "m4", "127.0.0.1")
		single, err := etcdx.StartEmbedded(ctx, m4.config("", "new", logger))
		if err != nil {
			t.Fatal(err)
		}
		single.Close()
		_, err = etcdx.StartEmbedded(ctx, m4.config(ic+",m4="+m4.peer, "existing", logger))
		if !errors.Is(err, etcdx.ErrStaleMember) || !strings.Contains(err.Error(), m4.dir) {
			t.Fatalf("stale member: %v", err)
		}
	})

	t.Run("snapshot save and restore", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "snap.db")
		n, err := etcdx.SaveSnapshotFile(ctx, cli, path)
		if err != nil || n == 0 {
			t.Fatalf("save: %d %v", n, err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot file: %v %v", fi, err)
		}
		st, err := etcdx.SnapshotStatus(path)
		if err != nil || st.TotalKeys < 50 {
			t.Fatalf("status: %+v %v", st, err)
		}
		r := newMember(t, "restored", "127.0.0.1")
		if err := etcdx.RestoreSnapshot(etcdx.RestoreConfig{Snapshot: path, Dir: r.dir, Name: r.name, PeerURLs: []string{r.peer}}); err != nil {
			t.Fatal(err)
		}
		if err := etcdx.RestoreSnapshot(etcdx.RestoreConfig{Snapshot: path, Dir: r.dir, Name: r.name, PeerURLs: []string{r.peer}}); err == nil {
			t.Fatal("restore over an existing data dir succeeded")
		}
		e, err := etcdx.StartEmbedded(ctx, r.config("", "new", logger))
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		rc, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: e.ClientURLs()})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if n := countKeys(t, rc); n != 50 {
			t.Fatalf("restored %d keys, want 50", n)
		}
		ml, err := etcdx.ListMembers(ctx, rc)
		if err != nil || len(ml.Members) != 1 {
			t.Fatalf("restored members: %+v %v", ml, err)
		}
	})
}

func TestInitialClusterFor(t *testing.T) {
	ms := []etcdx.Member{
		{ID: 1, Name: "b", PeerURLs: []string{"https://10.0.0.2:2380"}},
		{ID: 2, Name: "a", PeerURLs: []string{"https://10.0.0.1:2380"}},
		{ID: 3, PeerURLs: []string{"https://10.0.0.3:2380"}},
	}
	got, err := etcdx.InitialClusterFor(ms, 3, "c")
	if err != nil || got != "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380,c=https://10.0.0.3:2380" {
		t.Fatalf("got %q %v", got, err)
	}
	if _, err := etcdx.InitialClusterFor(ms, 1, "b"); err == nil {
		t.Fatal("an unstarted member other than the new one must fail")
	}
}
