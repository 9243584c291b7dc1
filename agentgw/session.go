package agentgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/events"
)

// maxInflight is how many events of one agent are processed at once. Events wait for
// their grouped commit; processing them one at a time would cap an agent at one event
// per commit round trip. Results of the same check are still serialised by the node.
const maxInflight = 32

// maxAckBacklog is how many acks may wait for an agent beyond its send queue: acks come
// as fast as its events commit, and an agent that reads them too slowly for this many
// is disconnected, so that it resends (see process). It must stay above the Picket
// agent's send window (agentgw/agent: sendWindow, 512), which bounds its acks waiting.
const maxAckBacklog = 1024

// maxKeptQueue bounds the queue a session keeps for reuse once written; a longer one is
// dropped, so that idle agents do not each keep the longest queue they ever had.
const maxKeptQueue = 64

// session is one connected agent. Its reader runs in the HTTP handler's goroutine. Sends
// go through a bounded queue drained by a writer goroutine that exists only while there
// is something to write, and a ping waits for its pong in a goroutine that exists only
// meanwhile, so an idle agent costs one goroutine, and a slow agent never blocks
// delivery to others.
type session struct {
	g    *Gateway
	conn *websocket.Conn
	// hc is conn's connection when the gateway's listener wrapped it (Listener): frames
	// queued together are then written together.
	hc       *heldConn
	ns, name string
	id       uint64 // Origin.Session
	subs     []string
	acks     bool
	// resends: the agent asked for marked resends (ResendHeader) and was granted them.
	resends bool

	wmu   sync.Mutex
	queue [][]byte
	// writing is set while a writer runs, inWrite how many frames it is writing;
	// urgentQueued and urgentInWrite count the urgent frames (all but acks) among the
	// queued and those being written: they have a limit of their own (acks may wait
	// for Config.AckDelay in numbers), and the writer sends the queue without waiting
	// while it holds one. wake tells a waiting writer that one was queued.
	writing                     bool
	inWrite                     int
	urgentQueued, urgentInWrite int
	wake                        chan struct{}
	writers                     sync.WaitGroup
	// lastAcks is when the writer last sent acks; only the writer uses it.
	lastAcks time.Time
	// closing is set when the session is to end: acks no longer wait.
	closing atomic.Bool

	inflight chan struct{}
	// seq numbers the frames handed to workers (only the reader uses it); order keeps
	// results of one check in that order.
	seq       uint64
	order     *frameOrder
	handlers  sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	replaced  atomic.Bool
	// slot spreads pings over the ping interval.
	slot int
	// pinging is set while a ping waits for its pong.
	pinging atomic.Bool
	// writeSince is when the write under way started (unix ns; 0: none): the ping loop
	// closes a session whose write has not finished within the ping timeout.
	writeSince atomic.Int64
}

func newSession(g *Gateway, conn *websocket.Conn, ns, name string, subs []string, acks bool) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{g: g, conn: conn, ns: ns, name: name, id: g.lastSession.Add(1), subs: subs, acks: acks,
		inflight: make(chan struct{}, maxInflight), order: newFrameOrder(), wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, slot: int(nameHash(name) % 1_000_003)}
}

func (s *session) origin() Origin { return Origin{Namespace: s.ns, Agent: s.name, Session: s.id} }

func nameHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// enqueue queues a frame without blocking; false when the session is closed or limit
// frames wait already: frames of any kind for an ack, urgent frames for an urgent one.
// An ack may wait for Config.AckDelay to go out with others; any other frame is urgent
// and goes out at once, with the acks queued.
func (s *session) enqueue(frame []byte, limit int, urgent bool) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	waiting := len(s.queue) + s.inWrite
	if urgent {
		waiting = s.urgentQueued + s.urgentInWrite
	}
	if s.ctx.Err() != nil || waiting >= limit {
		return false
	}
	s.queue = append(s.queue, frame)
	if urgent {
		if s.urgentQueued == 0 {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		s.urgentQueued++
	}
	if !s.writing {
		s.writing = true
		s.writers.Add(1)
		go s.drain()
	}
	return true
}

// drain writes queued frames until the queue is empty, then ends. It writes what is
// queued at once, in one system call when the connection allows (heldConn). Acks wait
// until Config.AckDelay has passed since acks were last sent, so that an agent sending
// events faster than that gets its acks several at a time; an agent sending slower
// gets each at once. Any other frame goes out at once, with the acks queued before it.
func (s *session) drain() {
	defer s.writers.Done()
	for {
		s.waitForAcks()
		s.wmu.Lock()
		if len(s.queue) == 0 || s.ctx.Err() != nil {
			s.writing = false
			s.queue, s.urgentQueued = nil, 0
			s.wmu.Unlock()
			return
		}
		batch, acks := s.queue, len(s.queue) > s.urgentQueued
		s.queue, s.inWrite = nil, len(batch)
		s.urgentInWrite, s.urgentQueued = s.urgentQueued, 0
		select {
		case <-s.wake: // for a frame in this batch
		default:
		}
		s.wmu.Unlock()
		s.write(batch)
		if acks {
			s.lastAcks = time.Now()
		}
		s.wmu.Lock()
		s.inWrite, s.urgentInWrite = 0, 0
		if s.queue == nil && cap(batch) <= maxKeptQueue {
			s.queue = batch[:0] // write cleared it
		}
		s.wmu.Unlock()
	}
}

// waitForAcks waits, when acks were last sent less than Config.AckDelay ago, for the
// rest of that time, or until an urgent frame is queued or the session ends.
func (s *session) waitForAcks() {
	delay := s.g.cfg.AckDelay
	if delay <= 0 || s.hc == nil || s.closing.Load() {
		return
	}
	wait := time.Until(s.lastAcks.Add(delay))
	if wait <= 0 {
		return
	}
	s.wmu.Lock()
	urgent := s.urgentQueued > 0
	s.wmu.Unlock()
	if urgent {
		return
	}
	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-s.wake:
	case <-s.ctx.Done():
	}
	t.Stop()
}

// write sends a batch of frames, in one system call when the connection allows.
func (s *session) write(batch [][]byte) {
	// No context: a cancellable one costs a registration per frame. A write that does
	// not finish (an agent that is connected but does not read) is found by the ping
	// loop, which closes the session and so ends the write.
	s.writeSince.Store(time.Now().UnixNano())
	held := s.hc != nil && len(batch) > 1
	if held {
		s.hc.hold()
	}
	var err error
	for i, frame := range batch {
		if err == nil {
			err = s.conn.Write(context.Background(), websocket.MessageBinary, frame)
		}
		batch[i] = nil
	}
	if held {
		if rerr := s.hc.release(); err == nil {
			err = rerr
		}
	}
	s.writeSince.Store(0)
	if err != nil {
		if s.closing.Load() {
			// close is under way (it waits for this writer in flush): end the session's
			// context so this writer stops, and let close finish.
			s.stop()
			return
		}
		s.close(websocket.StatusInternalError, "write failed")
	}
}

// ping sends a ping and waits for the pong in a goroutine of its own, at most one at a
// time, beside the writer. The pong comes back only after the agent's frames sent before
// it have been read, and a busy server reads an agent no faster than its events commit:
// waiting in the writer would hold every ack behind it for that long, until the ack
// queue overflowed.
func (s *session) ping() {
	if !s.pinging.CompareAndSwap(false, true) {
		return // the last one is still waiting for its pong
	}
	// As in enqueue: no goroutine is started once stop has run.
	s.wmu.Lock()
	if s.ctx.Err() != nil {
		s.wmu.Unlock()
		s.pinging.Store(false)
		return
	}
	s.writers.Add(1)
	s.wmu.Unlock()
	go func() {
		defer s.writers.Done()
		defer s.pinging.Store(false)
		ctx, cancel := context.WithTimeout(s.ctx, s.g.cfg.PingTimeout)
		err := s.conn.Ping(ctx)
		cancel()
		if err == nil || s.ctx.Err() != nil {
			return
		}
		if s.writeSince.Load() != 0 {
			// The ping could not be written (coder/websocket gives a control frame 5 s)
			// behind a data frame the agent is slow to take: the ping loop closes the
			// session if that write stays blocked for the ping timeout.
			return
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			// The ping could not be written: the connection is gone (the agent left), and
			// the reader ends the session.
			s.g.log.Debug("ping not sent; session closed", "agent", s.name, "err", err)
			s.close(websocket.StatusInternalError, "write failed")
			return
		}
		s.g.log.Info("agent did not answer ping; session closed", "agent", s.name, "timeout", s.g.cfg.PingTimeout)
		s.close(websocket.StatusPolicyViolation, "ping timeout")
	}()
}

// stop cancels the session's context under the writer's lock, so that no frame is
// queued, and no writer started, once it returns (enqueue checks the context under it).
func (s *session) stop() {
	s.wmu.Lock()
	s.cancel()
	s.wmu.Unlock()
}

// close ends the session with a close frame; safe to call more than once. A server going
// away first sends the acks queued, so that its agents need not resend those events.
func (s *session) close(code websocket.StatusCode, reason string) {
	s.closeOnce.Do(func() {
		if code == websocket.StatusGoingAway {
			s.flush(time.Second)
		}
		s.stop()
		// Close performs the close handshake with its own bounded wait.
		_ = s.conn.Close(code, reason)
	})
}

// flush has the writer send what is queued without waiting for Config.AckDelay, and
// waits until it has, at most for timeout (a write to an agent that does not read may
// not finish).
func (s *session) flush(timeout time.Duration) {
	s.closing.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	deadline := time.Now().Add(timeout)
	for {
		s.wmu.Lock()
		busy := s.writing
		s.wmu.Unlock()
		if !busy || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *session) run() {
	log := s.g.log.With("agent", s.name, "namespace", s.ns)
	defer s.g.unregister(s)
	defer s.writers.Wait()
	defer s.stop()
	// Events already read are finished (and acknowledged if possible) before the
	// session's goroutines stop.
	defer s.handlers.Wait()

	if connected := s.g.cfg.Hooks.Connected; connected != nil {
		ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
		err := connected(ctx, s.origin())
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				log.Warn("agent session not started; the agent will connect again", "err", err)
			}
			s.close(websocket.StatusTryAgainLater, "server busy; connect again")
			return
		}
	}
	s.sendEntityConfig()
	for {
		typ, frame, err := s.readFrame()
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrMessageTooBig):
				log.Warn("agent frame over the read limit; session closed", "limit", s.g.cfg.ReadLimit)
			case websocket.CloseStatus(err) == websocket.StatusNormalClosure, websocket.CloseStatus(err) == websocket.StatusGoingAway:
				log.Debug("agent disconnected", "reason", err)
			case s.ctx.Err() != nil:
			default:
				log.Info("agent session ended", "err", err)
			}
			s.close(websocket.StatusInternalError, "read failed")
			return
		}
		read := time.Now()
		s.g.framesIn.Add(1)
		if typ != websocket.MessageBinary && typ != websocket.MessageText {
			releaseFrame(frame)
			continue
		}
		s.handleFrame(log, frame, read)
	}
}

// framePool holds the buffers frames are read into. A frame stays in its pooled buffer
// until a worker has decoded it (the decoder copies what it keeps), so reading costs no
// allocation per frame, where io.ReadAll (websocket.Conn.Read) would grow a new buffer
// from 512 bytes for every frame.
var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledFrame bounds the buffers kept for reuse; a rare large frame's is dropped.
const maxPooledFrame = 64 << 10

func releaseFrame(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledFrame {
		framePool.Put(buf)
	}
}

// readFrame reads the next data message into a pooled buffer, which the caller
// releases. It reads without a context: the read ends when the session closes the
// connection, and a cancellable context would cost a registration per frame.
func (s *session) readFrame() (websocket.MessageType, *bytes.Buffer, error) {
	typ, r, err := s.conn.Reader(context.Background())
	if err != nil {
		return 0, nil, err
	}
	buf := framePool.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		releaseFrame(buf)
		return 0, nil, err
	}
	return typ, buf, nil
}

func (s *session) handleFrame(log *slog.Logger, frame *bytes.Buffer, read time.Time) {
	// Everything past reading the frame runs on the gateway's workers: the reader's stack
	// stays shallow (it is the one goroutine every idle agent keeps), one agent's events
	// are processed side by side while they wait for their grouped commit, and the
	// workers' stacks, grown once by JSON and etcd calls, are reused rather than grown
	// again for every frame.
	select {
	case s.inflight <- struct{}{}:
	case <-s.ctx.Done():
		releaseFrame(frame)
		return
	}
	s.handlers.Add(1)
	// A sequence number is used only by a frame handed over: the ones after it wait for
	// its turn (frameOrder).
	select {
	case s.g.jobs <- job{s: s, log: log, frame: frame, read: read, seq: s.seq}:
		s.seq++
	case <-s.ctx.Done():
		releaseFrame(frame)
		<-s.inflight
		s.handlers.Done()
	}
}

// job is one frame waiting for a gateway worker, read at read.
type job struct {
	s     *session
	log   *slog.Logger
	frame *bytes.Buffer
	read  time.Time
	seq   uint64
}

func (j job) run() {
	defer j.s.handlers.Done()
	defer func() { <-j.s.inflight }()
	ev, msgType, keepalive, ok := j.s.decode(j.log, j.frame.Bytes())
	releaseFrame(j.frame)
	var key frameKey
	if ok {
		key = keyOf(ev, keepalive)
	}
	wait, done := j.s.order.enter(j.seq, key)
	if wait != nil {
		<-wait
	}
	if ok {
		j.s.process(j.log, ev, msgType, keepalive, j.read)
	}
	j.s.order.leave(key, done)
}

// decode checks a frame and decodes its event; false (logged and counted) when the
// frame is dropped. Nothing it returns refers to frame.
func (s *session) decode(log *slog.Logger, frame []byte) (ev *events.Event, msgType string, keepalive, ok bool) {
	msgType, payload, err := Decode(frame)
	if err != nil {
		s.g.malformed.Add(1)
		log.Warn("malformed frame dropped", "err", err, "size", len(frame))
		return nil, "", false, false
	}
	switch msgType {
	case TypeKeepalive:
		keepalive = true
	case TypeEvent, TypeResentEvent:
	default:
		s.g.malformed.Add(1)
		log.Warn("frame of unknown type dropped", "type", msgType)
		return nil, "", false, false
	}
	ev = &events.Event{}
	// UnmarshalJSON directly: json.Unmarshal would scan the whole payload once more
	// before handing it over.
	if err := ev.UnmarshalJSON(payload); err != nil {
		s.g.malformed.Add(1)
		log.Warn("frame payload is not an event; dropped", "type", msgType, "err", err)
		return nil, "", false, false
	}
	if ev.Entity == nil {
		ev.Entity = &events.Entity{}
	}
	if ev.Entity.Metadata.Name == "" {
		ev.Entity.Metadata.Name = s.name
	}
	// An agent acts only in its own namespace, whatever the payload says.
	ev.Entity.Metadata.Namespace = s.ns
	ev.Metadata.Namespace = s.ns
	if !events.ValidName(ev.Entity.Metadata.Name) || (ev.Check != nil && ((ev.Check.Metadata.Name != "" && !events.ValidName(ev.Check.Metadata.Name)) ||
		(ev.Check.ProxyEntityName != "" && !events.ValidName(ev.Check.ProxyEntityName)))) {
		s.g.malformed.Add(1)
		log.Warn("event with an invalid entity or check name dropped", "entity", ev.Entity.Metadata.Name)
		return nil, "", false, false
	}
	if keepalive && ev.Entity.Metadata.Name != s.name {
		s.g.malformed.Add(1)
		log.Warn("keepalive for another entity dropped", "entity", ev.Entity.Metadata.Name)
		return nil, "", false, false
	}
	return ev, msgType, keepalive, true
}

// process persists one event through the node and acknowledges it.
func (s *session) process(log *slog.Logger, ev *events.Event, msgType string, keepalive bool, read time.Time) {
	// An event already read is finished even when its session ends meanwhile (agent
	// gone, replaced, server stopping): only the gateway's close deadline cancels it.
	from := s.origin()
	from.Resent = s.resends && msgType == TypeResentEvent
	if err := s.g.cfg.Hooks.HandleEvent(s.g.workCtx, ev, keepalive, from); err != nil {
		s.g.eventsFailed.Add(1)
		if s.g.workCtx.Err() == nil {
			log.Error("event not accepted", "type", msgType, "err", err)
		}
		return
	}
	s.g.eventsOK.Add(1)
	if observe := s.g.cfg.ObserveCommit; observe != nil {
		observe(time.Since(read))
	}
	if s.acks && ev.ID != "" {
		// Acks have room beyond the request queue, more than a Picket agent's send window
		// (512 unacknowledged events), so only a client that reads its acks more slowly
		// than that reaches the limit. A Picket agent keeps an unacknowledged event in
		// flight until it reconnects, so a dropped ack must end the session: the agent
		// reconnects and resends what was not acknowledged.
		if !s.enqueue(AckFrame(ev.ID), s.g.cfg.SendQueue+maxAckBacklog, false) && s.ctx.Err() == nil {
			s.g.dropAck(s)
			// Not here: the close handshake waits for an agent that is not reading.
			go s.close(websocket.StatusTryAgainLater, "acks not read; reconnect to resend unacknowledged events")
		}
	}
}

func (s *session) sendEntityConfig() {
	var ent *events.Entity
	if s.g.cfg.Hooks.EntityConfig != nil {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		e, err := s.g.cfg.Hooks.EntityConfig(ctx, s.ns, s.name)
		cancel()
		if err != nil {
			s.g.log.Warn("read entity config", "agent", s.name, "err", err)
		}
		ent = e
	}
	if ent == nil {
		ent = &events.Entity{EntityClass: events.EntityAgent, Subscriptions: s.subs}
		ent.Metadata.Name, ent.Metadata.Namespace = s.name, s.ns
	}
	payload, err := json.Marshal(ent)
	if err != nil {
		return
	}
	s.enqueue(Encode(TypeEntityConfig, payload), s.g.cfg.SendQueue, true)
}
