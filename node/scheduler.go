package node

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// Elected task names (DESIGN.md).
const (
	TaskPublisher        = "check-request-publisher"
	TaskKeepaliveMonitor = "keepalive-monitor"
	TaskTTLMonitor       = "ttl-monitor"
	TaskAggregatePruner  = "aggregate-pruner"
)

// Tasks lists the elected tasks every server campaigns for.
var Tasks = []string{TaskPublisher, TaskKeepaliveMonitor, TaskTTLMonitor, TaskAggregatePruner}

// publication is the value of a check request key: the requests of one tick of one
// check, each with the subscriptions it goes to. Every server watches these keys and
// delivers them to its own agents.
type publication struct {
	Namespace string      `json:"namespace"`
	Requests  []published `json:"requests"`
}

type published struct {
	Request       *agentgw.CheckRequest `json:"request"`
	Subscriptions []string              `json:"subscriptions"`
	// Delay spreads proxy requests over the splay window.
	Delay time.Duration `json:"delay,omitempty"`
}

func requestKey(ns, check string) string { return etcdx.Key("checkrequests", ns, check) }

// publisher schedules every published check while this server owns the task.
type publisher struct {
	n   *Node
	l   *etcdx.Leadership
	mu  sync.Mutex
	run map[string]context.CancelFunc // check key → its scheduling loop
	wg  sync.WaitGroup
}

// runPublisher is the check-request-publisher task: it follows the checks in etcd and
// runs one scheduling loop per published check.
func (n *Node) runPublisher(ctx context.Context, l *etcdx.Leadership) error {
	p := &publisher{n: n, l: l, run: map[string]context.CancelFunc{}}
	defer p.wg.Wait()
	defer p.stopAll()
	prefix := etcdx.Key("checks")
	for ctx.Err() == nil {
		kvs, rev, err := n.store.ListAll(ctx, prefix)
		if err != nil {
			return err
		}
		p.stopAll()
		for _, kv := range kvs {
			p.start(ctx, kv)
		}
		for we := range n.store.Watch(ctx, prefix, rev+1) {
			switch we.Type {
			case etcdx.EventPut:
				p.stop(we.KV.Key)
				p.start(ctx, we.KV)
			case etcdx.EventDelete:
				p.stop(we.KV.Key)
			case etcdx.EventError:
				n.log.Info("check watch restarts", "err", we.Err)
			}
		}
	}
	return ctx.Err()
}

func (p *publisher) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, cancel := range p.run {
		cancel()
		delete(p.run, k)
	}
}

func (p *publisher) stop(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cancel, ok := p.run[key]; ok {
		cancel()
		delete(p.run, key)
	}
}

func (p *publisher) start(ctx context.Context, kv etcdx.KV) {
	chk := &events.CheckConfig{}
	if err := json.Unmarshal(kv.Value, chk); err != nil {
		p.n.log.Warn("stored check is not valid JSON; not scheduled", "key", kv.Key, "err", err)
		return
	}
	if !chk.Publish {
		return
	}
	var sched *events.Schedule
	if chk.Cron != "" {
		s, err := events.ParseCron(chk.Cron)
		if err != nil {
			p.n.log.Warn("check has a bad cron; not scheduled", "check", chk.Metadata.Name, "err", err)
			return
		}
		sched = &s
	} else if chk.Interval <= 0 {
		return
	}
	proxy := compileProxyAttrs(chk)
	subdue, err := events.ParseSubdue(chk.Subdue)
	if err != nil {
		p.n.log.Warn("check subdue is invalid; ignored", "check", chk.Metadata.Name, "err", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	p.mu.Lock()
	p.run[kv.Key] = cancel
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.loop(cctx, chk, sched, proxy, subdue)
	}()
}

// proxyAttrs are a proxy check's entity_attributes, compiled once per definition rather
// than every tick; err is reported at every tick, as the check cannot be published.
type proxyAttrs struct {
	exprs *events.Expressions
	err   error
}

func compileProxyAttrs(chk *events.CheckConfig) proxyAttrs {
	if chk.ProxyRequests == nil || len(chk.ProxyRequests.EntityAttributes) == 0 {
		return proxyAttrs{}
	}
	exprs, err := events.CompileExpressions(chk.ProxyRequests.EntityAttributes)
	if err != nil {
		err = fmt.Errorf("proxy_requests.entity_attributes: %w", err)
	}
	return proxyAttrs{exprs, err}
}

// nextTick is when a check runs next after now: on its cadence grid for an interval,
// per its cron expression otherwise.
func nextTick(chk *events.CheckConfig, sched *events.Schedule, now time.Time) time.Time {
	if sched != nil {
		return sched.Next(now)
	}
	return events.NextRun(chk.Metadata.Name, time.Duration(chk.Interval)*time.Second, now)
}

// loop publishes chk's ticks until ctx ends. Its cron, proxy attributes and subdue were
// compiled once by start, which runs again whenever the check changes.
func (p *publisher) loop(ctx context.Context, chk *events.CheckConfig, sched *events.Schedule, proxy proxyAttrs, subdue events.Windows) {
	log := p.n.log.With("check", chk.Metadata.Name, "namespace", chk.Metadata.Namespace)
	last := time.Time{}
	for {
		now := time.Now()
		next := nextTick(chk, sched, now)
		if !next.After(last) {
			// Never publish the same grid time twice, even if the clock stepped back.
			next = nextTick(chk, sched, last.Add(time.Nanosecond))
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		last = next
		if subdue.Contains(next) {
			continue
		}
		if err := p.publish(ctx, chk, proxy, next); err != nil && ctx.Err() == nil {
			log.Warn("publish check request", "err", err)
		}
	}
}

// publish writes the requests of one tick, fenced by the election.
func (p *publisher) publish(ctx context.Context, chk *events.CheckConfig, proxy proxyAttrs, tick time.Time) error {
	ns := chk.Metadata.Namespace
	pub := publication{Namespace: ns}
	hooks := p.n.checkHooks(chk)
	base := func() *agentgw.CheckRequest {
		cfg := *chk
		return &agentgw.CheckRequest{Config: &cfg, Assets: []any{}, Hooks: hooks, Issued: tick.Unix()}
	}
	switch {
	case proxy.exprs != nil || proxy.err != nil:
		reqs, err := p.proxyRequests(ctx, chk, proxy, tick, base)
		if err != nil {
			return err
		}
		pub.Requests = reqs
	case chk.RoundRobin:
		target, err := p.roundRobinTarget(ctx, chk, tick)
		if err != nil {
			return err
		}
		if target == "" {
			return nil // no live agent in the subscriptions
		}
		pub.Requests = []published{{Request: base(), Subscriptions: []string{"entity:" + target}}}
	default:
		pub.Requests = []published{{Request: base(), Subscriptions: chk.Subscriptions}}
	}
	if len(pub.Requests) == 0 {
		return nil
	}
	val, err := json.Marshal(pub)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.l.Fenced(ctx, clientv3.OpPut(requestKey(ns, chk.Metadata.Name), string(val), clientv3.WithLease(p.l.Lease())))
}

// roundRobinTarget picks one live agent of the check's subscriptions per tick, rotating
// through them in name order. The rotation follows the tick number, so a new publisher
// after a failover continues it.
func (p *publisher) roundRobinTarget(ctx context.Context, chk *events.CheckConfig, tick time.Time) (string, error) {
	candidates, err := p.n.liveAgents(ctx, chk.Metadata.Namespace, chk.Subscriptions)
	if err != nil || len(candidates) == 0 {
		return "", err
	}
	step := tick.Unix()
	if chk.Interval > 0 {
		step /= chk.Interval
	} else {
		step /= 60
	}
	return candidates[int(step%int64(len(candidates)))], nil
}

// liveAgents lists the agent entities of ns subscribed to any of subs whose keepalives
// are current, sorted by name.
func (n *Node) liveAgents(ctx context.Context, ns string, subs []string) ([]string, error) {
	kvs, _, err := n.store.ListAll(ctx, etcdx.Key("keepalives", ns))
	if err != nil {
		return nil, err
	}
	now := time.Now().Unix()
	live := map[string]bool{}
	for _, kv := range kvs {
		var rec keepaliveRecord
		if json.Unmarshal(kv.Value, &rec) == nil && now-rec.LastSeen <= rec.WarningTimeout {
			live[kv.Key[strings.LastIndex(kv.Key, "/")+1:]] = true
		}
	}
	want := map[string]bool{}
	for _, s := range subs {
		want[s] = true
	}
	ents, _, err := n.store.ListAll(ctx, etcdx.Key("entities", ns))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range ents {
		var e events.Entity
		if json.Unmarshal(kv.Value, &e) != nil || !live[e.Metadata.Name] {
			continue
		}
		for _, s := range e.Subscriptions {
			if want[s] {
				out = append(out, e.Metadata.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// deliverRequests is run by every server: it watches the check request keys and hands
// each request to the agents connected here.
func (n *Node) deliverRequests(ctx context.Context) {
	prefix := etcdx.Key("checkrequests")
	// Splayed proxy requests wait on timers; a stopping node cancels those not yet due
	// instead of waiting for them (a splay can be most of a long interval).
	var (
		timers  sync.WaitGroup
		tmu     sync.Mutex
		pending = map[*time.Timer]struct{}{}
	)
	defer func() {
		tmu.Lock()
		for t := range pending {
			if t.Stop() {
				timers.Done()
			}
		}
		tmu.Unlock()
		timers.Wait()
	}()
	for ctx.Err() == nil {
		rev := int64(0)
		resp, err := n.client.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			etcdx.Sleep(ctx, time.Second)
			continue
		}
		rev = resp.Header.Revision
		for we := range n.store.Watch(ctx, prefix, rev+1) {
			if we.Type != etcdx.EventPut {
				continue
			}
			var pub publication
			if err := json.Unmarshal(we.KV.Value, &pub); err != nil {
				n.log.Warn("check request is not valid JSON", "key", we.KV.Key, "err", err)
				continue
			}
			for _, r := range pub.Requests {
				if r.Request == nil || r.Request.Config == nil {
					continue
				}
				if r.Delay <= 0 {
					n.gateway.Deliver(pub.Namespace, r.Request, r.Subscriptions)
					continue
				}
				r := r
				timers.Add(1)
				tmu.Lock()
				var t *time.Timer
				t = time.AfterFunc(r.Delay, func() {
					defer timers.Done()
					tmu.Lock()
					delete(pending, t)
					tmu.Unlock()
					if ctx.Err() == nil {
						n.gateway.Deliver(pub.Namespace, r.Request, r.Subscriptions)
					}
				})
				pending[t] = struct{}{}
				tmu.Unlock()
			}
		}
	}
}

// executeAdhoc publishes an ad hoc request for a check, outside its schedule.
func (n *Node) executeAdhoc(ctx context.Context, ns, check string, subs []string, reason string) error {
	chk, _, err := etcdx.GetJSON[*events.CheckConfig](ctx, n.store, etcdx.Key("checks", ns, check))
	if err != nil {
		return err
	}
	if len(subs) == 0 {
		subs = chk.Subscriptions
	}
	pub := publication{Namespace: ns, Requests: []published{{
		Request:       &agentgw.CheckRequest{Config: chk, Assets: []any{}, Hooks: n.checkHooks(chk), Issued: time.Now().Unix()},
		Subscriptions: subs,
	}}}
	val, _ := json.Marshal(pub)
	lease, err := n.client.Grant(ctx, 60)
	if err != nil {
		return err
	}
	key := etcdx.Key("checkrequests", ns, check, fmt.Sprintf("adhoc-%d", time.Now().UnixNano()))
	if _, err := n.client.Put(ctx, key, string(val), clientv3.WithLease(lease.ID)); err != nil {
		return err
	}
	n.log.Info("ad hoc check request", "check", check, "namespace", ns, "subscriptions", subs, "reason", reason)
	return nil
}

// proxyRequests makes one request per entity matching the check's entity_attributes,
// with the entity's tokens substituted and, with splay, spread over the splay window.
func (p *publisher) proxyRequests(ctx context.Context, chk *events.CheckConfig, proxy proxyAttrs, tick time.Time, base func() *agentgw.CheckRequest) ([]published, error) {
	if proxy.err != nil {
		return nil, proxy.err
	}
	exprs := proxy.exprs
	ents, _, err := p.n.store.ListAll(ctx, etcdx.Key("entities", chk.Metadata.Namespace))
	if err != nil {
		return nil, err
	}
	var matched []map[string]any
	for _, kv := range ents {
		var e events.Entity
		if json.Unmarshal(kv.Value, &e) != nil {
			continue
		}
		syn := events.Synthesize(&e)
		res, err := exprs.Eval(map[string]any{"entity": syn})
		if err != nil {
			p.n.log.Warn("proxy entity attribute failed", "check", chk.Metadata.Name, "entity", e.Metadata.Name, "err", err)
			continue
		}
		all := true
		for _, ok := range res {
			all = all && ok
		}
		if all {
			matched = append(matched, syn)
		}
	}
	var window time.Duration
	if chk.ProxyRequests.Splay && len(matched) > 1 {
		cov := chk.ProxyRequests.SplayCoverage
		if cov == 0 {
			cov = 90
		}
		window = time.Duration(chk.Interval) * time.Second * time.Duration(cov) / 100
	}
	var out []published
	for i, ent := range matched {
		req := base()
		cmd, err := events.SubstituteTokens(req.Config.Command, ent)
		if err != nil {
			p.n.log.Warn("proxy check not run for entity", "check", chk.Metadata.Name, "entity", ent["name"], "err", err)
			continue
		}
		req.Config.Command = cmd
		req.Config.ProxyEntityName, _ = ent["name"].(string)
		pb := published{Request: req, Subscriptions: chk.Subscriptions}
		if window > 0 {
			pb.Delay = window * time.Duration(i) / time.Duration(len(matched))
		}
		out = append(out, pb)
	}
	return out, nil
}
