package etcdx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DeleteRev deletes key only if its mod revision is still modRev, so that of two
// callers racing on the same read only one succeeds (ErrConflict for the other,
// ErrNotFound when the key is gone).
func (s *Store) DeleteRev(ctx context.Context, key string, modRev int64) error {
	if modRev <= 0 {
		return fmt.Errorf("delete %s: mod revision %d: %w", key, modRev, ErrConflict)
	}
	then, bumps := s.fencedThen(key, clientv3.OpDelete(key))
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(then...).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())). // gone, or changed?
		Commit()
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		if rr := resp.Responses[0].GetResponseRange(); rr.GetCount() == 0 {
			return fmt.Errorf("delete %s: %w", key, ErrNotFound)
		}
		return fmt.Errorf("delete %s: %w", key, ErrConflict)
	}
	s.fenced(bumps, resp.Header.Revision)
	return nil
}

// Alarm is an active etcd alarm on one member.
type Alarm struct {
	MemberID uint64 `json:"memberID"`
	Alarm    string `json:"alarm"`
}

// MemberHealth is the health of one member, as `picket cluster health` prints it.
type MemberHealth struct {
	MemberID    uint64 `json:"MemberID"`
	MemberIDHex string `json:"MemberIDHex"`
	Name        string `json:"Name"`
	Err         string `json:"Err"`
	Healthy     bool   `json:"Healthy"`
}

// HealthHeader identifies the cluster and the member that answered.
type HealthHeader struct {
	ClusterID uint64 `json:"cluster_id"`
	MemberID  uint64 `json:"member_id"`
	RaftTerm  uint64 `json:"raft_term"`
}

// Health is the answer of GET /health.
type Health struct {
	Alarms        []Alarm        `json:"Alarms"`
	ClusterHealth []MemberHealth `json:"ClusterHealth"`
	Header        HealthHeader   `json:"Header"`
}

// ClusterHealth checks every member the way `etcdctl endpoint health` does: a dedicated
// client per member (built from base with the member's client URLs), Status to check
// its identity and that it sees a leader, then a linearizable read (serializable for
// learners); "permission denied" still proves the member serves. Members without a
// name or client URLs have not started. Each member gets at most timeout.
func ClusterHealth(ctx context.Context, cli *clientv3.Client, base ClientConfig, timeout time.Duration) Health {
	out := Health{Alarms: []Alarm{}, ClusterHealth: []MemberHealth{}}
	mctx, cancel := context.WithTimeout(ctx, timeout)
	resp, err := cli.MemberList(mctx)
	cancel()
	if err != nil {
		out.ClusterHealth = append(out.ClusterHealth, MemberHealth{Err: fmt.Sprintf("list members: %v", err)})
		return out
	}
	h := resp.Header
	out.Header = HealthHeader{ClusterID: h.GetClusterId(), MemberID: h.GetMemberId(), RaftTerm: h.GetRaftTerm()}
	members := resp.Members
	out.ClusterHealth = make([]MemberHealth, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		mh := &out.ClusterHealth[i]
		mh.MemberID, mh.MemberIDHex, mh.Name = m.GetID(), fmt.Sprintf("%x", m.GetID()), m.GetName()
		if m.GetName() == "" || len(m.GetClientURLs()) == 0 {
			mh.Err = "member has not started yet (no name or client URLs)"
			continue
		}
		wg.Add(1)
		go func(id uint64, urls []string, learner bool) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := memberHealthy(cctx, base, urls, h.GetClusterId(), id, learner); err != nil {
				mh.Err = err.Error()
				return
			}
			mh.Healthy = true
		}(m.GetID(), m.GetClientURLs(), m.GetIsLearner())
	}
	wg.Wait()
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if alarms, err := cli.AlarmList(actx); err == nil {
		for _, a := range alarms.Alarms {
			out.Alarms = append(out.Alarms, Alarm{MemberID: a.GetMemberID(), Alarm: a.GetAlarm().String()})
		}
	}
	return out
}

func memberHealthy(ctx context.Context, base ClientConfig, urls []string, clusterID, memberID uint64, learner bool) error {
	c, ep, st, err := firstStatus(ctx, base, urls)
	if err != nil {
		return err
	}
	defer c.Close()
	switch {
	case st.Header.GetClusterId() != clusterID:
		return fmt.Errorf("member at %s belongs to another cluster (%x)", ep, st.Header.GetClusterId())
	case st.Header.GetMemberId() != memberID:
		return fmt.Errorf("member at %s has ID %x, not %x", ep, st.Header.GetMemberId(), memberID)
	case st.Leader == 0:
		return errors.New("member sees no leader")
	case len(st.Errors) > 0:
		return errors.New(strings.Join(st.Errors, "; "))
	}
	var opts []clientv3.OpOption
	if learner {
		opts = append(opts, clientv3.WithSerializable())
	}
	_, err = c.Get(ctx, "health", opts...)
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		return fmt.Errorf("read through %s: %w", ep, err)
	}
	return nil
}

// firstStatus dials a dedicated client (built from base) for a member's client URLs and
// returns the Status of the first URL that answers, with the URL and the client, which
// the caller closes; or the last URL's error. Each URL gets a plain TCP dial first: gRPC
// retries a refused connection until the deadline and then reports only that, while the
// operator wants the dial error.
func firstStatus(ctx context.Context, base ClientConfig, urls []string) (*clientv3.Client, string, *clientv3.StatusResponse, error) {
	cfg := base
	cfg.Endpoints = urls
	cfg.DialTimeout = 2 * time.Second
	c, err := NewClient(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	lastErr := errors.New("no client URLs")
	for _, ep := range urls {
		if err := dialCheck(ctx, ep); err != nil {
			lastErr = err
			continue
		}
		st, err := c.Status(ctx, ep)
		if err != nil {
			lastErr = err
			continue
		}
		return c, ep, st, nil
	}
	c.Close()
	return nil, "", nil, lastErr
}

// dialCheck opens and closes a TCP connection to the host:port of the client URL ep.
func dialCheck(ctx context.Context, ep string) error {
	host := ep
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		host = u.Host
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", host)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			return oe
		}
		return err
	}
	return conn.Close()
}
