package etcdx_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago. All
// listeners are open at once so the ports differ; another process may still take one
// before the test binds it, which is rare enough for tests.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// memberConfig is a single-node member in dir on free loopback ports.
func memberConfig(dir string, logger *slog.Logger) (etcdx.EmbedConfig, error) {
	ports, err := freePorts(2)
	if err != nil {
		return etcdx.EmbedConfig{}, err
	}
	return etcdx.EmbedConfig{
		Dir:              dir,
		ListenClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", ports[0])},
		ListenPeerURLs:   []string{fmt.Sprintf("http://127.0.0.1:%d", ports[1])},
		Logger:           logger,
	}, nil
}

// logBuffer collects logs and prints them only when the test fails, since etcd may log
// from its own goroutines where t.Log is not allowed.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T, level slog.Level) (*slog.Logger, *logBuffer) {
	t.Helper()
	b := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: level})), b
}

// startMember starts a member in dir and closes it when the test ends.
func startMember(t *testing.T, dir string, logger *slog.Logger) (*etcdx.Embedded, time.Duration) {
	t.Helper()
	cfg, err := memberConfig(dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e, err := etcdx.StartEmbedded(t.Context(), cfg)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	took := time.Since(start)
	t.Cleanup(func() { e.Close() })
	return e, took
}

func newClient(t *testing.T, e *etcdx.Embedded) *clientv3.Client {
	t.Helper()
	c, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: e.ClientURLs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The member shared by most tests, started by TestMain.
var (
	shared      *etcdx.Embedded
	sharedCfg   etcdx.EmbedConfig
	sharedStore *etcdx.Store
	sharedStart time.Duration
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "etcdx-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sharedCfg, err = memberConfig(dir+"/etcd", logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	shared, err = etcdx.StartEmbedded(ctx, sharedCfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start shared etcd:", err)
		return 1
	}
	sharedStart = time.Since(start)
	defer shared.Close()
	c, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: shared.ClientURLs()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	sharedStore = etcdx.NewStore(c)
	return m.Run()
}

// checkGoroutines fails the test if it leaves behind a goroutine running code of package
// etcdx (the goroutines etcdx owns: watches, error forwarding, stream stoppers). etcd's
// own goroutines are not counted, as the shared member keeps starting and ending its own.
// Call it first in the test, so that its cleanup runs after the test's other cleanups.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := ownGoroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var leaked []string
			for id, stack := range ownGoroutines() {
				if _, ok := before[id]; !ok {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d etcdx goroutines left running:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// ownGoroutines returns the stacks of the goroutines running etcdx code, by goroutine id.
func ownGoroutines() map[string]string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "github.com/picketmon/picket/etcdx.") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		out[id] = g
	}
	return out
}
