package etcdx

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrNotLeader reports a fenced write by an owner that lost its election.
var ErrNotLeader = errors.New("no longer the task owner")

// Leadership is won ownership of an elected task. Every side effect of the task goes
// through Fenced, which commits only while this leadership's election key still exists
// with the revision it was won at, so a stale owner cannot overwrite a new owner's work.
type Leadership struct {
	Task string
	// Rev is the election revision (the leader key's create revision).
	Rev     int64
	key     string
	session *concurrency.Session
	elec    *concurrency.Election
	store   *Store
}

// Key is the leader key; writes fence on its create revision being Rev.
func (l *Leadership) Key() string { return l.key }

// Done is closed when the leadership is lost (lease expired, session closed).
func (l *Leadership) Done() <-chan struct{} { return l.session.Done() }

// Lease is the session's lease; keys written with it vanish when leadership is lost.
func (l *Leadership) Lease() clientv3.LeaseID { return l.session.Lease() }

// Fenced commits ops only while this leadership holds; otherwise ErrNotLeader.
func (l *Leadership) Fenced(ctx context.Context, ops ...clientv3.Op) error {
	resp, err := l.store.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.Rev)).
		Then(ops...).
		Commit()
	if err != nil {
		return fmt.Errorf("task %s: %w", l.Task, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("task %s: %w", l.Task, ErrNotLeader)
	}
	return nil
}

// Resign gives the task up at once, so another server takes over without waiting for
// the lease to expire, and closes the session.
func (l *Leadership) Resign(ctx context.Context) error {
	err := l.elec.Resign(ctx)
	_ = l.session.Close()
	return err
}

// electionPrefix is where the election of a task lives.
func electionPrefix(task string) string { return Key("elections", task) }

// Campaign blocks until this server (candidate) owns task or ctx ends. ttl bounds how
// long a dead owner keeps the task (seconds, minimum 1; etcd raises it to its own
// minimum of 1.5 election timeouts). When the dead owner also led raft, the new raft
// leader extends every lease by one election timeout, so failover takes about an
// election plus that extension longer.
func (s *Store) Campaign(ctx context.Context, task, candidate string, ttl int) (*Leadership, error) {
	if ttl < 1 {
		ttl = 1
	}
	session, err := concurrency.NewSession(s.c, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("election session for %s: %w", task, err)
	}
	elec := concurrency.NewElection(session, electionPrefix(task))
	if err := elec.Campaign(ctx, candidate); err != nil {
		_ = session.Close()
		return nil, fmt.Errorf("campaign for %s: %w", task, err)
	}
	return &Leadership{Task: task, Rev: elec.Rev(), key: elec.Key(), session: session, elec: elec, store: s}, nil
}

// TaskOwner returns the name of task's current owner, "" when nobody owns it.
func (s *Store) TaskOwner(ctx context.Context, task string) (string, error) {
	resp, err := s.c.Get(ctx, electionPrefix(task)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// RunElected runs fn whenever this server owns task, until ctx ends: it campaigns,
// runs fn with a context cancelled when the leadership is lost, resigns when fn returns,
// and campaigns again. Errors are reported to onErr and retried after a pause.
func (s *Store) RunElected(ctx context.Context, task, candidate string, ttl int, fn func(context.Context, *Leadership) error, onErr func(error)) {
	for ctx.Err() == nil {
		l, err := s.Campaign(ctx, task, candidate, ttl)
		if err != nil {
			if ctx.Err() == nil {
				onErr(err)
				Sleep(ctx, time.Second)
			}
			continue
		}
		tctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-l.Done():
			case <-tctx.Done():
			}
			cancel()
		}()
		err = fn(tctx, l)
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.Resign(rctx)
		rcancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			onErr(err)
			Sleep(ctx, time.Second)
		}
	}
}

// Sleep waits for d or until ctx ends, and reports whether the whole d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
