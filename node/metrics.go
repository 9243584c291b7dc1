package node

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/picketmon/picket/etcdx"
)

// registerGatewayMetrics exposes the gateway's counters on /metrics.
func (n *Node) registerGatewayMetrics(commitSeconds prometheus.Histogram) {
	g := n.gateway
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	n.api.Registry().MustRegister(
		gauge("picket_agent_sessions", "Agents connected to this server.", func() float64 { return float64(g.Stats().Sessions) }),
		counter("picket_agent_connects_total", "Agent sessions accepted.", func() float64 { return float64(g.Stats().Connects) }),
		counter("picket_agent_handshakes_rejected_total", "Agent handshakes refused (auth, namespace, not ready).", func() float64 { return float64(g.Stats().Rejected) }),
		counter("picket_agent_frames_malformed_total", "Agent frames dropped as malformed.", func() float64 { return float64(g.Stats().Malformed) }),
		counter("picket_agent_events_accepted_total", "Keepalives and events persisted.", func() float64 { return float64(g.Stats().EventsAccepted) }),
		counter("picket_agent_events_failed_total", "Keepalives and events that could not be persisted.", func() float64 { return float64(g.Stats().EventsFailed) }),
		counter("picket_check_requests_sent_total", "Check requests delivered to local agents.", func() float64 { return float64(g.Stats().RequestsSent) }),
		counter("picket_check_requests_dropped_total", "Check requests dropped because an agent's send queue was full.", func() float64 { return float64(g.Stats().RequestsDropped) }),
		counter("picket_agent_acks_dropped_total", "Acks not sent because an agent's send queue was full (its event is stored; its session is closed, and the agent resends the event after reconnecting).", func() float64 { return float64(g.Stats().AcksDropped) }),
		counter("picket_event_commits_total", "Grouped etcd transactions of event writes.", func() float64 { return float64(n.batch.Stats().Commits) }),
		counter("picket_event_writes_total", "Event writes committed through grouped transactions.", func() float64 { return float64(n.batch.Stats().Writes) }),
		gauge("picket_event_state_cache_entries", "Entity/check states kept in memory.", func() float64 { return float64(n.states.len()) }),
		counter("picket_event_state_entity_reads_total", "Reads from etcd of all of an entity's events at once, on the first result of the entity this server has no state for.", func() float64 { return float64(n.states.entityReads.Load()) }),
		counter("picket_event_state_key_reads_total", "Reads from etcd of one entity/check's event, for an entity with more events than one read takes (256).", func() float64 { return float64(n.states.keyReads.Load()) }),
		counter("picket_event_write_conflicts_total", "Event writes whose condition failed because another server, a monitor or the API stored the event since this server read it; the stored event is read and built on.", func() float64 { return float64(n.states.conflicts.Load()) }),
		counter("picket_event_writes_unconditional_total", "Event writes of an agent's own session, settled under the events fence, committed without a condition of their own (the transaction compared the fence once).", func() float64 { return float64(n.batch.Stats().Skipped) }),
		counter("picket_event_commits_fenced_total", "Grouped transactions refused because another writer moved the events fence; their writes were committed with their own conditions.", func() float64 { return float64(n.batch.Stats().Fenced) }),
		commitSeconds,
	)
}

// registerGCMetric exposes the garbage-collection target the pacer set.
func (n *Node) registerGCMetric(p *gcPacer) {
	n.api.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "picket_gc_percent",
		Help: "Go's garbage-collection target (GOGC) the server set for its event rate."},
		func() float64 { return float64(p.current.Load()) }))
}

// runAggregatePruner is the aggregate-pruner task: it removes aggregate results older
// than their retention (see pruneAggregates).
func (n *Node) runAggregatePruner(ctx context.Context, l *etcdx.Leadership) error {
	return n.pruneAggregates(ctx, l)
}
