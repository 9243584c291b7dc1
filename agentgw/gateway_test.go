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
	g := New(Config{Name: "t", Hooks: Hooks{
		Authenticate:    func(context.Context, string, string) error { return nil },
		NamespaceExists: func(context.Context, string) (bool, error) { return true, nil },
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
	g.SetReady(true)
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer g.Close(context.Background())

	h := http.Header{}
	h.Set(HeaderAgentName, "a1")
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("agent:pw")))
	conn, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[4:], &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
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
	g := New(Config{Name: "t", PingInterval: time.Second, PingTimeout: time.Second, Hooks: Hooks{
		Authenticate:    func(context.Context, string, string) error { return nil },
		NamespaceExists: func(context.Context, string) (bool, error) { return true, nil },
	}})
	g.SetReady(true)
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer g.Close(context.Background())

	h := http.Header{}
	h.Set(HeaderAgentName, "deaf")
	h.Set(HeaderSubscriptions, "linux")
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("agent:pw")))
	conn, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[4:], &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
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
