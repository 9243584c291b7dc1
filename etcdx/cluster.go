package etcdx

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one etcd cluster member. A member that was added but has not started yet
// has no Name and no ClientURLs.
type Member struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// Started reports whether the member has started and published its name and client URLs.
func (m Member) Started() bool { return m.Name != "" && len(m.ClientURLs) > 0 }

// MemberList is the cluster's membership as one member saw it.
type MemberList struct {
	Header  HealthHeader `json:"header"`
	Members []Member     `json:"members"`
}

// ListMembers returns the cluster's members.
func ListMembers(ctx context.Context, cli *clientv3.Client) (*MemberList, error) {
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	h := resp.Header
	out := &MemberList{Header: HealthHeader{ClusterID: h.GetClusterId(), MemberID: h.GetMemberId(), RaftTerm: h.GetRaftTerm()}}
	for _, m := range resp.Members {
		out.Members = append(out.Members, Member{ID: m.GetID(), Name: m.GetName(), PeerURLs: m.GetPeerURLs(),
			ClientURLs: m.GetClientURLs(), IsLearner: m.GetIsLearner()})
	}
	return out, nil
}

// AddResult is the answer to a member add: the new member and the whole membership
// after the add, from which the new member's etcd-initial-cluster is built.
type AddResult struct {
	Header  HealthHeader `json:"header"`
	Member  Member       `json:"member"`
	Members []Member     `json:"members"`
}

// InitialCluster builds the etcd-initial-cluster value the new member must start with:
// every member as name=peer-url, the new (unnamed) member under name. It fails when
// another member has not started yet, since its name is unknown.
func (r *AddResult) InitialCluster(name string) (string, error) {
	return InitialClusterFor(r.Members, r.Member.ID, name)
}

// InitialClusterFor builds an etcd-initial-cluster value from members, naming the member
// with ID newID name. Members are listed in name order so the value is stable.
func InitialClusterFor(members []Member, newID uint64, name string) (string, error) {
	var parts []string
	for _, m := range members {
		n := m.Name
		if m.ID == newID {
			n = name
		}
		if n == "" {
			return "", fmt.Errorf("member %x has not started yet (no name): start it or remove it first", m.ID)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ","), nil
}

// AddMember adds a member with peerURLs, as a learner when learner is set. Membership
// calls are not retried by etcd's client, so after an error AddMember lists the members
// again: if a member with these peer URLs now exists, the add went through.
func AddMember(ctx context.Context, cli *clientv3.Client, peerURLs []string, learner bool) (*AddResult, error) {
	add := cli.MemberAdd
	if learner {
		add = cli.MemberAddAsLearner
	}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		resp, err := add(ctx, peerURLs)
		if err == nil {
			out := &AddResult{Header: HealthHeader{ClusterID: resp.Header.GetClusterId(), MemberID: resp.Header.GetMemberId(), RaftTerm: resp.Header.GetRaftTerm()}}
			m := resp.Member
			out.Member = Member{ID: m.GetID(), Name: m.GetName(), PeerURLs: m.GetPeerURLs(), ClientURLs: m.GetClientURLs(), IsLearner: m.GetIsLearner()}
			for _, m := range resp.Members {
				out.Members = append(out.Members, Member{ID: m.GetID(), Name: m.GetName(), PeerURLs: m.GetPeerURLs(), ClientURLs: m.GetClientURLs(), IsLearner: m.GetIsLearner()})
			}
			return out, nil
		}
		lastErr = err
		if errors.Is(err, rpctypes.ErrPeerURLExist) || errors.Is(err, rpctypes.ErrGRPCPeerURLExist) {
			if r := findAdded(ctx, cli, peerURLs); r != nil {
				return r, nil
			}
			return nil, fmt.Errorf("add member %s: %w", strings.Join(peerURLs, ","), err)
		}
		if !retryableMembership(err) || ctx.Err() != nil {
			break
		}
		// The add may have been applied although the call failed: look before retrying.
		if r := findAdded(ctx, cli, peerURLs); r != nil {
			return r, nil
		}
		if !Sleep(ctx, time.Duration(attempt+1)*500*time.Millisecond) {
			break
		}
	}
	return nil, fmt.Errorf("add member %s: %w", strings.Join(peerURLs, ","), lastErr)
}

// findAdded returns the member with exactly peerURLs as an AddResult, nil when none.
func findAdded(ctx context.Context, cli *clientv3.Client, peerURLs []string) *AddResult {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ml, err := ListMembers(lctx, cli)
	if err != nil {
		return nil
	}
	for _, m := range ml.Members {
		if samePeers(m.PeerURLs, peerURLs) {
			return &AddResult{Header: ml.Header, Member: m, Members: ml.Members}
		}
	}
	return nil
}

func samePeers(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if strings.TrimRight(x[i], "/") != strings.TrimRight(y[i], "/") {
			return false
		}
	}
	return true
}

// RemoveMember removes member id. After an error it lists the members again: a member
// that is gone counts as removed.
func RemoveMember(ctx context.Context, cli *clientv3.Client, id uint64) error {
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		_, err := cli.MemberRemove(ctx, id)
		if err == nil {
			return nil
		}
		lastErr = err
		if gone(ctx, cli, id) {
			return nil
		}
		if !retryableMembership(err) || ctx.Err() != nil {
			break
		}
		if !Sleep(ctx, time.Duration(attempt+1)*500*time.Millisecond) {
			break
		}
	}
	return fmt.Errorf("remove member %x: %w", id, lastErr)
}

func gone(ctx context.Context, cli *clientv3.Client, id uint64) bool {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ml, err := ListMembers(lctx, cli)
	if err != nil {
		return false
	}
	for _, m := range ml.Members {
		if m.ID == id {
			return false
		}
	}
	return true
}

// UpdateMember changes the peer URLs of member id. It refuses a learner: older etcd
// servers clear the learner flag on update.
func UpdateMember(ctx context.Context, cli *clientv3.Client, id uint64, peerURLs []string) error {
	ml, err := ListMembers(ctx, cli)
	if err != nil {
		return err
	}
	found := false
	for _, m := range ml.Members {
		if m.ID == id {
			found = true
			if m.IsLearner {
				return fmt.Errorf("update member %x: %w", id, ErrLearner)
			}
		}
	}
	if !found {
		return fmt.Errorf("update member %x: %w", id, ErrMemberNotFound)
	}
	if _, err := cli.MemberUpdate(ctx, id, peerURLs); err != nil {
		return fmt.Errorf("update member %x: %w", id, err)
	}
	return nil
}

// Errors of membership operations callers branch on.
var (
	// ErrMemberNotFound reports a member ID that is not in the cluster.
	ErrMemberNotFound = errors.New("no such member")
	// ErrLearner reports an operation that must not be done on a learner.
	ErrLearner = errors.New("member is a learner; promote it first")
	// ErrNotCaughtUp reports a learner that has not caught up with the leader yet.
	ErrNotCaughtUp = errors.New("learner has not caught up with the leader yet")
)

// PromoteMember promotes learner id to a voter, retrying until it has caught up with
// the leader or ctx ends. A member that is already a voter counts as promoted.
func PromoteMember(ctx context.Context, cli *clientv3.Client, id uint64) error {
	var lastErr error
	for {
		_, err := cli.MemberPromote(ctx, id)
		if err == nil {
			return nil
		}
		lastErr = err
		if ml, lerr := ListMembers(ctx, cli); lerr == nil {
			for _, m := range ml.Members {
				if m.ID == id && !m.IsLearner {
					return nil
				}
			}
		}
		msg := err.Error()
		caughtUp := strings.Contains(msg, "not in sync") || strings.Contains(msg, "can only promote a learner member which is in sync")
		if !caughtUp && !retryableMembership(err) {
			return fmt.Errorf("promote member %x: %w", id, err)
		}
		if !Sleep(ctx, 300*time.Millisecond) {
			if caughtUp {
				return fmt.Errorf("promote member %x: %w (%v)", id, ErrNotCaughtUp, lastErr)
			}
			return fmt.Errorf("promote member %x: %w", id, lastErr)
		}
	}
}

// retryableMembership reports errors after which a membership call may be retried (once
// the members have been listed again): timeouts, lost leaders, and the strict
// reconfiguration check's "unhealthy cluster", which clears once the receiving member
// has been connected to every voter for a few seconds.
func retryableMembership(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"unhealthy cluster", "timed out", "timeout", "leader changed", "no leader",
		"unavailable", "connection refused", "too many requests", "not enough started members"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// MemberStatus is what one member reports about itself: its raft view (leader, term,
// index) and version, or the error reaching it.
type MemberStatus struct {
	ID        uint64 `json:"id"`
	IDHex     string `json:"id_hex"`
	Name      string `json:"name"`
	Endpoint  string `json:"endpoint,omitempty"`
	Version   string `json:"version,omitempty"`
	Leader    uint64 `json:"leader"`
	RaftTerm  uint64 `json:"raft_term"`
	RaftIndex uint64 `json:"raft_index"`
	DBSize    int64  `json:"db_size"`
	IsLearner bool   `json:"is_learner"`
	Err       string `json:"error,omitempty"`
}

// ClusterStatus asks every started member for its status through a dedicated client (built
// from base with the member's client URLs), each within timeout.
func ClusterStatus(ctx context.Context, cli *clientv3.Client, base ClientConfig, timeout time.Duration) ([]MemberStatus, error) {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	ml, err := ListMembers(lctx, cli)
	cancel()
	if err != nil {
		return nil, err
	}
	out := make([]MemberStatus, len(ml.Members))
	var wg sync.WaitGroup
	for i, m := range ml.Members {
		st := &out[i]
		st.ID, st.IDHex, st.Name, st.IsLearner = m.ID, fmt.Sprintf("%x", m.ID), m.Name, m.IsLearner
		if !m.Started() {
			st.Err = "member has not started yet (no name or client URLs)"
			continue
		}
		wg.Add(1)
		go func(urls []string) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			c, ep, s, err := firstStatus(sctx, base, urls)
			if err != nil {
				st.Err = err.Error()
				return
			}
			c.Close()
			st.Endpoint, st.Version = ep, s.Version
			st.Leader, st.RaftTerm, st.RaftIndex, st.DBSize = s.Leader, s.RaftTerm, s.RaftIndex, s.DbSize
			if len(s.Errors) > 0 {
				st.Err = strings.Join(s.Errors, "; ")
			}
		}(m.ClientURLs)
	}
	wg.Wait()
	return out, nil
}

// MoveLeader hands raft leadership to member to. The request must reach the current
// leader, so MoveLeader finds it and dials it with a dedicated client built from base.
func MoveLeader(ctx context.Context, cli *clientv3.Client, base ClientConfig, to uint64) error {
	sts, err := ClusterStatus(ctx, cli, base, 3*time.Second)
	if err != nil {
		return err
	}
	var leaderEP string
	for _, s := range sts {
		if s.Err == "" && s.Leader == s.ID {
			leaderEP = s.Endpoint
		}
		if s.ID == to && s.Leader == to {
			return nil // already the leader
		}
	}
	if leaderEP == "" {
		return errors.New("move leader: no member reports itself as leader")
	}
	cfg := base
	cfg.Endpoints = []string{leaderEP}
	c, err := NewClient(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.MoveLeader(ctx, to); err != nil {
		return fmt.Errorf("move leader to %x: %w", to, err)
	}
	return nil
}
