package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/events"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestHandshakeHeadersAndKeepalive(t *testing.T) {
	fb := newFakeBackend(t, true)
	a := startAgent(t, Config{
		Name: "host-1", Namespace: "ops", User: "agent", Password: "s3cret",
		Subscriptions: []string{"linux", "web", "linux"},
		Labels:        map[string]string{"region": "eu", "api_key": "hunter2"},
		Annotations:   map[string]string{"Password": "x", "note": "n"},
		BackendURLs:   []string{fb.url()},
		Deregister:    true, DeregistrationHandler: "dereg",
		KeepaliveHandlers: []string{"slack"},
		System:            events.System{Hostname: "host-1.example", OS: "linux"},
	})
	ka := fb.next(agentgw.TypeKeepalive)
	h := fb.lastHeader()
	for key, want := range map[string]string{
		agentgw.HeaderAgentName:     "host-1",
		agentgw.HeaderNamespace:     "ops",
		agentgw.HeaderSubscriptions: "linux,web,entity:host-1",
		agentgw.HeaderUser:          "agent",
		"Accept":                    "application/json",
		agentgw.AckHeader:           "1",
	} {
		if got := h.Get(key); got != want {
			t.Errorf("header %s = %q, want %q", key, got, want)
		}
	}
	req := &http.Request{Header: h}
	if u, p, ok := req.BasicAuth(); !ok || u != "agent" || p != "s3cret" {
		t.Errorf("basic auth = %q %q %v", u, p, ok)
	}

	e := ka.Entity
	if e == nil || e.Metadata.Name != "host-1" || e.Metadata.Namespace != "ops" || e.EntityClass != "agent" || e.System.Hostname != "host-1.example" {
		t.Fatalf("keepalive entity = %+v", e)
	}
	if !slices.Equal(e.Subscriptions, []string{"linux", "web", "entity:host-1"}) {
		t.Errorf("subscriptions = %v", e.Subscriptions)
	}
	if e.Metadata.Labels["api_key"] != Redacted || e.Metadata.Labels["region"] != "eu" || e.Metadata.Labels[ManagedByLabel] != ManagedByAgent {
		t.Errorf("labels = %v", e.Metadata.Labels)
	}
	if e.Metadata.Annotations["Password"] != Redacted || e.Metadata.Annotations["note"] != "n" {
		t.Errorf("annotations = %v", e.Metadata.Annotations)
	}
	if !e.Deregister || e.Deregistration.Handler != "dereg" || !slices.Equal(e.KeepaliveHandlers, []string{"slack"}) {
		t.Errorf("deregistration = %v %q, keepalive handlers %v", e.Deregister, e.Deregistration.Handler, e.KeepaliveHandlers)
	}
	c := ka.Check
	if c == nil || c.Metadata.Name != "keepalive" || c.Interval != 20 || c.Timeout != 120 || c.Ttl != 0 {
		t.Fatalf("keepalive check = %+v", c)
	}
	eventually(t, "connected", func() bool { return a.Connected() == fb.url() })
}

func TestCheckRequestRunsAndAckRemoves(t *testing.T) {
	for _, acks := range []bool{true, false} {
		name := "plain Sensu backend"
		if acks {
			name = "acknowledging backend"
		}
		t.Run(name, func(t *testing.T) {
			fb := newFakeBackend(t, acks)
			a := startAgent(t, Config{BackendURLs: []string{fb.url()}})
			fb.next(agentgw.TypeKeepalive)
			req := checkRequest("disk", `echo "DISK OK"; echo "$GREETING"; exit 1`, 1000)
			req.Config.EnvVars = []string{"GREETING=hello"}
			fb.send(agentgw.TypeCheckRequest, req)
			ev := fb.next(agentgw.TypeEvent)
			if ev.ID == "" || ev.Check.Metadata.Name != "disk" || ev.Check.Status != 1 || ev.Check.Output != "DISK OK\nhello\n" || ev.Check.Issued != 1000 || ev.Check.Executed == 0 {
				t.Fatalf("event = id %q check %+v", ev.ID, ev.Check)
			}
			if ev.Entity == nil || ev.Entity.Metadata.Name != "host-1" {
				t.Fatalf("event entity = %+v", ev.Entity)
			}
			if acks {
				if got := a.queue.IDs(); !slices.Equal(got, []string{ev.ID}) {
					t.Fatalf("queue before the ack = %v, want [%s]", got, ev.ID)
				}
				fb.send(agentgw.TypeAck, agentgw.Ack{ID: ev.ID})
			}
			eventually(t, "the queue to empty", func() bool { return a.queue.Len() == 0 })
		})
	}
}

// An event not acknowledged comes again on the next session: marked as a resend when the
// backend takes them (Picket's), as a plain event when not (one of an older version).
// Events the agent writes for the first time are never marked.
func TestUnackedEventsResentAfterReconnect(t *testing.T) {
	for _, resends := range []bool{true, false} {
		t.Run(fmt.Sprintf("resends=%v", resends), func(t *testing.T) {
			fb := newFakeBackend(t, true)
			fb.resends = resends
			a := startAgent(t, Config{BackendURLs: []string{fb.url()}})
			fb.next(agentgw.TypeKeepalive)
			fb.send(agentgw.TypeCheckRequest, checkRequest("one", "echo 1", 1))
			first := fb.next(agentgw.TypeEvent)
			fb.send(agentgw.TypeCheckRequest, checkRequest("two", "echo 2", 1))
			second := fb.next(agentgw.TypeEvent)
			fb.send(agentgw.TypeAck, agentgw.Ack{ID: second.ID})
			eventually(t, "the ack", func() bool { return a.queue.Len() == 1 })

			// The backend dies without acking the first: it comes again on the next session.
			c := <-fb.conns
			_ = c.CloseNow()
			fb.next(agentgw.TypeKeepalive)
			resentType := agentgw.TypeEvent
			if resends {
				resentType = agentgw.TypeResentEvent
			}
			again := fb.next(resentType)
			if again.ID != first.ID {
				t.Fatalf("resent %s, want %s", again.ID, first.ID)
			}
			fb.send(agentgw.TypeAck, agentgw.Ack{ID: first.ID})
			eventually(t, "the queue to empty", func() bool { return a.queue.Len() == 0 })

			// A new result on this session is a plain event.
			fb.send(agentgw.TypeCheckRequest, checkRequest("three", "echo 3", 2))
			fr := <-fb.frames
			for fr.typ == agentgw.TypeKeepalive {
				fr = <-fb.frames
			}
			if fr.typ != agentgw.TypeEvent || fr.ev.Check.Metadata.Name != "three" {
				t.Fatalf("after the resend: a %s frame of %s, want an event of three", fr.typ, fr.ev.Check.Metadata.Name)
			}
			fb.send(agentgw.TypeAck, agentgw.Ack{ID: fr.ev.ID}) // nothing left for the agent to wait for when it stops
		})
	}
}

func TestRequestsIgnoredUntilEntityConfig(t *testing.T) {
	fb := newFakeBackend(t, false)
	fb.noEC = true
	a := startAgent(t, Config{BackendURLs: []string{fb.url()}})
	fb.next(agentgw.TypeKeepalive)
	fb.send(agentgw.TypeCheckRequest, checkRequest("early", "echo early", 5))
	fb.send(agentgw.TypeEntityConfig, events.Entity{Metadata: events.ObjectMeta{Name: "host-1"}})
	fb.send(agentgw.TypeCheckRequest, checkRequest("late", "echo late", 5))
	ev := fb.next(agentgw.TypeEvent)
	if ev.Check.Metadata.Name != "late" {
		t.Fatalf("ran %s, want only late", ev.Check.Metadata.Name)
	}
	// Frames are handled in order, so the early request was decided before the late one.
	a.checksMu.Lock()
	_, ran := a.lastRun["early"]
	a.checksMu.Unlock()
	if ran {
		t.Fatal("a request before entity_config was run")
	}
}

func TestHandshakeRefusedKeepsRetrying(t *testing.T) {
	for _, tt := range []struct {
		status int
		log    string
	}{
		{http.StatusUnauthorized, `check user \"agent\" and password`},
		{http.StatusForbidden, `may not create events in namespace \"default\"`},
		{http.StatusNotFound, `namespace \"default\" does not exist on the backend`},
		{http.StatusTooManyRequests, "backing off for longer"},
		{http.StatusServiceUnavailable, "not ready yet"},
	} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			fb := newFakeBackend(t, true)
			fb.status = tt.status
			log := &syncWriter{w: &strings.Builder{}}
			a := startAgent(t, Config{BackendURLs: []string{fb.url()}, Logger: newTestLogger(log)})
			eventually(t, "three attempts", func() bool {
				fb.mu.Lock()
				defer fb.mu.Unlock()
				return fb.attempts >= 3
			})
			if a.Connected() != "" {
				t.Fatal("connected despite a refused handshake")
			}
			if got := log.String(); !strings.Contains(got, tt.log) {
				t.Fatalf("log does not explain the refusal (want %q):\n%s", tt.log, got)
			}
		})
	}
}

func TestFailoverToSecondURL(t *testing.T) {
	dead := "ws://127.0.0.1:" + itoa(freePort(t))
	fb := newFakeBackend(t, true)
	a := startAgent(t, Config{BackendURLs: []string{dead, fb.url()}})
	fb.next(agentgw.TypeKeepalive)
	eventually(t, "connected to the live backend", func() bool { return a.Connected() == fb.url() })
}

func TestEntityConfigApplied(t *testing.T) {
	fb := newFakeBackend(t, false)
	fb.noEC = true
	startAgent(t, Config{BackendURLs: []string{fb.url()}, Labels: map[string]string{"secret": "s", "a": "1"}, Subscriptions: []string{"x"}})
	fb.next(agentgw.TypeKeepalive)
	ent := events.Entity{Subscriptions: []string{"db"}, System: events.System{Hostname: "h"}}
	ent.Metadata.Name = "host-1"
	ent.Metadata.Labels = map[string]string{"b": "2", "secret": Redacted}
	fb.send(agentgw.TypeEntityConfig, ent)
	fb.send(agentgw.TypeCheckRequest, checkRequest("c", "true", 1))
	ev := fb.next(agentgw.TypeEvent)
	e := ev.Entity
	if !slices.Equal(e.Subscriptions, []string{"db", "entity:host-1"}) {
		t.Errorf("subscriptions = %v", e.Subscriptions)
	}
	if e.Metadata.Labels["b"] != "2" || e.Metadata.Labels["a"] != "" || e.Metadata.Labels["secret"] != Redacted || e.Metadata.Labels[ManagedByLabel] != "" {
		t.Errorf("labels = %v", e.Metadata.Labels)
	}
}

func TestShutdownClosesNormally(t *testing.T) {
	fb := newFakeBackend(t, true)
	a := New(Config{Name: "host-1", BackendURLs: []string{fb.url()}, CacheDir: t.TempDir(), DisableAPI: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	fb.next(agentgw.TypeKeepalive)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := <-fb.closes; got != websocket.StatusNormalClosure {
		t.Fatalf("close status %v, want %v", got, websocket.StatusNormalClosure)
	}
}

func TestMaxSessionLengthReconnects(t *testing.T) {
	fb := newFakeBackend(t, true)
	startAgent(t, Config{BackendURLs: []string{fb.url()}, MaxSessionLength: 300 * time.Millisecond})
	fb.next(agentgw.TypeKeepalive)
	if got := <-fb.closes; got != websocket.StatusNormalClosure {
		t.Fatalf("close status %v, want a normal closure", got)
	}
	fb.next(agentgw.TypeKeepalive) // a new session
}

func TestRunLeavesNoGoroutines(t *testing.T) {
	fb := newFakeBackend(t, true)
	chk := events.CheckConfig{Command: "sleep 30", Interval: 1}
	chk.Metadata.Name = "slow"
	before := runtime.NumGoroutine()
	a := New(Config{Name: "host-1", BackendURLs: []string{fb.url()}, CacheDir: t.TempDir(),
		APIHost: "127.0.0.1", APIPort: freePort(t), Checks: []events.CheckConfig{chk}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	fb.next(agentgw.TypeKeepalive)
	eventually(t, "the slow check to start", func() bool {
		a.checksMu.Lock()
		defer a.checksMu.Unlock()
		return len(a.running) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-fb.closes // the backend's side of the session is over too
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An agent that stops waits for the acks of the events it sent before it closes its
// session, so that the next session need not send them again; a backend that does not
// ack within drainTimeout does not hold it up longer.
func TestShutdownWaitsForAcks(t *testing.T) {
	for _, acked := range []bool{true, false} {
		t.Run(fmt.Sprintf("acked=%v", acked), func(t *testing.T) {
			fb := newFakeBackend(t, true)
			cfg := Config{Name: "host-1", CacheDir: t.TempDir(), BackendURLs: []string{fb.url()},
				RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}
			cfg.APIHost, cfg.APIPort = "127.0.0.1", freePort(t)
			a := New(cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer cancel()
			fb.next(agentgw.TypeKeepalive)
			fb.send(agentgw.TypeCheckRequest, checkRequest("one", "echo 1", 1))
			ev := fb.next(agentgw.TypeEvent)

			stopped := time.Now()
			cancel()
			if acked {
				time.Sleep(300 * time.Millisecond) // the ack comes late, but within the wait
				fb.send(agentgw.TypeAck, agentgw.Ack{ID: ev.ID})
			}
			select {
			case st := <-fb.closes:
				if st != websocket.StatusNormalClosure {
					t.Fatalf("session closed with %v, want a normal closure", st)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the agent did not close its session")
			}
			took := time.Since(stopped)
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			if acked && a.queue.Len() != 0 {
				t.Fatalf("closed after %v with %d events queued; want the ack waited for and the queue empty", took, a.queue.Len())
			}
			if !acked && (a.queue.Len() != 1 || took < drainTimeout) {
				t.Fatalf("closed after %v with %d events queued; want the wait of %v and the event kept", took, a.queue.Len(), drainTimeout)
			}
		})
	}
}
