package etcdx_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
)

func TestStartupTime(t *testing.T) {
	t.Logf("fresh single-node member ready in %s (TestMain, -race %v)", sharedStart, raceEnabled)
}

func TestRestartKeepsData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own etcd member twice")
	}
	checkGoroutines(t)
	logger, logs := testLogger(t, slog.LevelDebug)
	dir := filepath.Join(t.TempDir(), "etcd")
	cfg, err := memberConfig(dir, logger)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	e, err := etcdx.StartEmbedded(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh member ready in %s", time.Since(start))
	c := newClient(t, e)
	s := etcdx.NewStore(c)
	rev, err := s.Create(t.Context(), etcdx.Key("checks", "default", "cpu"), []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}

	// An open watch must not hold up Close.
	wctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watch := s.Watch(wctx, etcdx.Key("checks"), 0)

	start = time.Now()
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	t.Logf("member with an open watch closed in %s", took)
	// etcd's own graceful stop waits up to 7s for open streams; Close ends them first.
	if took > 5*time.Second {
		t.Errorf("Close took %s with an open watch", took)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err, ok := <-e.Err(); ok {
		t.Errorf("Err() after Close delivered %v, want a closed channel", err)
	}
	c.Close()
	select {
	case ev, ok := <-watch:
		if ok && ev.Type != etcdx.EventError {
			t.Errorf("watch after Close delivered %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("watch still open 5s after its client closed")
	}
	cancel()

	start = time.Now()
	e2, err := etcdx.StartEmbedded(t.Context(), cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Logf("restarted member ready in %s", time.Since(start))
	defer e2.Close()
	s2 := etcdx.NewStore(newClient(t, e2))
	kv, err := s2.Get(t.Context(), etcdx.Key("checks", "default", "cpu"))
	if err != nil || string(kv.Value) != "kept" || kv.ModRevision != rev {
		t.Fatalf("after restart: %+v, %v; want value kept at revision %d", kv, err, rev)
	}
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}

	out := logs.String()
	if !strings.Contains(out, "became leader") {
		t.Error("etcd's logs did not reach the slog logger")
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			t.Errorf("start, restart and close logged above debug: %s", line)
		}
	}
}

func TestSecondStartLocked(t *testing.T) {
	start := time.Now()
	_, err := etcdx.StartEmbedded(t.Context(), sharedCfg)
	t.Logf("second start failed after %s: %v", time.Since(start), err)
	if !errors.Is(err, etcdx.ErrLocked) {
		t.Fatalf("second StartEmbedded on %s: err = %v, want ErrLocked", sharedCfg.Dir, err)
	}
	want := fmt.Sprintf("state dir %s is in use by another picket server (lock %s held",
		filepath.Dir(sharedCfg.Dir), sharedCfg.Dir+".lock")
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "choose another --state-dir") {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	// The shared member is unaffected.
	if _, err := sharedStore.Put(t.Context(), etcdx.Key("test", t.Name()), []byte("ok")); err != nil {
		t.Fatalf("shared member after the refused start: %v", err)
	}
}

func TestBusyPort(t *testing.T) {
	checkGoroutines(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	dir := filepath.Join(t.TempDir(), "etcd")

	for _, tc := range []struct{ kind, key string }{
		{"client", "etcd-listen-client-urls"},
		{"peer", "etcd-listen-peer-urls"},
	} {
		cfg, err := memberConfig(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.kind == "client" {
			cfg.ListenClientURLs = []string{"http://" + addr}
		} else {
			cfg.ListenPeerURLs = []string{"http://" + addr}
		}
		_, err = etcdx.StartEmbedded(t.Context(), cfg)
		if !errors.Is(err, etcdx.ErrAddrInUse) {
			t.Fatalf("%s port busy: err = %v, want ErrAddrInUse", tc.kind, err)
		}
		want := fmt.Sprintf("etcd %s listener %s: address already in use; stop the other process or set %s", tc.kind, addr, tc.key)
		if err.Error() != want {
			t.Fatalf("error %q, want %q", err, want)
		}
	}

	// The failed starts released the data dir.
	if testing.Short() {
		return
	}
	startMember(t, dir, nil)
}

func TestConfigErrors(t *testing.T) {
	cfg := etcdx.EmbedConfig{
		ListenClientURLs:    []string{"tcp://127.0.0.1:1"},
		ListenPeerURLs:      []string{"https://127.0.0.1:2"},
		InitialClusterState: "old",
		HeartbeatInterval:   time.Second,
	}
	_, err := etcdx.StartEmbedded(t.Context(), cfg)
	if err == nil {
		t.Fatal("StartEmbedded with a bad config succeeded")
	}
	for _, want := range []string{
		"data dir is empty",
		`etcd-listen-client-urls: "tcp://127.0.0.1:1" must be an http:// or https:// URL`,
		"https but etcd-peer-cert-file and etcd-peer-key-file are not set",
		`etcd-initial-cluster-state "old"`,
		"etcd-election-timeout 1s should be at least 5 times etcd-heartbeat-interval 1s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}

func TestNewClientErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  etcdx.ClientConfig
		want string
	}{
		{"no endpoints", etcdx.ClientConfig{}, "no endpoints"},
		{"cert without key", etcdx.ClientConfig{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: "c.pem"}, "set both"},
		{"bad scheme", etcdx.ClientConfig{Endpoints: []string{"unixs://x"}}, "must be"},
		{"missing CA", etcdx.ClientConfig{Endpoints: []string{"127.0.0.1:1"}, TrustedCAFile: "/nonexistent/ca.pem"}, "TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := etcdx.NewClient(tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("NewClient succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
