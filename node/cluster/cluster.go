// Package cluster is the Go API of Picket's cluster management, shared by the CLI
// (`picket cluster …`) and the console: member health, the member list, adding, removing,
// updating and promoting members, raft status, leadership moves, snapshots, the owners of
// the elected tasks, and the in-place replacement of a faulty member (Replace). Every
// call goes through a server's REST API with the caller's session (node/client), so any
// member of the cluster can answer.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/picketmon/picket/node/client"
)

// Client manages a cluster through one server's API.
type Client struct {
	c *client.Client
}

// New returns a cluster client using c's API URL and session.
func New(c *client.Client) *Client { return &Client{c: c} }

// API returns the underlying API client.
func (c *Client) API() *client.Client { return c.c }

// Header identifies the cluster and the member that answered.
type Header struct {
	ClusterID uint64 `json:"cluster_id"`
	MemberID  uint64 `json:"member_id"`
	RaftTerm  uint64 `json:"raft_term"`
}

// Member is one etcd member. A member that was added but has not started has no Name
// and no ClientURLs.
type Member struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// IDHex is the member ID as etcd and sensuctl print it.
func (m Member) IDHex() string { return strconv.FormatUint(m.ID, 16) }

// Started reports whether the member has started and published its name and client URLs.
func (m Member) Started() bool { return m.Name != "" && len(m.ClientURLs) > 0 }

// MemberList is the cluster's membership.
type MemberList struct {
	Header  Header   `json:"header"`
	Members []Member `json:"members"`
}

// Find returns the member called name, or with ID hex name, or nil.
func (l *MemberList) Find(name string) *Member {
	for i, m := range l.Members {
		if m.Name == name {
			return &l.Members[i]
		}
	}
	if id, err := strconv.ParseUint(name, 16, 64); err == nil {
		for i, m := range l.Members {
			if m.ID == id {
				return &l.Members[i]
			}
		}
	}
	return nil
}

// MemberHealth is the health of one member, computed by the answering server the way
// `etcdctl endpoint health` does it.
type MemberHealth struct {
	MemberID    uint64 `json:"MemberID"`
	MemberIDHex string `json:"MemberIDHex"`
	Name        string `json:"Name"`
	Err         string `json:"Err"`
	Healthy     bool   `json:"Healthy"`
}

// Alarm is an active etcd alarm (NOSPACE, CORRUPT) on one member.
type Alarm struct {
	MemberID uint64 `json:"memberID"`
	Alarm    string `json:"alarm"`
}

// Health is the answer of GET /health.
type Health struct {
	Alarms        []Alarm        `json:"Alarms"`
	ClusterHealth []MemberHealth `json:"ClusterHealth"`
	Header        Header         `json:"Header"`
}

// Healthy reports whether every member is healthy and no alarm is raised.
func (h *Health) Healthy() bool {
	if len(h.Alarms) > 0 || len(h.ClusterHealth) == 0 {
		return false
	}
	for _, m := range h.ClusterHealth {
		if !m.Healthy {
			return false
		}
	}
	return true
}

// Of returns the health of member id, nil when it is not listed.
func (h *Health) Of(id uint64) *MemberHealth {
	for i, m := range h.ClusterHealth {
		if m.MemberID == id {
			return &h.ClusterHealth[i]
		}
	}
	return nil
}

// MemberStatus is one member's raft view, or the error reaching it.
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

// AddResult is the answer to a member add: the new member and the membership after it.
type AddResult struct {
	Header  Header   `json:"header"`
	Member  Member   `json:"member"`
	Members []Member `json:"members"`
}

// InitialCluster is the etcd-initial-cluster value the new member, called name, must
// start with: every member as name=peer-url. It fails when another member has not
// started yet (its name is unknown).
func (r *AddResult) InitialCluster(name string) (string, error) {
	var parts []string
	for _, m := range r.Members {
		n := m.Name
		if m.ID == r.Member.ID {
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

// Info is the answer of GET /info: the answering server's name and the owner of each
// elected task by server name (nil: nobody owns it right now).
type Info struct {
	Name    string             `json:"name"`
	Version string             `json:"version"`
	Members []InfoMember       `json:"members"`
	Tasks   map[string]*string `json:"tasks"`
}

// InfoMember is a member as /info lists it.
type InfoMember struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	IsLearner  bool     `json:"is_learner"`
}

// TaskNames lists the elected tasks in the order they are shown.
var TaskNames = []string{"check-request-publisher", "keepalive-monitor", "ttl-monitor", "aggregate-pruner"}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	resp, err := c.c.Do(ctx, method, path, nil)
	if err != nil {
		return err
	}
	if err := client.CheckResponse(resp); err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// Health asks the server for every member's health; timeout bounds each member's check
// (0: the server's default of 3 s).
func (c *Client) Health(ctx context.Context, timeout time.Duration) (*Health, error) {
	path := "/health"
	if timeout > 0 {
		path += "?timeout=" + strconv.Itoa(int((timeout+time.Second-1)/time.Second))
	}
	var h Health
	if err := c.do(ctx, http.MethodGet, path, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) (*MemberList, error) {
	var ml MemberList
	if err := c.do(ctx, http.MethodGet, "/api/core/v2/cluster/members", &ml); err != nil {
		return nil, err
	}
	return &ml, nil
}

// AddMember adds a member with peerURLs (as a learner when learner is set). Start the
// new member with the etcd-initial-cluster of AddResult.InitialCluster and
// etcd-initial-cluster-state: existing.
func (c *Client) AddMember(ctx context.Context, peerURLs []string, learner bool) (*AddResult, error) {
	q := url.Values{"peer-addrs": {strings.Join(peerURLs, ",")}}
	if learner {
		q.Set("learner", "true")
	}
	var r AddResult
	if err := c.do(ctx, http.MethodPost, "/api/core/v2/cluster/members?"+q.Encode(), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RemoveMember removes member id from the cluster.
func (c *Client) RemoveMember(ctx context.Context, id uint64) error {
	return c.do(ctx, http.MethodDelete, "/api/core/v2/cluster/members/"+strconv.FormatUint(id, 16), nil)
}

// UpdateMember changes the peer URLs of member id (never of a learner).
func (c *Client) UpdateMember(ctx context.Context, id uint64, peerURLs []string) error {
	q := url.Values{"peer-addrs": {strings.Join(peerURLs, ",")}}
	return c.do(ctx, http.MethodPut, "/api/core/v2/cluster/members/"+strconv.FormatUint(id, 16)+"?"+q.Encode(), nil)
}

// PromoteMember promotes learner id to a voter; the server retries for up to a minute
// while the learner catches up.
func (c *Client) PromoteMember(ctx context.Context, id uint64) error {
	return c.do(ctx, http.MethodPost, "/api/core/v2/cluster/members/"+strconv.FormatUint(id, 16)+"/promote", nil)
}

// Status returns every member's raft status.
func (c *Client) Status(ctx context.Context) ([]MemberStatus, error) {
	var out []MemberStatus
	err := c.do(ctx, http.MethodGet, "/api/core/v2/cluster/status", &out)
	return out, err
}

// MoveLeader hands raft leadership to member to.
func (c *Client) MoveLeader(ctx context.Context, to uint64) error {
	return c.do(ctx, http.MethodPost, "/api/core/v2/cluster/leader?to="+strconv.FormatUint(to, 16), nil)
}

// Info returns /info: the answering server's name and the task owners.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var in Info
	if err := c.do(ctx, http.MethodGet, "/info", &in); err != nil {
		return nil, err
	}
	return &in, nil
}

// Snapshot streams an etcd snapshot (admin only) into w and returns its size.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.c.Do(ctx, http.MethodGet, "/api/core/v2/cluster/snapshot", nil)
	if err != nil {
		return 0, err
	}
	if err := client.CheckResponse(resp); err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("snapshot: %w", err)
	}
	if n == 0 {
		return 0, fmt.Errorf("snapshot: the server sent nothing")
	}
	return n, nil
}

// Agreement checks that every member answered and that all agree on one leader and
// term; it returns the leader's ID.
func Agreement(sts []MemberStatus) (uint64, error) {
	var leader, term uint64
	for _, s := range sts {
		if s.Err != "" {
			return 0, fmt.Errorf("member %s (%s): %s", s.Name, s.IDHex, s.Err)
		}
		if s.Leader == 0 {
			return 0, fmt.Errorf("member %s (%s) sees no leader", s.Name, s.IDHex)
		}
		if leader == 0 {
			leader, term = s.Leader, s.RaftTerm
			continue
		}
		if s.Leader != leader || s.RaftTerm != term {
			return 0, fmt.Errorf("members disagree on the leader: %s sees %x in term %d, another sees %x in term %d",
				s.Name, s.Leader, s.RaftTerm, leader, term)
		}
	}
	return leader, nil
}
