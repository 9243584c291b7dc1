package agentgw

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/events"
)

// countingListener counts the writes to the connections it accepts: each is one system
// call on the socket.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// heldGateway is a gateway served as the node serves it: through Listener and
// ConnContext, with TLS when tls is set, counting the writes to its sockets.
type heldGateway struct {
	*Gateway
	url    string
	client *http.Client
	writes atomic.Int64
}

func startHeldGateway(t *testing.T, cfg Config, tls bool) *heldGateway {
	t.Helper()
	cfg.Name = "t"
	cfg.Hooks.Authenticate = func(context.Context, string, string) error { return nil }
	cfg.Hooks.NamespaceExists = func(context.Context, string) (bool, error) { return true, nil }
	if cfg.Hooks.HandleEvent == nil {
		cfg.Hooks.HandleEvent = func(context.Context, *events.Event, bool, Origin) error { return nil }
	}
	g := &heldGateway{Gateway: New(cfg)}
	g.SetReady(true)
	srv := httptest.NewUnstartedServer(g.Gateway)
	srv.Listener = Listener(countingListener{srv.Listener, &g.writes})
	srv.Config.ConnContext = ConnContext
	if tls {
		srv.StartTLS()
		g.url = "wss" + srv.URL[5:]
	} else {
		srv.Start()
		g.url = "ws" + srv.URL[4:]
	}
	g.client = srv.Client()
	t.Cleanup(func() {
		g.Close(context.Background())
		srv.Close()
	})
	return g
}

// dial connects an agent named name, subscribed to linux, that asks for acks.
func (g *heldGateway) dial(t *testing.T, name string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(context.Background(), g.url, &websocket.DialOptions{HTTPHeader: agentHeader(name, "linux", true), HTTPClient: g.client})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// agentFrames dials an agent that asks for acks and hands every frame it reads to the
// returned channel, which is closed with the error that ended the connection.
func (g *heldGateway) agentFrames(t *testing.T, name string) (*websocket.Conn, chan string, *error) {
	t.Helper()
	conn := g.dial(t, name)
	frames := make(chan string, 1024)
	var end error
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				end = err
				close(frames)
				return
			}
			frames <- string(b)
		}
	}()
	return conn, frames, &end
}

func sendEvent(t *testing.T, conn *websocket.Conn, id string) {
	t.Helper()
	ev := &events.Event{ID: id, Check: &events.Check{}}
	ev.Check.Metadata.Name = "c-" + id
	payload, _ := json.Marshal(ev)
	if err := conn.Write(context.Background(), websocket.MessageBinary, Encode(TypeEvent, payload)); err != nil {
		t.Fatal(err)
	}
}

// firstAcked sends e0 on conn, the first event of a quiet agent, and fails unless its
// ack is the next frame: an ack after a quiet spell does not wait for the delay.
func firstAcked(t *testing.T, conn *websocket.Conn, frames chan string) {
	t.Helper()
	sendEvent(t, conn, "e0")
	if f := next(t, frames); f != string(AckFrame("e0")) {
		t.Fatalf("first frame %q, want the ack of e0 at once", f)
	}
}

// request queues a check request named name running command to the agents subscribed
// to linux, reporting whether it was queued for one.
func (g *heldGateway) request(name, command string) bool {
	cfg := &events.CheckConfig{Command: command}
	cfg.Metadata.Name = name
	return g.Deliver("default", &CheckRequest{Config: cfg, Issued: 1}, []string{"linux"}) == 1
}

// next returns the next frame of an entity_config-free stream, failing after 10 s.
func next(t *testing.T, frames chan string) string {
	t.Helper()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatal("connection closed")
			}
			if typ, _, _ := Decode([]byte(f)); typ == TypeEntityConfig {
				continue
			}
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("no frame within 10 s")
		}
	}
}

func waitAccepted(t *testing.T, g *Gateway, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.Stats().EventsAccepted < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events accepted after 10 s", g.Stats().EventsAccepted, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAcksWaitAndGoOutTogether: with an ack delay, the first ack after a quiet spell goes
// out at once; acks that follow within the delay wait and then go out together, in one
// write to the socket; a check request does not wait, and takes the acks
// queued before it along. Over TLS as well, where each frame is a record of its own.
func TestAcksWaitAndGoOutTogether(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			// An hour: an ack that waits for the delay does not come during the test.
			g := startHeldGateway(t, Config{AckDelay: time.Hour}, tls)
			conn, frames, _ := g.agentFrames(t, "a1")
			defer conn.CloseNow()

			firstAcked(t, conn, frames)
			for i := 1; i <= 9; i++ {
				sendEvent(t, conn, fmt.Sprintf("e%d", i))
			}
			waitAccepted(t, g.Gateway, 10)
			select {
			case f := <-frames:
				t.Fatalf("frame %q came within the ack delay", f)
			case <-time.After(300 * time.Millisecond):
			}

			before := g.writes.Load()
			if !g.request("now", "true") {
				t.Fatal("check request not queued")
			}
			// One agent's events are processed side by side: their acks come in the
			// order they committed.
			got := map[string]bool{}
			for i := 1; i <= 9; i++ {
				got[next(t, frames)] = true
			}
			for i := 1; i <= 9; i++ {
				if !got[string(AckFrame(fmt.Sprintf("e%d", i)))] {
					t.Fatalf("no ack of e%d before the check request; got %v", i, got)
				}
			}
			if typ, _, _ := Decode([]byte(next(t, frames))); typ != TypeCheckRequest {
				t.Fatalf("after the acks came a %q, want the check request", typ)
			}
			if w := g.writes.Load() - before; w != 1 {
				t.Fatalf("9 acks and a check request took %d writes to the socket, want 1", w)
			}
		})
	}
}

// TestAcksWithoutDelay: with no delay, acks go out as their events commit, those queued
// while a write was under way together in the next write, every one of them.
func TestAcksWithoutDelay(t *testing.T) {
	release := make(chan struct{})
	g := startHeldGateway(t, Config{Hooks: Hooks{
		HandleEvent: func(ctx context.Context, ev *events.Event, keepalive bool, _ Origin) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}}, false)
	conn, frames, _ := g.agentFrames(t, "a1")
	defer conn.CloseNow()
	const n = 20
	for i := 0; i < n; i++ {
		sendEvent(t, conn, fmt.Sprintf("e%02d", i))
	}
	before := g.writes.Load()
	close(release) // every event commits at once
	got := map[string]bool{}
	for len(got) < n {
		got[next(t, frames)] = true
	}
	for i := 0; i < n; i++ {
		if !got[string(AckFrame(fmt.Sprintf("e%02d", i)))] {
			t.Fatalf("no ack for e%02d", i)
		}
	}
	// How many writes depends on how the workers and the writer interleave.
	t.Logf("%d acks committed together took %d writes", n, g.writes.Load()-before)
}

// TestServerGoingAwaySendsWaitingAcks: acks waiting for the delay when the server stops
// are sent before the going-away close, so the agent need not resend those events.
func TestServerGoingAwaySendsWaitingAcks(t *testing.T) {
	g := startHeldGateway(t, Config{AckDelay: time.Hour}, false)
	conn, frames, end := g.agentFrames(t, "a1")
	defer conn.CloseNow()
	firstAcked(t, conn, frames)
	sendEvent(t, conn, "e1")
	sendEvent(t, conn, "e2")
	waitAccepted(t, g.Gateway, 3)
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- g.Close(context.Background()) }()
	var acks []string
	for f := range frames {
		if typ, _, _ := Decode([]byte(f)); typ == TypeAck {
			acks = append(acks, f)
		}
	}
	if len(acks) != 2 || acks[0] == acks[1] || (acks[0] != string(AckFrame("e1")) && acks[0] != string(AckFrame("e2"))) ||
		(acks[1] != string(AckFrame("e1")) && acks[1] != string(AckFrame("e2"))) {
		t.Fatalf("acks before the close: %q, want those of e1 and e2", acks)
	}
	if st := websocket.CloseStatus(*end); st != websocket.StatusGoingAway {
		t.Fatalf("connection ended with %v, want a going-away close", *end)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waiting after 10 s")
	}
	t.Logf("closed in %v", time.Since(start).Round(time.Millisecond))
}

// TestRequestsAreNotCrowdedOutByWaitingAcks: acks waiting for the delay do not count
// against the send queue's limit for check requests.
func TestRequestsAreNotCrowdedOutByWaitingAcks(t *testing.T) {
	g := startHeldGateway(t, Config{AckDelay: time.Hour, SendQueue: 4}, false)
	conn, frames, _ := g.agentFrames(t, "a1")
	defer conn.CloseNow()
	sendEvent(t, conn, "e0")
	next(t, frames) // its ack, at once
	for i := 1; i <= 10; i++ {
		sendEvent(t, conn, fmt.Sprintf("e%d", i))
	}
	waitAccepted(t, g.Gateway, 11) // ten acks wait, more than SendQueue
	if !g.request("now", "true") {
		t.Fatalf("check request dropped behind 10 waiting acks: %+v", g.Stats())
	}
	for i := 0; i < 11; i++ {
		next(t, frames)
	}
}

// TestHeldWriteToASlowAgentKeepsPingTimeout: frames written together to an agent that
// does not read block in one write outside the WebSocket library's lock, so a ping
// meanwhile is gathered behind them instead of waiting for that write, where the
// library would close the connection after 5 s. The session lives until the ping
// timeout, as it does for a single blocked write, and recovers when the agent reads.
func TestHeldWriteToASlowAgentKeepsPingTimeout(t *testing.T) {
	g := startHeldGateway(t, Config{AckDelay: time.Hour, PingInterval: time.Second, PingTimeout: time.Minute}, false)
	conn := g.dial(t, "slow")
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 30)
	// Not reading. The first ack goes out at once; three more wait for the delay.
	for i := 0; i < 4; i++ {
		sendEvent(t, conn, fmt.Sprintf("e%d", i))
		waitAccepted(t, g.Gateway, int64(i+1))
	}
	// A request of 16 MiB, more than the socket's buffers hold, goes out at once with
	// the three acks, in one held write that blocks.
	if !g.request("big", strings.Repeat("x", 16<<20)) {
		t.Fatal("request not queued")
	}
	time.Sleep(8 * time.Second) // pings went out every second; the library's limit is 5 s
	if !g.Connected("default", "slow") {
		t.Fatal("session closed within 8 s behind a blocked write; the ping timeout is a minute")
	}
	// Reading now gets the acks and the request (and answers the pings) on a session
	// still open.
	var acks, requests int
	for acks < 4 || requests < 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, b, err := conn.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d acks and %d requests: %v", acks, requests, err)
		}
		switch typ, _, _ := Decode(b); typ {
		case TypeAck:
			acks++
		case TypeCheckRequest:
			requests++
		}
	}
	if !g.Connected("default", "slow") {
		t.Fatal("session closed")
	}
}
