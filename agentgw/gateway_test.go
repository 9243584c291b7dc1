package agentgw

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
