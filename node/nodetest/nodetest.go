// Package nodetest starts real, initialised Picket nodes for tests: an embedded etcd
// member on free loopback ports and the REST API, in-process.
package nodetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node"
	"github.com/picketmon/picket/node/api"
	"golang.org/x/crypto/bcrypt"
)

// Admin credentials of every test node.
const (
	AdminUser     = "admin"
	AdminPassword = "test-admin-password"
	AgentPassword = "test-agent-password"
)

// Options adjust a test node.
type Options struct {
	// StateDir reuses a state dir (to test restarts); "" means a new t.TempDir().
	StateDir string
	// AccessTokenTTL overrides the 5 minute default.
	AccessTokenTTL time.Duration
	// NoInit skips seeding the namespace and users.
	NoInit bool
	// TaskTTL overrides how long a dead node keeps its elected tasks (seconds).
	TaskTTL int
	// Etcd, when set, starts a second server on the etcd of another test node (its
	// client URLs, Store().Client().Endpoints()) instead of an embedded member; Name
	// then names it (default "test2").
	Etcd []string
	Name string
	// AgentAckDelay overrides how long acks to one agent may wait to go out together.
	AgentAckDelay time.Duration
}

// Node is a running test node.
type Node struct {
	*node.Node
	URL string
	// AgentURL is the agent gateway's ws:// URL.
	AgentURL string
	StateDir string
}

func init() {
	// Hashes at the minimum cost keep logins fast under -race; production keeps the default.
	api.PasswordCost = bcrypt.MinCost
}

// Start runs a node until the test ends.
func Start(t testing.TB) *Node { return StartWith(t, Options{}) }

// StartWith runs a node with options until the test ends (or Stop).
func StartWith(t testing.TB, o Options) *Node {
	t.Helper()
	dir := o.StateDir
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var n *node.Node
	// Free ports are picked, released, then bound by etcd: another test process may take
	// one in between, so a busy port means trying again with new ones.
	for attempt := 0; ; attempt++ {
		ports := FreePorts(t, 2)
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		cfg := node.Config{
			Name:               "test",
			APIListenAddress:   "127.0.0.1:0",
			AgentListenAddress: "127.0.0.1:0",
			TaskTTL:            o.TaskTTL,
			Version:            "test",
			Logger:             slog.New(slog.DiscardHandler),
			AccessTokenTTL:     o.AccessTokenTTL,
			AgentAckDelay:      o.AgentAckDelay,
			Embed: &etcdx.EmbedConfig{
				Name: "test", Dir: filepath.Join(dir, "etcd"),
				ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
				ListenPeerURLs: []string{peer}, InitialAdvertisePeerURLs: []string{peer},
				InitialCluster: "test=" + peer, InitialClusterState: "new",
			},
		}
		if len(o.Etcd) > 0 {
			cfg.Embed, cfg.Client.Endpoints, cfg.Name = nil, o.Etcd, o.Name
			if cfg.Name == "" {
				cfg.Name = "test2"
			}
		}
		n = node.New(cfg)
		err := n.Start(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, etcdx.ErrAddrInUse) && attempt < 5 {
			continue
		}
		t.Fatalf("start node: %v", err)
	}
	tn := &Node{Node: n, URL: n.APIURL(), AgentURL: n.AgentURL(), StateDir: dir}
	t.Cleanup(func() { tn.Stop(t) })
	if !o.NoInit {
		err := node.Initialize(ctx, n.Store(), node.InitOptions{
			AdminUsername: AdminUser, AdminPassword: AdminPassword,
			AgentUsername: "agent", AgentPassword: AgentPassword,
		})
		if err != nil && err != node.ErrAlreadyInitialized {
			t.Fatalf("initialize: %v", err)
		}
	}
	return tn
}

// Stop closes the node; safe to call more than once.
func (n *Node) Stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Errorf("stop node: %v", err)
	}
}

// FreePorts returns n distinct TCP ports free on 127.0.0.1 at the time of the call.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range lns {
		l.Close()
	}
	return out
}
