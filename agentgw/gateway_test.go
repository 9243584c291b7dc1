package agentgw

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/events"
)

// TestEventsReadBeforeCloseArePersisted: an agent that sends events and disconnects at
// once still has every event handed to the node, under a context its session's end
// does not cancel.
func TestEventsReadBeforeCloseArePersisted(t *testing.T) {
	var handled atomic.Int64
	g := startGateway(t, Config{Hooks: Hooks{
		HandleEvent: func(ctx context.Context, ev *events.Event, keepalive bool) error {
			select {
			case <-time.After(50 * time.Millisecond): // a grouped commit's latency
			case <-ctx.Done():
				return ctx.Err()
			}
			handled.Add(1)
			return nil
		},
	}})
	conn := g.dial(t, "a1", "")
	for i := 0; i < 10; i++ {
		ev := &events.Event{Check: &events.Check{}}
		ev.Check.Metadata.Name = "c"
		payload, _ := json.Marshal(ev)
		if err := conn.Write(context.Background(), websocket.MessageBinary, Encode(TypeEvent, payload)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(websocket.StatusNormalClosure, "bye")
	deadline := time.Now().Add(5 * time.Second)
	for handled.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := handled.Load(); n != 10 {
		t.Fatalf("%d of 10 events handled after the agent disconnected", n)
	}
}

// TestAgentThatReadsNothingIsClosed: an agent that stays connected but reads nothing
// fills the socket's buffers until a write to it blocks. Its pings would queue behind
// that write forever, so the ping loop closes a session whose write has not finished
// within the ping timeout; requests to it are dropped meanwhile, not queued without end.
func TestAgentThatReadsNothingIsClosed(t *testing.T) {
	g := startGateway(t, Config{PingInterval: time.Second, PingTimeout: time.Second})
	conn := g.dial(t, "deaf", "linux")
	defer conn.CloseNow()
	// Never read from conn. 64 KiB requests fill the loopback buffers within a few
	// hundred; once the writer blocks, the queue fills and deliveries fail.
	cfg := &events.CheckConfig{Command: strings.Repeat("x", 64<<10)}
	cfg.Metadata.Name = "big"
	blocked := false
	for i := 0; i < 5000 && !blocked; i++ {
		blocked = g.Deliver("default", &CheckRequest{Config: cfg, Issued: int64(i)}, []string{"linux"}) == 0
	}
	if !blocked {
		t.Fatal("5000 requests of 64 KiB were all queued for an agent that reads nothing")
	}
	start := time.Now()
	for g.Connected("default", "deaf") {
		if time.Since(start) > 20*time.Second {
			t.Fatal("the session of an agent that reads nothing is still open after 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("session closed %v after its queue filled", time.Since(start).Round(time.Millisecond))
}

// testGateway is a gateway that lets every agent in, served over HTTP.
type testGateway struct {
	*Gateway
	url string
}

// startGateway starts a gateway with cfg, whose Authenticate and NamespaceExists hooks
// accept everything unless set, and stops it when the test ends.
func startGateway(t *testing.T, cfg Config) *testGateway {
	t.Helper()
	cfg.Name = "t"
	if cfg.Hooks.Authenticate == nil {
		cfg.Hooks.Authenticate = func(context.Context, string, string) error { return nil }
	}
	if cfg.Hooks.NamespaceExists == nil {
		cfg.Hooks.NamespaceExists = func(context.Context, string) (bool, error) { return true, nil }
	}
	g := New(cfg)
	g.SetReady(true)
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		g.Close(context.Background())
		srv.Close()
	})
	return &testGateway{Gateway: g, url: "ws" + srv.URL[4:]}
}

// dial connects an agent named name with the subscriptions subs (comma-separated).
func (g *testGateway) dial(t *testing.T, name, subs string) *websocket.Conn {
	t.Helper()
	h := http.Header{}
	h.Set(HeaderAgentName, name)
	if subs != "" {
		h.Set(HeaderSubscriptions, subs)
	}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("agent:pw")))
	conn, _, err := websocket.Dial(context.Background(), g.url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}
