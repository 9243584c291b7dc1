package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/events"
)

// frame is one message the fake backend received.
type frame struct {
	typ string
	ev  *events.Event
}

// fakeBackend is a minimal gateway: it records handshakes and frames, and lets a test
// send frames to the connected agent.
type fakeBackend struct {
	t      *testing.T
	srv    *httptest.Server
	status int  // non-zero: refuse handshakes with this status
	acks   bool // grant acknowledgements
	// resends: grant marked resends (with acks).
	resends bool
	noEC    bool // do not send entity_config on connect

	mu       sync.Mutex
	headers  []http.Header
	conn     *websocket.Conn
	attempts int

	frames chan frame
	conns  chan *websocket.Conn
	// closes receives the close status of every session the agent ended.
	closes chan websocket.StatusCode
}

func newFakeBackend(t *testing.T, acks bool) *fakeBackend {
	f := &fakeBackend{t: t, acks: acks, frames: make(chan frame, 1000), conns: make(chan *websocket.Conn, 10), closes: make(chan websocket.StatusCode, 10)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBackend) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") }

func (f *fakeBackend) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.attempts++
	f.headers = append(f.headers, r.Header.Clone())
	status := f.status
	f.mu.Unlock()
	if status != 0 {
		http.Error(w, "refused", status)
		return
	}
	if f.acks && r.Header.Get(agentgw.AckHeader) == "1" {
		w.Header().Set(agentgw.AckHeader, "1")
		if f.resends && r.Header.Get(agentgw.ResendHeader) == "1" {
			w.Header().Set(agentgw.ResendHeader, "1")
		}
	}
	w.Header().Set(agentgw.HeaderBackendID, "fake")
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(agentgw.MaxFrameSize)
	ctx := context.Background()
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
	f.conns <- c
	if !f.noEC {
		ent := &events.Entity{}
		ent.Metadata.Name = r.Header.Get(agentgw.HeaderAgentName)
		ent.Metadata.Labels = map[string]string{ManagedByLabel: ManagedByAgent}
		b, _ := json.Marshal(ent)
		_ = c.Write(ctx, websocket.MessageBinary, agentgw.Encode(agentgw.TypeEntityConfig, b))
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			f.closes <- websocket.CloseStatus(err)
			return
		}
		typ, payload, err := agentgw.Decode(data)
		if err != nil {
			f.t.Errorf("agent sent a malformed frame: %v", err)
			continue
		}
		ev := &events.Event{}
		if err := json.Unmarshal(payload, ev); err != nil {
			f.t.Errorf("agent sent a %s frame that is not an event: %v", typ, err)
			continue
		}
		f.frames <- frame{typ: typ, ev: ev}
	}
}

func (f *fakeBackend) send(typ string, v any) {
	f.t.Helper()
	f.mu.Lock()
	c := f.conn
	f.mu.Unlock()
	b, err := json.Marshal(v)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := c.Write(context.Background(), websocket.MessageBinary, agentgw.Encode(typ, b)); err != nil {
		f.t.Fatalf("send %s: %v", typ, err)
	}
}

// next waits for the next frame of type typ, skipping others.
func (f *fakeBackend) next(typ string) *events.Event {
	f.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case fr := <-f.frames:
			if fr.typ == typ {
				return fr.ev
			}
		case <-timeout:
			f.t.Fatalf("no %s frame within 20s", typ)
			return nil
		}
	}
}

func (f *fakeBackend) lastHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.headers[len(f.headers)-1]
}

// startAgent runs an agent against urls until the test ends.
func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "host-1"
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	cfg.APIHost, cfg.APIPort = "127.0.0.1", freePort(t)
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	}
	a := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("agent did not stop within 15s")
		}
	})
	return a
}

func checkRequest(name, command string, issued int64) agentgw.CheckRequest {
	cfg := &events.CheckConfig{Command: command, Interval: 10}
	cfg.Metadata.Name = name
	cfg.Metadata.Namespace = "default"
	return agentgw.CheckRequest{Config: cfg, Issued: issued}
}

// eventually polls cond until it holds, failing the test after 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&syncWriter{w: w}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(fmt.Stringer).String()
}
