package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/api"
)

// keepaliveRecord is what the keepalive monitor watches: one per agent entity, written
// with every keepalive.
type keepaliveRecord struct {
	LastSeen        int64    `json:"last_seen"`
	WarningTimeout  int64    `json:"warning_timeout"`
	CriticalTimeout int64    `json:"critical_timeout"`
	Interval        int64    `json:"interval"`
	Deregister      bool     `json:"deregister,omitempty"`
	Handlers        []string `json:"handlers,omitempty"`
	// Status is the keepalive status the monitor last raised (0 after a keepalive).
	Status uint32 `json:"status"`
}

// ttlRecord is what the TTL monitor watches: one per entity and check with a ttl.
type ttlRecord struct {
	Executed int64 `json:"executed"`
	TTL      int64 `json:"ttl"`
	// Raised is true once the monitor raised the TTL event for this result.
	Raised bool `json:"raised,omitempty"`
}

func keepaliveKey(ns, name string) string { return etcdx.Key("keepalives", ns, name) }
func eventKey(ns, entity, check string) string {
	return etcdx.Key("events", ns, entity, check)
}
func entityKey(ns, name string) string       { return etcdx.Key("entities", ns, name) }
func ttlKey(ns, entity, check string) string { return etcdx.Key("ttl", ns, entity, check) }

// agentAuth checks agent credentials. bcrypt costs tens of milliseconds, so a verified
// password is remembered (as a SHA-256, with the user's revision) and thousands of
// reconnecting agents do not cost thousands of bcrypt runs.
type agentAuth struct {
	store *etcdx.Store
	mu    sync.Mutex
	ok    map[string]authEntry
}

type authEntry struct {
	sum [32]byte
	rev int64
}

func (a *agentAuth) Authenticate(ctx context.Context, user, pass string) error {
	kv, err := a.store.Get(ctx, etcdx.Key("users", user))
	if errors.Is(err, etcdx.ErrNotFound) {
		return agentgw.ErrBadCredentials
	}
	if err != nil {
		return err
	}
	var u events.User
	if err := json.Unmarshal(kv.Value, &u); err != nil {
		return err
	}
	if u.Disabled {
		return agentgw.ErrBadCredentials
	}
	sum := sha256.Sum256([]byte(user + "\x00" + pass))
	a.mu.Lock()
	e, cached := a.ok[user]
	a.mu.Unlock()
	if !cached || e.rev != kv.ModRevision || e.sum != sum {
		if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(pass)) != nil {
			return agentgw.ErrBadCredentials
		}
		a.mu.Lock()
		a.ok[user] = authEntry{sum: sum, rev: kv.ModRevision}
		a.mu.Unlock()
	}
	switch api.RoleOf(u.Groups) {
	case api.RoleAgent, api.RoleEditor, api.RoleClusterAdmin:
		return nil
	}
	return agentgw.ErrForbidden
}

func (n *Node) namespaceExists(ctx context.Context, ns string) (bool, error) {
	_, err := n.store.Get(ctx, etcdx.Key("namespaces", ns))
	if errors.Is(err, etcdx.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (n *Node) entityConfig(ctx context.Context, ns, name string) (*events.Entity, error) {
	e, _, err := etcdx.GetJSON[*events.Entity](ctx, n.store, entityKey(ns, name))
	if errors.Is(err, etcdx.ErrNotFound) {
		return nil, nil
	}
	return e, err
}

// handleAgentEvent persists a keepalive or a check result from an agent. It returns
// once etcd committed it, which is when the gateway acknowledges it.
func (n *Node) handleAgentEvent(ctx context.Context, ev *events.Event, keepalive bool, from agentgw.Origin) error {
	now := time.Now()
	if keepalive {
		return n.handleKeepalive(ctx, ev, now, from.Session)
	}
	// The session owns its own agent's events only (owners.go).
	src := source{resent: from.Resent}
	if ev.Entity.Metadata.Name == from.Agent && ev.Entity.Metadata.Namespace == from.Namespace {
		src.session = from.Session
	}
	return n.handleResult(ctx, ev, now, nil, src)
}

// source is who delivers a result to be stored: the agent session that owns its
// entity's events (0 for any other writer: the API, a monitor, a proxy entity's check;
// see owners.go), and whether the agent marked it as sent before and never
// acknowledged, so that it may be stored already.
type source struct {
	session uint64
	resent  bool
}

func (n *Node) handleKeepalive(ctx context.Context, ev *events.Event, now time.Time, session uint64) error {
	ent := ev.Entity
	ns, name := ent.Metadata.Namespace, ent.Metadata.Name
	ent.LastSeen = now.Unix()
	if ent.EntityClass == "" {
		ent.EntityClass = events.EntityAgent
	}
	events.SetDefaults(ent, ns)
	chk := ev.Check
	if chk == nil {
		chk = &events.Check{}
	}
	rec := keepaliveRecord{
		LastSeen: now.Unix(), WarningTimeout: chk.Timeout, CriticalTimeout: chk.Ttl, Interval: chk.Interval,
		Deregister: ent.Deregister, Handlers: ent.KeepaliveHandlers,
	}
	if rec.WarningTimeout <= 0 {
		rec.WarningTimeout = 120
	}
	entVal, err := json.Marshal(ent)
	if err != nil {
		return err
	}
	recVal, _ := json.Marshal(rec)
	kev := keepaliveEvent(ent, chk, 0, fmt.Sprintf("Keepalive last sent from %s at %s", name, now.UTC().Format(time.RFC3339)), now)
	n.beforeStore(kev, now)
	// A keepalive has no ID, so it is never taken for a resend: always stored.
	_, err = n.writeEvent(ctx, kev, now, source{session: session},
		etcdx.Write{Key: entityKey(ns, name), Value: entVal},
		etcdx.Write{Key: keepaliveKey(ns, name), Value: recVal},
	)
	if err != nil {
		return fmt.Errorf("store keepalive of %s/%s: %w", ns, name, err)
	}
	n.afterStore(kev)
	return nil
}

// keepaliveEvent builds the keepalive event of an entity with a status and output.
func keepaliveEvent(ent *events.Entity, chk *events.Check, status uint32, output string, now time.Time) *events.Event {
	c := &events.Check{}
	c.Metadata = events.ObjectMeta{Name: "keepalive", Namespace: ent.Metadata.Namespace}
	c.Interval, c.Timeout, c.Ttl = chk.Interval, chk.Timeout, chk.Ttl
	c.Handlers = ent.KeepaliveHandlers
	if len(c.Handlers) == 0 {
		c.Handlers = []string{"keepalive"}
	}
	c.Status, c.Output, c.Executed, c.Issued = status, output, now.Unix(), now.Unix()
	c.Subscriptions = []string{}
	ev := &events.Event{Entity: ent, Check: c, Timestamp: now.Unix()}
	ev.Metadata.Namespace = ent.Metadata.Namespace
	return ev
}

// nextEventState reads the stored event for ev's entity and check, computes the new
// state (history, occurrences, flapping) and returns the key and value to store.
func (n *Node) nextEventState(ctx context.Context, ev *events.Event, now time.Time) (string, []byte, error) {
	ns := ev.Entity.Metadata.Namespace
	key := eventKey(ns, ev.Entity.Metadata.Name, ev.Check.Metadata.Name)
	prev, _, err := etcdx.GetJSON[*events.Event](ctx, n.store, key)
	if err != nil && !errors.Is(err, etcdx.ErrNotFound) {
		return "", nil, err
	}
	ev.Check.Metadata.Namespace = ns
	events.UpdateEventState(prev, ev, now)
	val, err := api.StoredEvent(ev)
	return key, val, err
}

// handleResult stores a check result as the latest event of its entity and check,
// creating a proxy entity when the check names one. extra ops commit in the same
// transaction (the monitors fence their writes that way). from is who delivered it.
func (n *Node) handleResult(ctx context.Context, ev *events.Event, now time.Time, cmp []clientv3.Cmp, from source, extra ...etcdx.Write) error {
	if ev.Check == nil || ev.Check.Metadata.Name == "" {
		if ev.HasMetrics() {
			// Metrics-only events are handled by the pipeline, not stored: refuse them
			// (no ack, the agent keeps them) when the pipeline cannot take them now.
			if n.pipe != nil && !n.pipe.p.Submit(ev) {
				return errors.New("event pipeline is full or stopping; metrics not accepted, send them again")
			}
			return nil
		}
		return errors.New("event has no check name")
	}
	ns := ev.Entity.Metadata.Namespace
	var ops []etcdx.Write
	if p := ev.Check.ProxyEntityName; p != "" && p != ev.Entity.Metadata.Name {
		proxy, err := n.entityConfig(ctx, ns, p)
		if err != nil {
			return err
		}
		if proxy == nil {
			proxy = &events.Entity{EntityClass: events.EntityProxy}
			proxy.Metadata = events.ObjectMeta{Name: p, Namespace: ns}
			events.SetDefaults(proxy, ns)
			val, _ := json.Marshal(proxy)
			ops = append(ops, etcdx.Write{Key: entityKey(ns, p), Value: val})
		}
		ev.Entity = proxy
		from.session = 0
	} else if ev.Entity.EntityClass == "" {
		ev.Entity.EntityClass = events.EntityAgent
	}
	if ev.Check.Ttl > 0 && ev.Check.Metadata.Name != "keepalive" {
		if ev.Check.Executed == 0 {
			ev.Check.Executed = now.Unix()
		}
		// The server's clock, not the agent's: a skewed agent must not raise or hide TTL events.
		rec, _ := json.Marshal(ttlRecord{Executed: now.Unix(), TTL: ev.Check.Ttl})
		ops = append(ops, etcdx.Write{Key: ttlKey(ns, ev.Entity.Metadata.Name, ev.Check.Metadata.Name), Value: rec})
	}
	if w, ok := aggregateWrite(ev, now); ok {
		ops = append(ops, w)
	}
	ops = append(ops, extra...)
	n.beforeStore(ev, now)
	if cmp == nil {
		// Agent results go through the in-memory state and the grouped writer. A resend
		// of a result already stored is acknowledged without being stored or handled
		// again.
		stored, err := n.writeEvent(ctx, ev, now, from, ops...)
		if err != nil {
			return err
		}
		if stored {
			n.afterStore(ev)
		}
		return nil
	}
	// Fenced writes of the monitors read the stored state and commit on their own.
	key, val, err := n.nextEventState(ctx, ev, now)
	if err != nil {
		return err
	}
	then := make([]clientv3.Op, 0, len(ops)+1)
	for _, w := range ops {
		then = append(then, w.Op())
	}
	then = append(then, clientv3.OpPut(key, string(val)), n.fence.BumpOp())
	resp, err := n.client.Txn(ctx).If(cmp...).Then(then...).Commit()
	if err != nil {
		return fmt.Errorf("store event %s: %w", key, err)
	}
	if !resp.Succeeded {
		return etcdx.ErrConflict
	}
	n.fence.Observe(resp.Header.Revision)
	n.afterStore(ev)
	return nil
}

// storeAPIEvent stores an event written through the REST API as a check result.
func (n *Node) storeAPIEvent(ctx context.Context, ev *events.Event) error {
	if ev.Entity == nil {
		return errors.New("event has no entity")
	}
	if ev.Entity.EntityClass == "" {
		ev.Entity.EntityClass = events.EntityProxy
	}
	return n.handleResult(ctx, ev, time.Now(), nil, source{})
}
