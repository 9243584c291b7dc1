package node

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// pipelineState is this server's event pipeline: the events it stored go through filters,
// mutators and handlers here, asynchronously. Handler, filter, mutator and silence
// definitions are read from etcd once and then followed with watches, so no event costs
// an etcd read.
type pipelineState struct {
	n        *Node
	p        *events.Pipeline
	defs     *events.Definitions
	silences *silenceCache
	hooks    *hookCache

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// pipelineKinds are the definitions the pipeline follows.
var pipelineKinds = []string{"handlers", "filters", "mutators"}

// startPipeline builds the pipeline, registers its metrics and loads the definitions,
// before agents may connect, then follows them in the background until closePipeline.
func (n *Node) startPipeline(ctx context.Context) error {
	ps := &pipelineState{n: n, defs: events.NewDefinitions(), silences: newSilenceCache(n)}
	obs := ps.registerMetrics(n.api.Registry())
	ps.p = events.NewPipeline(events.PipelineConfig{
		Definitions: ps.defs,
		Workers:     max(4, runtime.GOMAXPROCS(0)),
		QueueSize:   20_000,
		Logger:      n.log.With("component", "pipeline"),
		Observer:    obs,
	})
	n.pipe = ps
	bg, cancel := context.WithCancel(context.Background())
	ps.cancel = cancel
	for _, kind := range pipelineKinds {
		if err := ps.track(ctx, bg, etcdx.Key(kind), ps.resetDefs(kind), ps.putDef(kind), ps.deleteDef(kind)); err != nil {
			return fmt.Errorf("load %s for the event pipeline: %w", kind, err)
		}
	}
	hooks := &hookCache{}
	ps.hooks = hooks
	if err := ps.track(ctx, bg, etcdx.Key("hooks"), hooks.reset, hooks.put, hooks.delete); err != nil {
		return fmt.Errorf("load hooks: %w", err)
	}
	s := ps.silences
	if err := ps.track(ctx, bg, etcdx.Key("silenced"), s.reset, s.put, s.delete); err != nil {
		return fmt.Errorf("load silences: %w", err)
	}
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		s.run(bg)
	}()
	return nil
}

// closePipeline stops following definitions and drains the queued events until ctx ends.
func (n *Node) closePipeline(ctx context.Context) error {
	ps := n.pipe
	if ps == nil {
		return nil
	}
	ps.cancel()
	ps.wg.Wait()
	// Handlers get part of the shutdown deadline, not all of it: a hung one must not hold
	// up stopping etcd. What still runs then is killed, and that is no failure of the stop.
	grace := pipelineDrainGrace
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl)/2)
	}
	dctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	if err := ps.p.Close(dctx); err != nil {
		st := ps.p.Stats()
		n.log.Warn("event pipeline not drained at shutdown; running handlers were killed and queued events dropped",
			"grace", grace.String(), "dropped", st.Dropped)
	}
	return nil
}

// pipelineDrainGrace bounds how long a stopping server waits for queued events and
// running handlers.
const pipelineDrainGrace = 5 * time.Second

// track loads prefix into the callbacks with ctx, then follows it until bg ends.
func (ps *pipelineState) track(ctx, bg context.Context, prefix string, reset func(), put func(etcdx.KV), del func(string)) error {
	rev, err := ps.load(ctx, prefix, reset, put, del)
	if err != nil {
		return err
	}
	ps.follow(bg, prefix, rev, reset, put, del)
	return nil
}

// load reads every key under prefix into the callbacks and returns the revision read at.
func (ps *pipelineState) load(ctx context.Context, prefix string, reset func(), put func(etcdx.KV), del func(string)) (int64, error) {
	kvs, rev, err := ps.n.store.ListAll(ctx, prefix)
	if err != nil {
		return 0, err
	}
	reset()
	for _, kv := range kvs {
		put(kv)
	}
	return rev, nil
}

// follow keeps the callbacks in step with prefix from revision rev on, re-listing after
// a watch error (a compaction, a lost leader) until ctx ends.
func (ps *pipelineState) follow(ctx context.Context, prefix string, rev int64, reset func(), put func(etcdx.KV), del func(string)) {
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		for ctx.Err() == nil {
			for we := range ps.n.store.Watch(ctx, prefix, rev+1) {
				switch we.Type {
				case etcdx.EventPut:
					put(we.KV)
				case etcdx.EventDelete:
					del(we.KV.Key)
				case etcdx.EventError:
					ps.n.log.Info("pipeline watch restarts", "prefix", prefix, "err", we.Err)
				}
			}
			for ctx.Err() == nil {
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				r, err := ps.load(lctx, prefix, reset, put, del)
				cancel()
				if err == nil {
					rev = r
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
}

// nsName splits /picket/<kind>/<ns>/<name> into namespace and name.
func nsName(key, kind string) (string, string, bool) {
	rest := strings.TrimPrefix(key, etcdx.Key(kind)+"/")
	ns, name, ok := strings.Cut(rest, "/")
	return ns, name, ok && ns != "" && name != ""
}

func (ps *pipelineState) resetDefs(kind string) func() {
	return func() { ps.defs.ResetKind(kind) }
}

func (ps *pipelineState) putDef(kind string) func(etcdx.KV) {
	return func(kv etcdx.KV) {
		var r events.Resource
		switch kind {
		case "handlers":
			r = &events.Handler{}
		case "filters":
			r = &events.EventFilter{}
		case "mutators":
			r = &events.Mutator{}
		}
		if err := json.Unmarshal(kv.Value, r); err != nil {
			ps.n.log.Warn("stored definition is not valid JSON; ignored by the pipeline", "key", kv.Key, "err", err)
			return
		}
		if ns, name, ok := nsName(kv.Key, kind); ok {
			// The key is what counts: it is what handlers name and deletes remove.
			r.Meta().Namespace, r.Meta().Name = ns, name
		}
		if err := ps.defs.Put(r, kv.ModRevision); err != nil {
			ps.n.log.Warn("stored definition does not compile; it is reported each time it is used",
				"kind", kind, "namespace", r.Meta().Namespace, "name", r.Meta().Name, "err", err)
		}
	}
}

func (ps *pipelineState) deleteDef(kind string) func(string) {
	return func(key string) {
		if ns, name, ok := nsName(key, kind); ok {
			ps.defs.Delete(kind, ns, name)
		}
	}
}

// registerMetrics registers the pipeline's metrics on reg and returns the observer that
// feeds them.
func (ps *pipelineState) registerMetrics(reg *prometheus.Registry) events.Observer {
	processed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "picket_pipeline_events_total", Help: "Stored events that went through the pipeline's filters."})
	wait := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "picket_pipeline_queue_wait_seconds", Help: "How long events waited for a pipeline worker.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_pipeline_dropped_total", Help: "Events (or handler runs) the pipeline dropped, by reason: queue_full, pipe_queue_full, closed."},
		[]string{"reason"})
	filtered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_pipeline_filtered_total", Help: "Events a filter removed on their way to a handler, by filter."}, []string{"filter"})
	filterErrs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_pipeline_filter_errors_total", Help: "Filter evaluations that failed (the event continued), by filter."}, []string{"filter"})
	mutated := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_pipeline_mutations_total", Help: "Mutator runs by mutator and outcome."}, []string{"mutator", "outcome"})
	runs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_pipeline_handler_runs_total", Help: "Handler runs by handler type and outcome (ok, error, timeout)."}, []string{"type", "outcome"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "picket_pipeline_handler_duration_seconds", Help: "Handler run duration by handler type.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"type"})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	for _, r := range []string{events.DropQueueFull, events.DropPipeQueueFull, events.DropClosed} {
		dropped.WithLabelValues(r) // visible at 0 before the first drop
	}
	reg.MustRegister(processed, wait, dropped, filtered, filterErrs, mutated, runs, dur,
		gauge("picket_pipeline_queued", "Events waiting for a pipeline worker.", func() float64 { return float64(ps.p.Stats().Queued) }),
		gauge("picket_pipeline_process_queued", "Handler runs waiting for a process slot.", func() float64 { return float64(ps.p.Stats().ProcessQueued) }),
		gauge("picket_pipeline_processes", "Pipe handlers and pipe mutators running.", func() float64 { return float64(ps.p.Stats().Processes) }),
		gauge("picket_silenced_entries", "Silences this server knows of.", func() float64 { return float64(ps.silences.len()) }),
	)
	return events.Observer{
		Dropped: func(reason string) { dropped.WithLabelValues(reason).Inc() },
		Processed: func(d time.Duration) {
			processed.Inc()
			wait.Observe(d.Seconds())
		},
		Filtered:    func(f string) { filtered.WithLabelValues(f).Inc() },
		FilterError: func(f string) { filterErrs.WithLabelValues(f).Inc() },
		Mutated:     func(m, o string) { mutated.WithLabelValues(m, o).Inc() },
		Handled: func(t, o string, d time.Duration) {
			runs.WithLabelValues(t, o).Inc()
			dur.WithLabelValues(t).Observe(d.Seconds())
		},
	}
}

// beforeStore prepares an event for storing: metrics extracted from its check's output,
// and the silences that cover it.
func (n *Node) beforeStore(ev *events.Event, now time.Time) {
	if ev.Check == nil {
		return
	}
	if err := events.ExtractMetrics(ev); err != nil {
		n.log.Debug("check output has malformed metrics", "check", ev.Check.Metadata.Name,
			"entity", ev.Entity.Metadata.Name, "format", ev.Check.OutputMetricFormat, "err", err)
	}
	if n.pipe != nil {
		n.pipe.silences.apply(ev, now)
	}
}

// afterStore hands a committed event to the pipeline. A resolution ends the
// expire_on_resolve silences that covered it, and is handled as no longer covered by
// them, as in Sensu.
func (n *Node) afterStore(ev *events.Event) {
	if n.pipe == nil {
		return
	}
	if ev.Check != nil && len(ev.Check.Silenced) > 0 && ev.IsResolution() {
		// Results stored through writeEvent were taken out of their expire_on_resolve
		// silences before storing; this catches the others (written by the monitors).
		cp := *ev
		c := *ev.Check
		cp.Check = &c
		if _, ok := n.pipe.silences.resolve(&cp); ok {
			ev = &cp
		}
	}
	n.pipe.p.Submit(ev)
}

// aggregateWrite is the write of ev's result into its check's aggregate; false when it has none.
func aggregateWrite(ev *events.Event, now time.Time) (etcdx.Write, bool) {
	if ev.Check == nil || ev.Check.Aggregate == "" || ev.Entity == nil {
		return etcdx.Write{}, false
	}
	if ev.Check.Executed == 0 {
		ev.Check.Executed = now.Unix()
	}
	rec := events.NewAggregateRecord(ev)
	rec.Received = now.Unix()
	val, _ := json.Marshal(rec)
	return etcdx.Write{Key: aggregateKey(ev.Entity.Metadata.Namespace, ev.Check.Aggregate, rec.Entity, ev.Check.Metadata.Name), Value: val}, true
}

// aggregateKey keys a result by entity and check, so two checks of one entity in the
// same aggregate each count.
func aggregateKey(ns, name, entity, check string) string {
	return etcdx.Key("aggregates", ns, name, entity, check)
}
