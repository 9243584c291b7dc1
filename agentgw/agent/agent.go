package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/events"
)

const (
	// requestGrace is how long after connecting the agent waits for entity_config before
	// it runs check requests anyway.
	requestGrace = 10 * time.Second
	// stableSession is how long a session must last for the backoff to start over.
	stableSession = 10 * time.Second
	// sendWindow bounds the events sent and not yet acknowledged.
	sendWindow = 512
	// closeTimeout bounds the close handshake on shutdown.
	closeTimeout = 3 * time.Second
	// drainTimeout bounds how long a session that ends on purpose (shutdown, maximum
	// session length) waits for the acks of the events it sent, so that they need not
	// be sent again.
	drainTimeout = 2 * time.Second
)

// Agent is one running agent. Create it with New and start it with Run.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	entity *entityState
	queue  *Queue
	client *http.Client

	// connected is the URL of the backend of the current session, "" when disconnected.
	connected atomic.Pointer[string]

	checksMu sync.Mutex
	running  map[string]bool  // checks running now
	lastRun  map[string]int64 // issued time of the last run of each check
	checksWG sync.WaitGroup

	// runCtx is Run's context, which checks run under.
	runCtx context.Context

	ready chan struct{}

	// apiAddr receives the local API's address once it listens (for tests).
	apiAddr chan string
}

// New returns an agent for cfg; zero fields take the defaults.
func New(cfg Config) *Agent {
	cfg.setDefaults()
	a := &Agent{
		cfg:     cfg,
		log:     cfg.Logger,
		running: map[string]bool{},
		lastRun: map[string]int64{},
		apiAddr: make(chan string, 1),
		ready:   make(chan struct{}),
	}
	a.entity = newEntityState(&a.cfg)
	return a
}

// Ready is closed once the agent has opened its queue, serves its local API and starts
// connecting: the moment a service manager may count it as started.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run runs the agent until ctx ends: it opens the queue, starts the local API and the
// standalone checks, and keeps a session to a backend. It returns nil after a clean
// shutdown and an error when it cannot start (queue directory, API address, TLS files).
func (a *Agent) Run(ctx context.Context) error {
	q, err := OpenQueue(filepath.Join(a.cfg.CacheDir, "queue"), a.cfg.QueueMaxEvents, a.cfg.QueueMaxBytes, a.log.With("component", "queue"))
	if err != nil {
		return err
	}
	a.queue = q
	if n := q.Len(); n > 0 {
		a.log.Info("events from an earlier run wait in the queue and will be sent", "events", n)
	}
	client, err := a.httpClient()
	if err != nil {
		return err
	}
	a.client = client

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.runCtx = ctx
	var wg sync.WaitGroup
	// Checks are started by the goroutines of wg, so those are waited for first.
	defer a.checksWG.Wait()
	defer wg.Wait()
	defer cancel()

	if !a.cfg.DisableAPI {
		srv, served, err := a.startAPI()
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), closeTimeout)
			defer c()
			if srv.Shutdown(sctx) != nil {
				_ = srv.Close()
			}
			<-served
		}()
	}
	for _, c := range a.cfg.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runStandalone(ctx, c)
		}()
	}
	close(a.ready)
	a.connectLoop(ctx)
	return nil
}

func (a *Agent) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tc := &tls.Config{InsecureSkipVerify: a.cfg.InsecureSkipTLSVerify, MinVersion: tls.VersionTLS12}
	if a.cfg.TrustedCAFile != "" {
		pem, err := os.ReadFile(a.cfg.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("trusted-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("trusted-ca-file %s: no PEM certificates in it", a.cfg.TrustedCAFile)
		}
		tc.RootCAs = pool
	}
	if a.cfg.CertFile != "" || a.cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.CertFile, a.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert-file/key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr}, nil
}

// Connected returns the URL of the backend the agent is connected to, "" when none.
func (a *Agent) Connected() string {
	if p := a.connected.Load(); p != nil {
		return *p
	}
	return ""
}

// handshakeError is a refused WebSocket handshake.
type handshakeError struct {
	status int
	err    error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// connectLoop keeps one session at a time until ctx ends.
func (a *Agent) connectLoop(ctx context.Context) {
	urls := newRotation(a.cfg.BackendURLs, nil)
	bo := newBackoff(a.cfg.RetryMin, a.cfg.RetryMax, a.cfg.RetryMultiplier)
	for ctx.Err() == nil {
		url := urls.Next()
		start := time.Now()
		established, err := a.session(ctx, url)
		if ctx.Err() != nil {
			return
		}
		if established && time.Since(start) > stableSession {
			bo.Reset()
		}
		var he *handshakeError
		if errors.As(err, &he) && he.status == http.StatusTooManyRequests {
			bo.Throttle()
		}
		delay := bo.Next()
		a.logSessionEnd(url, err, established, delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (a *Agent) logSessionEnd(url string, err error, established bool, delay time.Duration) {
	retry := delay.Round(time.Millisecond).String()
	var he *handshakeError
	if errors.As(err, &he) {
		msg := ""
		switch he.status {
		case http.StatusUnauthorized:
			msg = fmt.Sprintf("backend refused the agent's credentials (HTTP 401): check user %q and password, and that the user exists on the backend", a.cfg.User)
		case http.StatusForbidden:
			msg = fmt.Sprintf("user %q may not create events in namespace %q (HTTP 403): give it the agent role", a.cfg.User, a.cfg.Namespace)
		case http.StatusNotFound:
			msg = fmt.Sprintf("namespace %q does not exist on the backend (HTTP 404): create it or fix the agent's namespace", a.cfg.Namespace)
		case http.StatusTooManyRequests:
			a.log.Warn("backend is overloaded (HTTP 429); backing off for longer", "backend", url, "retry_in", retry)
			return
		case http.StatusServiceUnavailable:
			a.log.Warn("backend is not ready yet (HTTP 503)", "backend", url, "retry_in", retry)
			return
		}
		if msg != "" {
			a.log.Error(msg, "backend", url, "err", err, "retry_in", retry)
			return
		}
	}
	if established {
		a.log.Warn("disconnected from backend", "backend", url, "err", err, "retry_in", retry)
		return
	}
	a.log.Warn("cannot connect to backend", "backend", url, "err", err, "retry_in", retry)
}

func (a *Agent) headers() http.Header {
	h := http.Header{}
	h.Set(agentgw.HeaderAgentName, a.cfg.Name)
	h.Set(agentgw.HeaderNamespace, a.cfg.Namespace)
	h.Set(agentgw.HeaderSubscriptions, strings.Join(a.entity.Subscriptions(), ","))
	h.Set(agentgw.HeaderUser, a.cfg.User)
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.cfg.User+":"+a.cfg.Password)))
	h.Set("Accept", "application/json")
	h.Set(agentgw.AckHeader, "1")
	h.Set(agentgw.ResendHeader, "1")
	return h
}

// conn is one established session.
type conn struct {
	ws   *websocket.Conn
	url  string
	acks bool
	// resends: the backend takes events sent before as TypeResentEvent.
	resends bool
	// draining stops sendLoop from sending more: the session is about to close and
	// waits for the acks of what it sent (drainAcks).
	draining atomic.Bool
	// lastSent is the sequence number of the last event sendLoop wrote on this conn.
	lastSent atomic.Uint64
	ready    chan struct{} // closed on entity_config or after requestGrace
	once     sync.Once
	// firstKeepalive is closed once the first keepalive is written: events wait for it,
	// so the backend knows the entity before its events.
	firstKeepalive chan struct{}
	kaOnce         sync.Once
}

func (c *conn) markReady() { c.once.Do(func() { close(c.ready) }) }

func (c *conn) keepaliveSent() { c.kaOnce.Do(func() { close(c.firstKeepalive) }) }

func (c *conn) isReady() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// session dials url and serves the session until it ends. established reports whether
// the handshake succeeded.
func (a *Agent) session(ctx context.Context, url string) (established bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, a.cfg.HandshakeTimeout)
	ws, resp, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: a.client, HTTPHeader: a.headers()})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			msg := fmt.Sprintf("handshake refused: HTTP %d", resp.StatusCode)
			if resp.Body != nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
				if s := strings.TrimSpace(string(b)); s != "" {
					msg += ": " + s
				}
			}
			return false, &handshakeError{status: resp.StatusCode, err: errors.New(msg)}
		}
		return false, err
	}
	ws.SetReadLimit(agentgw.MaxFrameSize)
	c := &conn{ws: ws, url: url, acks: resp.Header.Get(agentgw.AckHeader) == "1", ready: make(chan struct{}), firstKeepalive: make(chan struct{})}
	c.resends = c.acks && resp.Header.Get(agentgw.ResendHeader) == "1"
	a.log.Info("connected to backend", "backend", url, "backend_id", resp.Header.Get(agentgw.HeaderBackendID), "acks", c.acks, "queued", a.queue.Len())

	// The session's goroutines get a context of their own, not ctx: coder/websocket tears
	// the connection down when the context of a Read or Write ends, and on shutdown the
	// close handshake must come first.
	sctx, scancel := context.WithCancelCause(context.Background())
	defer scancel(nil)
	var wg sync.WaitGroup
	run := func(f func(context.Context, *conn) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(sctx, c); err != nil {
				scancel(err)
			}
		}()
	}

	a.connected.Store(&url)
	defer a.connected.Store(nil)

	run(a.readLoop)
	run(a.pingLoop)
	run(a.keepaliveLoop)
	run(a.sendLoop)
	grace := time.AfterFunc(requestGrace, c.markReady)
	defer grace.Stop()
	var maxLen <-chan time.Time
	if l := sessionLength(a.cfg.MaxSessionLength, rand.Float64); l > 0 {
		t := time.NewTimer(l)
		defer t.Stop()
		maxLen = t.C
	}

	select {
	case <-ctx.Done():
		a.drainAcks(sctx, c)
		a.closeConn(ws, websocket.StatusNormalClosure, "agent shutting down")
		err = nil
	case <-sctx.Done():
		err = context.Cause(sctx)
		_ = ws.CloseNow()
	case <-maxLen:
		err = errors.New("max-session-length reached; reconnecting")
		a.drainAcks(sctx, c)
		a.closeConn(ws, websocket.StatusNormalClosure, "max session length reached")
	}
	scancel(err)
	wg.Wait()
	return true, err
}

// drainAcks stops sending events on c and waits, at most drainTimeout, until the events
// sent on it are acknowledged or the session ends: a session closed on purpose leaves
// nothing for the next one to send again.
func (a *Agent) drainAcks(sctx context.Context, c *conn) {
	if !c.acks {
		return
	}
	c.draining.Store(true)
	deadline := time.NewTimer(drainTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.queue.inflight(c.lastSent.Load()) > 0 {
		select {
		case <-sctx.Done():
			return
		case <-deadline.C:
			a.log.Info("closing the session with events not yet acknowledged; they are sent again on the next one",
				"events", a.queue.inflight(c.lastSent.Load()))
			return
		case <-tick.C:
		}
	}
}

// closeConn closes with a close handshake, bounded by closeTimeout.
func (a *Agent) closeConn(ws *websocket.Conn, code websocket.StatusCode, reason string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ws.Close(code, reason)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout):
		_ = ws.CloseNow()
		<-done
	}
}

func (a *Agent) write(ctx context.Context, c *conn, typ string, payload []byte) error {
	// The session's context, never a short one: an expiring context closes the conn.
	return c.ws.Write(ctx, websocket.MessageBinary, agentgw.Encode(typ, payload))
}

func (a *Agent) readLoop(ctx context.Context, c *conn) error {
	for {
		_, frame, err := c.ws.Read(ctx)
		if err != nil {
			if s := websocket.CloseStatus(err); s != -1 {
				return fmt.Errorf("backend closed the session: %w", err)
			}
			return fmt.Errorf("read: %w", err)
		}
		typ, payload, err := agentgw.Decode(frame)
		if err != nil {
			a.log.Warn("malformed frame from backend dropped", "err", err)
			continue
		}
		switch typ {
		case agentgw.TypeAck:
			var ack agentgw.Ack
			if err := json.Unmarshal(payload, &ack); err != nil || ack.ID == "" {
				a.log.Warn("malformed ack from backend dropped", "err", err)
				continue
			}
			a.queue.Remove(ack.ID)
		case agentgw.TypeEntityConfig:
			var e events.Entity
			if err := json.Unmarshal(payload, &e); err != nil {
				a.log.Warn("malformed entity_config from backend dropped", "err", err)
				continue
			}
			if a.entity.Apply(&e) {
				a.log.Info("entity configuration from the backend applied", "subscriptions", a.entity.Subscriptions())
			}
			c.markReady()
		case agentgw.TypeCheckRequest:
			var req agentgw.CheckRequest
			if err := json.Unmarshal(payload, &req); err != nil || req.Config == nil {
				a.log.Warn("malformed check_request from backend dropped", "err", err)
				continue
			}
			if !c.isReady() {
				a.log.Debug("check request ignored: waiting for entity_config", "check", req.Config.Metadata.Name)
				continue
			}
			a.handleRequest(&req)
		default:
			a.log.Debug("frame of unknown type ignored", "type", typ)
		}
	}
}

func (a *Agent) pingLoop(ctx context.Context, c *conn) error {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// The read loop answers the pong; a ping that times out closes the conn, which is
		// what a dead backend deserves.
		pctx, cancel := context.WithTimeout(ctx, a.cfg.HeartbeatTimeout)
		err := c.ws.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("backend did not answer a ping within %s: %w", a.cfg.HeartbeatTimeout, err)
		}
	}
}

// keepaliveLoop sends a keepalive at once, then every keepalive interval.
func (a *Agent) keepaliveLoop(ctx context.Context, c *conn) error {
	t := time.NewTicker(a.cfg.KeepaliveInterval)
	defer t.Stop()
	for {
		if err := a.sendKeepalive(ctx, c); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.keepaliveSent()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// keepaliveEvent is the keepalive the agent sends: its entity and the keepalive check.
func (a *Agent) keepaliveEvent() *events.Event {
	chk := events.NewCheck(events.CheckConfig{
		Interval: int64(a.cfg.KeepaliveInterval / time.Second),
		Timeout:  int64(a.cfg.KeepaliveWarningTimeout / time.Second),
		Ttl:      int64(a.cfg.KeepaliveCriticalTimeout / time.Second),
		Handlers: a.cfg.KeepaliveHandlers,
	})
	chk.Metadata.Name = "keepalive"
	chk.Metadata.Namespace = a.cfg.Namespace
	now := time.Now().Unix()
	chk.Executed, chk.Issued = now, now
	ev := &events.Event{Timestamp: now, Entity: a.entity.Entity(), Check: chk}
	ev.Metadata.Namespace = a.cfg.Namespace
	return ev
}

func (a *Agent) sendKeepalive(ctx context.Context, c *conn) error {
	b, err := json.Marshal(a.keepaliveEvent())
	if err != nil {
		return err
	}
	if err := a.write(ctx, c, agentgw.TypeKeepalive, b); err != nil {
		return fmt.Errorf("send keepalive: %w", err)
	}
	return nil
}

// sendLoop sends queued events in order. With acks, an event stays queued until its ack
// arrives and at most sendWindow events are in flight; without, it is removed once
// written. An event written before (on an earlier connection, or before the agent
// restarted) goes out as a resend when the backend takes them: it may be stored already.
func (a *Agent) sendLoop(ctx context.Context, c *conn) error {
	select {
	case <-ctx.Done():
		return nil
	case <-c.firstKeepalive:
	}
	var last uint64
	for {
		if c.draining.Load() {
			<-ctx.Done() // the session is closing: nothing more is sent on it
			return nil
		}
		if c.acks && a.queue.inflight(last) >= sendWindow {
			if !a.waitQueue(ctx) {
				return nil
			}
			continue
		}
		seq, id, payload, ok := a.queue.next(last)
		if !ok {
			if !a.waitQueue(ctx) {
				return nil
			}
			continue
		}
		typ := agentgw.TypeEvent
		if c.resends && a.queue.wasSent(seq) {
			typ = agentgw.TypeResentEvent
		}
		// lastSent before draining is looked at, and drainAcks the other way round: one
		// of the two sees the other, so drainAcks waits for every event written.
		c.lastSent.Store(seq)
		if c.draining.Load() {
			c.lastSent.Store(last)
			<-ctx.Done()
			return nil
		}
		// Marked before the write: a write that fails may still have reached the backend.
		a.queue.markSent(seq)
		if err := a.write(ctx, c, typ, payload); err != nil {
			return fmt.Errorf("send event: %w", err)
		}
		last = seq
		if !c.acks {
			a.queue.Remove(id)
		}
	}
}

func (a *Agent) waitQueue(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-a.queue.changed:
		return true
	}
}

// enqueue gives ev a new id and stores it durably for sending.
func (a *Agent) enqueue(ev *events.Event) error {
	ev.ID = newID()
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if len(b)+len(agentgw.TypeEvent)+1 > agentgw.MaxFrameSize {
		return fmt.Errorf("event is %d bytes, more than the %d a frame may hold", len(b), agentgw.MaxFrameSize)
	}
	return a.queue.Push(ev.ID, b)
}
