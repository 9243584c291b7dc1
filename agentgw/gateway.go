package agentgw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/events"
)

// Errors the Authenticate hook returns to choose the handshake's status code.
var (
	// ErrBadCredentials answers 401.
	ErrBadCredentials = errors.New("bad credentials")
	// ErrForbidden answers 403: the user may not create events.
	ErrForbidden = errors.New("not allowed to create events")
)

// Hooks connect the gateway to its node. The gateway knows nothing of etcd.
type Hooks struct {
	// Authenticate checks an agent's credentials.
	Authenticate func(ctx context.Context, user, password string) error
	// NamespaceExists reports whether an agent may connect into ns.
	NamespaceExists func(ctx context.Context, ns string) (bool, error)
	// EntityConfig returns the stored entity of an agent, nil when there is none yet.
	EntityConfig func(ctx context.Context, ns, name string) (*events.Entity, error)
	// Connected, when set, is told of a new session before its frames are read; an
	// error closes the session (the agent tries again).
	Connected func(ctx context.Context, from Origin) error
	// HandleEvent processes a keepalive or check result and returns once it is persisted.
	HandleEvent func(ctx context.Context, ev *events.Event, keepalive bool, from Origin) error
	// Disconnected is told when a session ends (not when it is replaced), after its
	// last event was handled.
	Disconnected func(from Origin)
}

// Origin names the session an event came through; for HandleEvent, Resent also says how
// the event came.
type Origin struct {
	Namespace, Agent string
	// Session is unique among the gateway's sessions.
	Session uint64
	// Resent marks an event its agent sent before and never saw acknowledged
	// (TypeResentEvent): it may have been stored already, by any server.
	Resent bool
}

// Config configures a Gateway.
type Config struct {
	// Name is sent to agents in the Backend-ID header.
	Name   string
	Logger *slog.Logger
	Hooks  Hooks
	// PingInterval and PingTimeout detect dead agents (defaults 30 s and 45 s).
	PingInterval, PingTimeout time.Duration
	// SendQueue is how many check requests (and entity configs) may wait for a slow
	// agent before requests are dropped (default 64); acks have room for
	// SendQueue+1024 frames of any kind.
	SendQueue int
	// ReadLimit is the largest frame accepted (default MaxFrameSize).
	ReadLimit int64
	// Workers process frames of all sessions (default 512); each waits for its event's
	// grouped commit, so their number bounds throughput per commit latency.
	Workers int
	// ObserveCommit, when set, is told how long each persisted keepalive or event took
	// from the end of reading its frame to its commit (when its ack is sent).
	ObserveCommit func(time.Duration)
	// AckDelay is how long after writing to an agent the gateway waits before writing
	// it more acks, so that an agent sending events faster than that gets several acks
	// in one write instead of one write each (0: acks go out at once). Other frames
	// never wait. It takes effect on connections accepted through Listener.
	AckDelay time.Duration
	// MaxSessions caps connected agents (0: no cap). Past it, handshakes get 429 so
	// agents back off and try another server, instead of the process running out of
	// file descriptors and failing as a whole.
	MaxSessions int
}

// Stats are the gateway's counters, for /metrics.
type Stats struct {
	Sessions        int64
	Connects        int64
	Rejected        int64
	FramesIn        int64
	Malformed       int64
	EventsAccepted  int64
	EventsFailed    int64
	RequestsSent    int64
	RequestsDropped int64
	// AcksDropped counts acks not sent because the agent's send queue was full; the
	// event is stored, the session is closed, and the agent resends the event after it
	// reconnects, which the server recognises.
	AcksDropped int64
}

// Gateway accepts agent WebSocket sessions and delivers check requests to them.
type Gateway struct {
	cfg   Config
	log   *slog.Logger
	ready atomic.Bool

	lastSession atomic.Uint64

	mu       sync.Mutex
	sessions map[string]*session                         // ns/name
	bySub    map[string]map[string]map[*session]struct{} // ns → subscription → sessions
	closed   bool
	wg       sync.WaitGroup
	stop     chan struct{}
	pinger   sync.WaitGroup
	jobs     chan job
	workers  sync.WaitGroup
	// workStop ends the workers, after every session has finished its frames.
	workStop    chan struct{}
	stopWorkers sync.Once
	// workCtx is what events are processed under; Close cancels it only when its
	// deadline passes, so events already read are persisted during a normal stop.
	workCtx    context.Context
	workCancel context.CancelFunc

	connects, rejected, framesIn, malformed   atomic.Int64
	eventsOK, eventsFailed, sent, sendDropped atomic.Int64
	acksDropped                               atomic.Int64
	// The warnings for dropped acks and check requests, at most one per dropLogEvery.
	ackDropLog, requestDropLog dropLog
}

// New returns a gateway that answers 503 until SetReady(true).
func New(cfg Config) *Gateway {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.PingTimeout == 0 {
		cfg.PingTimeout = 45 * time.Second
	}
	if cfg.SendQueue == 0 {
		cfg.SendQueue = 64
	}
	if cfg.ReadLimit == 0 {
		cfg.ReadLimit = MaxFrameSize
	}
	if cfg.Workers == 0 {
		cfg.Workers = 512
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, sessions: map[string]*session{}, bySub: map[string]map[string]map[*session]struct{}{},
		stop: make(chan struct{}), jobs: make(chan job, cfg.Workers), workStop: make(chan struct{})}
	g.workCtx, g.workCancel = context.WithCancel(context.Background())
	g.pinger.Add(1)
	go g.pingLoop()
	for i := 0; i < cfg.Workers; i++ {
		g.workers.Add(1)
		go func() {
			defer g.workers.Done()
			for {
				select {
				case j := <-g.jobs:
					j.run()
				case <-g.workStop:
					return
				}
			}
		}()
	}
	return g
}

// pingLoop pings every session once per PingInterval, a slice of them each second, so
// dead agents are found without a timer goroutine per session.
func (g *Gateway) pingLoop() {
	defer g.pinger.Done()
	slots := int(g.cfg.PingInterval / time.Second)
	if slots < 1 {
		slots = 1
	}
	step := g.cfg.PingInterval / time.Duration(slots)
	t := time.NewTicker(step)
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		g.mu.Lock()
		var due, stuck []*session
		for _, s := range g.sessions {
			// A write blocked this long means the agent reads nothing: its pings cannot
			// get past that write (and their failures are not counted against it).
			if ws := s.writeSince.Load(); ws != 0 && time.Duration(now-ws) > g.cfg.PingTimeout && s.ctx.Err() == nil {
				stuck = append(stuck, s)
			} else if s.slot%slots == tick%slots {
				due = append(due, s)
			}
		}
		g.mu.Unlock()
		for _, s := range due {
			s.ping()
		}
		for _, s := range stuck {
			g.log.Info("agent reads nothing: a write to it is blocked; session closed", "agent", s.name, "namespace", s.ns, "timeout", g.cfg.PingTimeout)
			go s.close(websocket.StatusPolicyViolation, "write timeout")
		}
	}
}

// SetReady lets agents in (or, with false, answers 503).
func (g *Gateway) SetReady(ready bool) { g.ready.Store(ready) }

// Stats returns the current counters.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	n := int64(len(g.sessions))
	g.mu.Unlock()
	return Stats{
		Sessions: n, Connects: g.connects.Load(), Rejected: g.rejected.Load(), FramesIn: g.framesIn.Load(),
		Malformed: g.malformed.Load(), EventsAccepted: g.eventsOK.Load(), EventsFailed: g.eventsFailed.Load(),
		RequestsSent: g.sent.Load(), RequestsDropped: g.sendDropped.Load(), AcksDropped: g.acksDropped.Load(),
	}
}

func (g *Gateway) reject(w http.ResponseWriter, status int, format string, a ...any) {
	g.rejected.Add(1)
	http.Error(w, fmt.Sprintf(format, a...), status)
}

// ServeHTTP performs the handshake of REFERENCE.md §1 and runs the session.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.ready.Load() {
		g.reject(w, http.StatusServiceUnavailable, "backend is not ready; retry")
		return
	}
	name := r.Header.Get(HeaderAgentName)
	ns := r.Header.Get(HeaderNamespace)
	if ns == "" {
		ns = "default"
	}
	if name == "" {
		g.reject(w, http.StatusBadRequest, "missing %s header", HeaderAgentName)
		return
	}
	if !events.ValidName(name) || !events.ValidName(ns) {
		g.reject(w, http.StatusBadRequest, "agent name %q or namespace %q has characters other than letters, digits, _ . - :", name, ns)
		return
	}
	// The cap is checked before credentials, so refused handshakes cost no bcrypt.
	if max := g.cfg.MaxSessions; max > 0 {
		g.mu.Lock()
		full := len(g.sessions) >= max
		g.mu.Unlock()
		if full {
			g.log.Warn("agent rejected: session limit reached", "agent", name, "limit", max)
			g.reject(w, http.StatusTooManyRequests, "backend holds its maximum of %d agent sessions; retry later or connect to another backend", max)
			return
		}
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		g.reject(w, http.StatusUnauthorized, "missing agent credentials (Authorization: Basic)")
		return
	}
	ctx := r.Context()
	if err := g.cfg.Hooks.Authenticate(ctx, user, pass); err != nil {
		switch {
		case errors.Is(err, ErrBadCredentials):
			g.log.Info("agent rejected: bad credentials", "agent", name, "user", user, "remote", r.RemoteAddr)
			g.reject(w, http.StatusUnauthorized, "bad agent credentials for user %s", user)
		case errors.Is(err, ErrForbidden):
			g.log.Info("agent rejected: user may not create events", "agent", name, "user", user)
			g.reject(w, http.StatusForbidden, "user %s may not create events", user)
		default:
			g.log.Warn("agent authentication failed", "agent", name, "err", err)
			g.reject(w, http.StatusServiceUnavailable, "cannot check credentials now; retry")
		}
		return
	}
	exists, err := g.cfg.Hooks.NamespaceExists(ctx, ns)
	if err != nil {
		g.reject(w, http.StatusServiceUnavailable, "cannot check namespace now; retry")
		return
	}
	if !exists {
		g.log.Info("agent rejected: unknown namespace", "agent", name, "namespace", ns)
		g.reject(w, http.StatusNotFound, "namespace %q does not exist", ns)
		return
	}
	subs := events.WithEntitySubscription(strings.Split(r.Header.Get(HeaderSubscriptions), ","), name)
	acks := r.Header.Get(AckHeader) == "1"
	resends := acks && r.Header.Get(ResendHeader) == "1"

	w.Header().Set(HeaderBackendID, g.cfg.Name)
	w.Header().Set("Accept", "application/json")
	w.Header().Set("Content-Type", "application/json")
	if acks {
		w.Header().Set(AckHeader, "1")
	}
	if resends {
		w.Header().Set(ResendHeader, "1")
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		g.log.Info("agent handshake failed", "agent", name, "err", err)
		return
	}
	conn.SetReadLimit(g.cfg.ReadLimit)
	s := newSession(g, conn, ns, name, subs, acks)
	s.resends = resends
	s.hc = heldConnOf(r.Context())
	if !g.register(s) {
		_ = conn.Close(websocket.StatusGoingAway, "backend shutting down")
		return
	}
	g.connects.Add(1)
	g.log.Debug("agent connected", "agent", name, "namespace", ns, "subscriptions", subs, "acks", acks, "remote", r.RemoteAddr)
	// The session runs on a fresh goroutine and the handler returns: the connection is
	// hijacked, and the handler's stack, grown by the handshake's etcd calls, would stay
	// that size for the whole life of an idle agent. r is not used after Accept.
	go s.run()
}

func (g *Gateway) register(s *session) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	key := s.ns + "/" + s.name
	old := g.sessions[key]
	if old != nil {
		g.unindex(old)
	}
	g.sessions[key] = s
	subs := g.bySub[s.ns]
	if subs == nil {
		subs = map[string]map[*session]struct{}{}
		g.bySub[s.ns] = subs
	}
	for _, sub := range s.subs {
		if subs[sub] == nil {
			subs[sub] = map[*session]struct{}{}
		}
		subs[sub][s] = struct{}{}
	}
	g.wg.Add(1)
	g.mu.Unlock()
	if old != nil {
		old.replaced.Store(true)
		old.close(websocket.StatusPolicyViolation, "replaced by a newer session of this agent")
		g.log.Info("agent reconnected; old session replaced", "agent", s.name, "namespace", s.ns)
	}
	return true
}

// unindex removes s from the subscription index; g.mu must be held.
func (g *Gateway) unindex(s *session) {
	subs := g.bySub[s.ns]
	for _, sub := range s.subs {
		delete(subs[sub], s)
		if len(subs[sub]) == 0 {
			delete(subs, sub)
		}
	}
}

func (g *Gateway) unregister(s *session) {
	g.mu.Lock()
	key := s.ns + "/" + s.name
	current := g.sessions[key] == s
	if current {
		delete(g.sessions, key)
		g.unindex(s)
	}
	g.mu.Unlock()
	g.wg.Done()
	if current && !s.replaced.Load() && g.cfg.Hooks.Disconnected != nil {
		g.cfg.Hooks.Disconnected(s.origin())
	}
}

// Deliver sends a check request to every local session of namespace ns subscribed to
// any of subs, once per session, and returns how many got it. A session whose send
// queue is full misses the request; the drop is counted and logged.
func (g *Gateway) Deliver(ns string, req *CheckRequest, subs []string) int {
	payload, err := json.Marshal(req)
	if err != nil {
		g.log.Error("encode check request", "err", err)
		return 0
	}
	frame := Encode(TypeCheckRequest, payload)
	g.mu.Lock()
	targets := map[*session]struct{}{}
	for _, sub := range subs {
		for s := range g.bySub[ns][sub] {
			targets[s] = struct{}{}
		}
	}
	g.mu.Unlock()
	n := 0
	for s := range targets {
		if s.enqueue(frame, g.cfg.SendQueue, true) {
			n++
		} else {
			g.sendDropped.Add(1)
			if dropped, ok := g.requestDropLog.due(); ok {
				g.log.Warn("agent send queue full; check requests dropped (see picket_check_requests_dropped_total)",
					"dropped", dropped, "last_agent", s.name, "namespace", ns, "last_check", req.Config.Metadata.Name)
			}
		}
	}
	g.sent.Add(int64(n))
	return n
}

// dropLogEvery is how often at most a kind of drop is logged: an overloaded server can
// drop thousands of frames a second, and a line for each would add to the load.
const dropLogEvery = 10 * time.Second

// dropLog rate-limits one warning to one per dropLogEvery.
type dropLog struct {
	last, since atomic.Int64
}

// due counts one drop and reports whether to log now, with how many drops (this one
// included) the warning covers.
func (d *dropLog) due() (n int64, ok bool) {
	n = d.since.Add(1)
	now := time.Now().UnixNano()
	last := d.last.Load()
	if now-last < int64(dropLogEvery) || !d.last.CompareAndSwap(last, now) {
		return 0, false
	}
	d.since.Add(-n)
	return n, true
}

// dropAck counts an ack that did not fit s's send queue and logs, at most once per
// dropLogEvery, how many were dropped since the last warning.
func (g *Gateway) dropAck(s *session) {
	g.acksDropped.Add(1)
	if dropped, ok := g.ackDropLog.due(); ok {
		g.log.Warn("acks not sent: agents did not read them fast enough; their sessions are closed, and they resend the events after reconnecting (see picket_agent_acks_dropped_total)",
			"dropped", dropped, "last_agent", s.name, "namespace", s.ns)
	}
}

// Current reports whether o is the gateway's current session of its agent.
func (g *Gateway) Current(o Origin) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.sessions[o.Namespace+"/"+o.Agent]
	return s != nil && s.id == o.Session
}

// Connected reports whether an agent has a session on this gateway.
func (g *Gateway) Connected(ns, name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[ns+"/"+name] != nil
}

// Close stops accepting agents and closes every session with a going-away code, waiting
// for them until ctx ends.
func (g *Gateway) Close(ctx context.Context) error {
	g.ready.Store(false)
	g.mu.Lock()
	if !g.closed {
		close(g.stop)
	}
	g.closed = true
	all := make([]*session, 0, len(g.sessions))
	for _, s := range g.sessions {
		all = append(all, s)
	}
	g.mu.Unlock()
	for _, s := range all {
		go s.close(websocket.StatusGoingAway, "backend shutting down")
	}
	g.pinger.Wait()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		g.workCancel()
		for _, s := range all {
			_ = s.conn.CloseNow()
		}
		<-done
		err = fmt.Errorf("agent sessions did not close in time: %w", ctx.Err())
	}
	g.stopWorkers.Do(func() { close(g.workStop) })
	g.workers.Wait()
	g.workCancel()
	return err
}
