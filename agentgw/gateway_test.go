package agentgw

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
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
		HandleEvent: func(ctx context.Context, ev *events.Event, keepalive bool, _ Origin) error {
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
	return g.dialAcks(t, name, subs, false)
}

// dialAcks is dial, asking for acks when acks is set.
func (g *testGateway) dialAcks(t *testing.T, name, subs string, acks bool) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(context.Background(), g.url, &websocket.DialOptions{HTTPHeader: agentHeader(name, subs, acks)})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// agentHeader is the handshake of an agent named name with the subscriptions subs
// (comma-separated), asking for acks when acks is set.
func agentHeader(name, subs string, acks bool) http.Header {
	h := http.Header{}
	h.Set(HeaderAgentName, name)
	if subs != "" {
		h.Set(HeaderSubscriptions, subs)
	}
	if acks {
		h.Set(AckHeader, "1")
	}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("agent:pw")))
	return h
}

// TestAcksFlowWhileAPingWaits: a busy server reads an agent no faster than its events
// commit, so the pong to its ping arrives only after every frame the agent sent before
// it. Acks must not wait for that pong: with the ping waiting in the session's writer,
// they queued behind it until the queue overflowed and were dropped.
func TestAcksFlowWhileAPingWaits(t *testing.T) {
	const n = 132 // 32 in flight, 100 more waiting in the socket ahead of the pong
	release := make(chan struct{})
	g := startGateway(t, Config{PingInterval: time.Second, PingTimeout: 30 * time.Second, SendQueue: 8, Hooks: Hooks{
		HandleEvent: func(ctx context.Context, ev *events.Event, keepalive bool, _ Origin) error {
			select {
			case <-release: // one commit
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}})
	t.Cleanup(func() { close(release) }) // before the gateway's Close, which waits for them
	conn := g.dialAcks(t, "busy", "", true)
	defer conn.CloseNow()
	for i := 0; i < n; i++ {
		ev := &events.Event{ID: fmt.Sprintf("id-%03d", i), Check: &events.Check{}}
		ev.Check.Metadata.Name = fmt.Sprintf("c%d", i)
		payload, _ := json.Marshal(ev)
		if err := conn.Write(context.Background(), websocket.MessageBinary, Encode(TypeEvent, payload)); err != nil {
			t.Fatal(err)
		}
	}
	// Read (which answers the server's ping, due after 1 s) and count the acks.
	acks := make(chan string, n)
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				close(acks)
				return
			}
			if typ, payload, err := Decode(b); err == nil && typ == TypeAck {
				acks <- string(payload)
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond) // the ping is out; its pong waits behind 100 events
	g.mu.Lock()
	s := g.sessions["default/busy"]
	g.mu.Unlock()
	if s == nil || !s.pinging.Load() {
		t.Fatal("no ping waiting for its pong: the test would check nothing")
	}
	got := 0
	for i := 0; i < n; i++ {
		release <- struct{}{}
		// The ack of each commit arrives before the next one, pong or not.
		select {
		case _, ok := <-acks:
			if !ok {
				t.Fatalf("connection closed after %d acks", got)
			}
			got++
		case <-time.After(5 * time.Second):
			t.Fatalf("no ack for commit %d within 5 s (%d acks so far, %d dropped)", i+1, got, g.Stats().AcksDropped)
		}
	}
	if d := g.Stats().AcksDropped; d != 0 {
		t.Fatalf("%d acks dropped", d)
	}
}

// TestDroppedAcksAreCountedAndLoggedSparingly: every dropped ack is counted for
// /metrics, but an overloaded server that drops thousands logs one warning per
// interval, with the count, instead of a line for each.
func TestDroppedAcksAreCountedAndLoggedSparingly(t *testing.T) {
	var logged strings.Builder
	g := New(Config{Name: "t", Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	defer g.Close(context.Background())
	s := &session{g: g, name: "slow", ns: "default"}
	for i := 0; i < 1000; i++ {
		g.dropAck(s)
	}
	if n := g.Stats().AcksDropped; n != 1000 {
		t.Fatalf("AcksDropped = %d, want 1000", n)
	}
	if lines := strings.Count(logged.String(), "acks not sent"); lines != 1 || !strings.Contains(logged.String(), "dropped=1 ") {
		t.Fatalf("want one warning for the first drop, got %d:\n%s", lines, logged.String())
	}
	g.ackDropLog.last.Store(0) // as if the interval had passed
	g.dropAck(s)
	if lines := strings.Count(logged.String(), "acks not sent"); lines != 2 || !strings.Contains(logged.String(), "dropped=1000 ") {
		t.Fatalf("want a second warning counting the 999 drops since plus this one:\n%s", logged.String())
	}
}

// TestAgentThatDoesNotReadItsAcksIsClosed: an agent keeps an unacknowledged event in
// flight until it reconnects, and stops sending once it has a window of them. So when
// acks cannot be queued for an agent that does not read them, its session is closed (it
// reconnects and resends), and the drop is counted, rather than the ack lost silently.
func TestAgentThatDoesNotReadItsAcksIsClosed(t *testing.T) {
	// No ping during the test: its write could fail behind the blocked one.
	g := startGateway(t, Config{PingInterval: time.Hour, PingTimeout: time.Minute, SendQueue: 8, Hooks: Hooks{
		HandleEvent: func(context.Context, *events.Event, bool, Origin) error { return nil },
	}})
	conn := g.dialAcks(t, "deaf", "linux", true)
	defer conn.CloseNow()
	// Never read. Fill the socket's buffers with large requests until the writer blocks:
	// the queue stays full for half a second.
	cfg := &events.CheckConfig{Command: strings.Repeat("x", 64<<10)}
	cfg.Metadata.Name = "big"
	full := 0
	for i := 0; i < 5000 && full < 50; i++ {
		if g.Deliver("default", &CheckRequest{Config: cfg, Issued: int64(i)}, []string{"linux"}) == 0 {
			full++
			time.Sleep(10 * time.Millisecond)
		} else {
			full = 0
		}
	}
	if full < 50 {
		t.Fatal("5000 requests of 64 KiB were all written to an agent that reads nothing")
	}
	// Now every ack waits in the queue: more events than it holds close the session.
	start := time.Now()
	for i := 0; i < maxAckBacklog+50 && g.Connected("default", "deaf"); i++ {
		ev := &events.Event{ID: fmt.Sprintf("id-%04d", i), Check: &events.Check{}}
		ev.Check.Metadata.Name = "c"
		payload, _ := json.Marshal(ev)
		if conn.Write(context.Background(), websocket.MessageBinary, Encode(TypeEvent, payload)) != nil {
			break // closed
		}
	}
	for g.Connected("default", "deaf") {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("session still open 20 s after %d+ acks could not be queued: %+v", maxAckBacklog, g.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := g.Stats().AcksDropped; d < 1 {
		t.Fatalf("session closed but no ack counted as dropped")
	}
	t.Logf("closed %v after the first event, %d ack(s) dropped", time.Since(start).Round(time.Millisecond), g.Stats().AcksDropped)
}
