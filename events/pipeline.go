package events

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons the pipeline drops an event, in Observer.Dropped.
const (
	DropQueueFull     = "queue_full"
	DropPipeQueueFull = "pipe_queue_full"
	DropClosed        = "closed"
)

// Observer receives what the pipeline does, for metrics. Every field is optional.
type Observer struct {
	// Dropped is called for each event (or, for DropPipeQueueFull, each handler run) the
	// pipeline gave up on, with the reason.
	Dropped func(reason string)
	// Processed is called once per event that went through the filters, with how long it
	// waited in the queue.
	Processed func(queued time.Duration)
	// Filtered is called when a filter removes an event on its way to a handler.
	Filtered func(filter string)
	// FilterError is called when a filter fails; the event continues.
	FilterError func(filter string)
	// Mutated is called for each mutator run, with OutcomeOK or OutcomeError.
	Mutated func(mutator, outcome string)
	// Handled is called for each handler run with its type, outcome and duration.
	Handled func(handlerType, outcome string, d time.Duration)
}

// PipelineConfig configures a Pipeline. Zero values take the defaults.
type PipelineConfig struct {
	// Definitions are the handlers, filters and mutators; required.
	Definitions *Definitions
	// Workers filter events and run in-process work (built-in and javascript mutators,
	// tcp and udp handlers); default 4.
	Workers int
	// QueueSize bounds the events waiting for a worker; default 10,000.
	QueueSize int
	// MaxProcesses bounds the pipe handlers and pipe mutators running at once; default 16.
	MaxProcesses int
	// ProcessQueueSize bounds the handler runs waiting for a process slot; default 1,000.
	ProcessQueueSize int
	Logger           *slog.Logger
	Observer         Observer
}

// PipelineStats is a snapshot of a Pipeline's queues.
type PipelineStats struct {
	// Queued is how many events wait for a worker, ProcessQueued how many handler runs
	// wait for a process slot, and Processes how many processes run.
	Queued, ProcessQueued, Processes int
	// Dropped counts everything dropped since the start.
	Dropped int64
}

// Pipeline runs stored events through filters, mutators and handlers: Event → Filter →
// Mutator → Handler. Submit never blocks: events wait in a bounded queue for a fixed pool
// of workers, and handler runs that need a process (pipe handlers, pipe mutators) in a
// second bounded queue for a fixed number of process slots, so a slow or hung handler
// delays only its own kind of work and never the caller. What does not fit is dropped,
// counted and logged. Events are read, never changed: callers may share them.
type Pipeline struct {
	cfg   PipelineConfig
	defs  *Definitions
	log   *slog.Logger
	obs   Observer
	queue chan queued
	procQ chan procJob

	mu       sync.RWMutex
	closed   bool
	procOnce sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	procWG sync.WaitGroup

	running atomic.Int64
	dropped atomic.Int64
	// lastDropLog and dropsSinceLog rate-limit the drop warning to one per dropLogEvery.
	lastDropLog   atomic.Int64
	dropsSinceLog atomic.Int64
	// handlerWarned rate-limits the warning about an event's handlers (a set loop, a
	// missing handler) to one per namespace and problem per handlerWarnEvery.
	handlerWarnMu sync.Mutex
	handlerWarned map[string]time.Time
}

const handlerWarnEvery = time.Minute

const dropLogEvery = 10 * time.Second

type queued struct {
	ev *Event
	at time.Time
}

// procJob is one handler run that needs a process.
type procJob struct {
	h   *Handler
	ev  *Event
	md  *mutatorDef
	enc func() ([]byte, error)
}

// NewPipeline starts a pipeline's workers; Close stops them.
func NewPipeline(cfg PipelineConfig) *Pipeline {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10_000
	}
	if cfg.MaxProcesses <= 0 {
		cfg.MaxProcesses = 16
	}
	if cfg.ProcessQueueSize <= 0 {
		cfg.ProcessQueueSize = 1_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Definitions == nil {
		cfg.Definitions = NewDefinitions()
	}
	p := &Pipeline{
		cfg: cfg, defs: cfg.Definitions, log: cfg.Logger, obs: cfg.Observer,
		queue: make(chan queued, cfg.QueueSize), procQ: make(chan procJob, cfg.ProcessQueueSize),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for i := 0; i < cfg.Workers; i++ {
		p.wg.Add(1)
		go p.worker()
	}
	for i := 0; i < cfg.MaxProcesses; i++ {
		p.procWG.Add(1)
		go p.processRunner()
	}
	return p
}

// Submit queues a stored event for its handlers and returns at once. It reports false
// when the event was dropped (queue full, or the pipeline closed); the drop is counted and
// logged.
func (p *Pipeline) Submit(ev *Event) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		p.drop(DropClosed, ev)
		return false
	}
	select {
	case p.queue <- queued{ev: ev, at: time.Now()}:
		return true
	default:
		p.drop(DropQueueFull, ev)
		return false
	}
}

// Stats returns the current queue lengths and the drop count.
func (p *Pipeline) Stats() PipelineStats {
	return PipelineStats{
		Queued: len(p.queue), ProcessQueued: len(p.procQ),
		Processes: int(p.running.Load()), Dropped: p.dropped.Load(),
	}
}

// Close stops taking events and waits for the queued ones to be handled until ctx ends;
// then it kills the processes still running and drops what is left. It is idempotent.
func (p *Pipeline) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		p.closeProcQueue()
		p.procWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.cancel()
		return nil
	case <-ctx.Done():
		p.cancel() // kills running processes; workers drop the rest
		<-done
		return ctx.Err()
	}
}

func (p *Pipeline) closeProcQueue() { p.procOnce.Do(func() { close(p.procQ) }) }

// drop counts a dropped event and logs, at most once per dropLogEvery, how many were
// dropped since the last warning.
func (p *Pipeline) drop(reason string, ev *Event) {
	p.dropped.Add(1)
	if f := p.obs.Dropped; f != nil {
		f(reason)
	}
	n := p.dropsSinceLog.Add(1)
	now := time.Now().UnixNano()
	last := p.lastDropLog.Load()
	if now-last < int64(dropLogEvery) || !p.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	p.dropsSinceLog.Add(-n)
	p.log.Warn("event pipeline is full; dropping events (see picket_pipeline_dropped_total)",
		"reason", reason, "dropped", n, "event", storeNameOf(ev),
		"queued", len(p.queue), "process_queued", len(p.procQ), "processes", p.running.Load())
}

func storeNameOf(ev *Event) string {
	if ev == nil {
		return ""
	}
	return namespaceOf(ev) + "/" + ev.StoreName()
}

func (p *Pipeline) worker() {
	defer p.wg.Done()
	for q := range p.queue {
		if p.ctx.Err() != nil {
			p.drop(DropClosed, q.ev)
			continue
		}
		if f := p.obs.Processed; f != nil {
			f(time.Since(q.at))
		}
		p.process(q.ev)
	}
}

func (p *Pipeline) processRunner() {
	defer p.procWG.Done()
	for j := range p.procQ {
		if p.ctx.Err() != nil {
			p.drop(DropClosed, j.ev)
			continue
		}
		p.running.Add(1)
		p.handle(j.h, j.ev, j.md, j.enc)
		p.running.Add(-1)
	}
}

// HandlerNames lists the handlers an event goes to: its check's handlers and, when it
// carries metrics, the metrics' handlers, each once.
func HandlerNames(ev *Event) []string {
	var names []string
	if ev.Check != nil {
		names = append(names, ev.Check.Handlers...)
	}
	if ev.Metrics != nil {
		for _, h := range ev.Metrics.Handlers {
			if !slices.Contains(names, h) {
				names = append(names, h)
			}
		}
	}
	return names
}

// maxSetDepth bounds how deeply set handlers may nest, as in Sensu.
const maxSetDepth = 3

// ExpandHandlers resolves handler names into the handlers to run, replacing each set
// handler by its members, each handler once. Names that do not exist, sets nested deeper
// than three levels and sets that contain themselves (directly or through other sets) are
// skipped and reported in the error; the other handlers still run.
func (p *Pipeline) ExpandHandlers(ns string, names []string) ([]*Handler, error) {
	var out []*Handler
	var errs []error
	seen := map[string]bool{}
	var walk func(names, path []string)
	walk = func(names, path []string) {
		for _, name := range names {
			if slices.Contains(path, name) {
				errs = append(errs, errors.New("handler set loop: "+strings.Join(append(path, name), " → ")+"; the set is skipped"))
				continue
			}
			h := p.defs.Handler(ns, name)
			if h == nil {
				errs = append(errs, errors.New("handler "+name+" does not exist in namespace "+ns))
				continue
			}
			if h.Type == HandlerSet {
				if len(path) >= maxSetDepth {
					errs = append(errs, errors.New("handler set "+strings.Join(append(path, name), " → ")+" is nested deeper than 3 levels; its members are skipped"))
					continue
				}
				walk(h.Handlers, append(slices.Clip(path), name))
				continue
			}
			if !seen[name] {
				seen[name] = true
				out = append(out, h)
			}
		}
	}
	walk(names, nil)
	return out, errors.Join(errs...)
}

// warnHandlers logs what is wrong with an event's handlers: a warning, at most once a
// minute for the same namespace and problem, since every event of the check meets it.
// A missing "keepalive" handler, the default of every agent's keepalives, is the normal
// case and logged at debug level, as Sensu does.
func (p *Pipeline) warnHandlers(ns string, ev *Event, err error) {
	msg := err.Error()
	if msg == "handler keepalive does not exist in namespace "+ns {
		p.log.Debug("event handlers", "event", storeNameOf(ev), "err", err)
		return
	}
	now := time.Now()
	key := ns + "\x00" + msg
	p.handlerWarnMu.Lock()
	last, seen := p.handlerWarned[key]
	due := !seen || now.Sub(last) >= handlerWarnEvery
	if due {
		if p.handlerWarned == nil || len(p.handlerWarned) > 10_000 {
			p.handlerWarned = map[string]time.Time{}
		}
		p.handlerWarned[key] = now
	}
	p.handlerWarnMu.Unlock()
	if !due {
		return
	}
	p.log.Warn("event handlers: some are skipped (logged once a minute per problem)", "event", storeNameOf(ev), "err", err)
}

// process sends one event to each of its handlers that its filters let through.
func (p *Pipeline) process(ev *Event) {
	names := HandlerNames(ev)
	if len(names) == 0 {
		return
	}
	ns := namespaceOf(ev)
	handlers, err := p.ExpandHandlers(ns, names)
	if err != nil {
		p.warnHandlers(ns, ev, err)
	}
	now := time.Now()
	// The event is encoded once, when a first mutator needs it, for all its handlers:
	// the pipeline never changes an event. Most events are filtered out everywhere, so
	// the encoder is made only for one that reaches a handler.
	var enc func() ([]byte, error)
	for _, h := range handlers {
		if p.filtered(h, ev, now) {
			continue
		}
		if enc == nil {
			enc = sync.OnceValues(ev.MarshalJSON)
		}
		md := p.mutatorOf(ns, h.Mutator)
		if h.Type == HandlerPipe || h.Type == "" || (md != nil && md.def.Type != MutatorJavaScript) {
			select {
			case p.procQ <- procJob{h: h, ev: ev, md: md, enc: enc}:
			default:
				p.drop(DropPipeQueueFull, ev)
			}
			continue
		}
		p.handle(h, ev, md, enc)
	}
}

// mutatorOf is the definition of a handler's mutator: nil for the built-ins and for
// one that does not exist (mutate tells them apart by name).
func (p *Pipeline) mutatorOf(ns, name string) *mutatorDef {
	if name == "" || name == MutatorJSON || name == MutatorOnlyCheckOutput {
		return nil
	}
	return p.defs.mutator(ns, name)
}

// filtered reports whether one of h's filters removes ev.
func (p *Pipeline) filtered(h *Handler, ev *Event, now time.Time) bool {
	for _, name := range h.Filters {
		if IsBuiltinFilter(name) {
			if BuiltinRemoves(name, ev) {
				p.filteredBy(name)
				return true
			}
			continue
		}
		f := p.defs.Filter(namespaceOf(ev), name)
		if f == nil {
			p.log.Warn("handler names a filter that does not exist; the filter is skipped",
				"handler", h.Metadata.Name, "filter", name, "namespace", namespaceOf(ev))
			continue
		}
		removed, err := f.Removes(ev, now)
		if err != nil {
			p.log.Warn("filter failed; the event continues", "filter", name, "handler", h.Metadata.Name,
				"event", storeNameOf(ev), "err", err)
			if f := p.obs.FilterError; f != nil {
				f(name)
			}
			continue
		}
		if removed {
			p.filteredBy(name)
			return true
		}
	}
	return false
}

func (p *Pipeline) filteredBy(name string) {
	if f := p.obs.Filtered; f != nil {
		f(name)
	}
}

// handle mutates ev for h with md (see mutatorOf) and runs h; enc encodes ev.
func (p *Pipeline) handle(h *Handler, ev *Event, md *mutatorDef, enc func() ([]byte, error)) {
	data, err := md.mutate(p.ctx, h.Mutator, ev, enc)
	if h.Mutator != "" {
		outcome := OutcomeOK
		if err != nil {
			outcome = OutcomeError
		}
		if f := p.obs.Mutated; f != nil {
			f(h.Mutator, outcome)
		}
	}
	if err != nil {
		p.log.Warn("mutator failed; the handler does not run", "handler", h.Metadata.Name,
			"mutator", h.Mutator, "event", storeNameOf(ev), "err", err)
		return
	}
	res := runHandler(p.ctx, h, data)
	typ := h.Type
	if typ == "" {
		typ = HandlerPipe
	}
	if f := p.obs.Handled; f != nil {
		f(typ, res.outcome, res.duration)
	}
	attrs := []any{"handler", h.Metadata.Name, "type", typ, "event", storeNameOf(ev),
		"duration", res.duration.Round(time.Millisecond).String()}
	if typ == HandlerPipe {
		attrs = append(attrs, "status", res.status, "output", capText(res.output, 2048))
	}
	if res.err != nil {
		p.log.Warn("handler failed", append(attrs, "err", res.err)...)
		return
	}
	if typ == HandlerPipe {
		p.log.Info("handler ran", attrs...)
	} else {
		p.log.Debug("handler ran", attrs...)
	}
}
