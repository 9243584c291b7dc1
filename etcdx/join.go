package etcdx

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Errors of the membership checks StartEmbedded makes before and after starting a member.
var (
	// ErrStaleMember reports a data dir that holds a cluster of its own (the member was
	// started before it was configured to join), while the configuration names peers.
	ErrStaleMember = errors.New("member was started before it was configured to join")
	// ErrAlreadyBootstrapped reports an empty data dir for a member the cluster already
	// knows as started: a wiped member must be removed and added again, never restarted.
	ErrAlreadyBootstrapped = errors.New("member has already been bootstrapped")
	// ErrNotAMember reports a member whose peer URL the running cluster does not list.
	ErrNotAMember = errors.New("member is not in the cluster")
	// ErrClusterTooOld reports a cluster older than MinClusterVersion.
	ErrClusterTooOld = errors.New("cluster version too old")
)

// MinClusterVersion is the oldest cluster version an embedded member joins.
const MinClusterVersion = "3.6"

// HasData reports whether dir holds an etcd member's data (a WAL), in which case etcd
// ignores every initial-cluster setting.
func HasData(dir string) bool {
	entries, err := os.ReadDir(filepath.Join(dir, "member", "wal"))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wal") {
			return true
		}
	}
	return false
}

// initialPeers parses an initial-cluster value into name → peer URLs.
func initialPeers(ic string) map[string][]string {
	out := map[string][]string{}
	for _, part := range strings.Split(ic, ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && name != "" && u != "" {
			out[name] = append(out[name], strings.TrimRight(u, "/"))
		}
	}
	return out
}

// otherPeerURLs lists the peer URLs of initial-cluster members other than this one (by
// name or by one of its advertised peer URLs).
func otherPeerURLs(ec *embed.Config) []string {
	mine := map[string]bool{}
	for _, u := range ec.AdvertisePeerUrls {
		mine[strings.TrimRight(u.String(), "/")] = true
	}
	var out []string
	for name, urls := range initialPeers(ec.InitialCluster) {
		if name == ec.Name {
			continue
		}
		for _, u := range urls {
			if !mine[u] {
				out = append(out, u)
			}
		}
	}
	return out
}

// peerMember is a member as etcd's peer endpoint /members lists it.
type peerMember struct {
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// peerView is what one peer told about its cluster.
type peerView struct {
	URL            string
	ClusterID      string
	ClusterVersion string
	Members        []peerMember
}

// probePeers asks each peer URL for its cluster's members and version, until one answers
// or wait passes. It returns nil when no peer answered.
func probePeers(ctx context.Context, ec *embed.Config, peers []string, wait time.Duration) *peerView {
	if len(peers) == 0 {
		return nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// etcd's peer port negotiates HTTP/2 but answers its HTTP routes only over HTTP/1.1.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if !ec.PeerTLSInfo.Empty() {
		tc, err := ec.PeerTLSInfo.ClientConfig()
		if err == nil {
			tc.NextProtos = []string{"http/1.1"}
			tr.TLSClientConfig = tc
		}
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(wait)
	for {
		refused := 0
		for _, p := range peers {
			v, err := probePeer(ctx, hc, p)
			if v != nil {
				return v
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				refused++
			}
		}
		// Peers that refuse connections are not running (a cluster being bootstrapped,
		// or all down): waiting longer only helps against slow or unreachable ones.
		if refused == len(peers) || time.Now().After(deadline) || !Sleep(ctx, 200*time.Millisecond) {
			return nil
		}
	}
}

func probePeer(ctx context.Context, hc *http.Client, peer string) (*peerView, error) {
	get := func(path string, v any) (http.Header, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(peer, "/")+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", path, resp.Status)
		}
		return resp.Header, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
	}
	var members []peerMember
	h, err := get("/members", &members)
	if err != nil {
		return nil, err
	}
	v := &peerView{URL: peer, ClusterID: h.Get("X-Etcd-Cluster-ID"), Members: members}
	var ver struct {
		Cluster string `json:"etcdcluster"`
	}
	if _, err := get("/version", &ver); err == nil {
		v.ClusterVersion = ver.Cluster
	}
	return v, nil
}

// olderThan reports whether version (major.minor[.patch]) is older than min (major.minor).
// An unknown version ("" or "not_decided") is not older.
func olderThan(version, min string) bool {
	parse := func(s string) (int, int, bool) {
		f := strings.SplitN(s, ".", 3)
		if len(f) < 2 {
			return 0, 0, false
		}
		a, err1 := strconv.Atoi(f[0])
		b, err2 := strconv.Atoi(f[1])
		return a, b, err1 == nil && err2 == nil
	}
	va, vb, ok := parse(version)
	if !ok {
		return false
	}
	ma, mb, _ := parse(min)
	return va < ma || (va == ma && vb < mb)
}

// checkJoin runs before a member with an empty data dir starts: it asks the peers named
// in initial-cluster about their cluster and refuses, with what to do instead, to join a
// cluster older than MinClusterVersion, to start a member the cluster already knows as
// started (a wiped member: etcd would give it its old ID with an empty log), or to join
// as "existing" a cluster that was not told about this member. etcd waits only about a
// second for its peers before booting a cluster of its own; this check waits longer.
func checkJoin(ctx context.Context, ec *embed.Config, wait time.Duration) error {
	peers := otherPeerURLs(ec)
	if len(peers) == 0 {
		return nil
	}
	v := probePeers(ctx, ec, peers, wait)
	if v == nil {
		return nil // nobody answers: a cluster being bootstrapped; etcd decides
	}
	if olderThan(v.ClusterVersion, MinClusterVersion) {
		return fmt.Errorf("cluster at %s runs etcd %s; this member (etcd 3.7) joins only clusters of %s or newer: upgrade the cluster first: %w",
			v.URL, v.ClusterVersion, MinClusterVersion, ErrClusterTooOld)
	}
	mine := map[string]bool{}
	for _, u := range ec.AdvertisePeerUrls {
		mine[strings.TrimRight(u.String(), "/")] = true
	}
	var self *peerMember
	started := 0
	for i, m := range v.Members {
		if m.Name != "" && len(m.ClientURLs) > 0 {
			started++
		}
		for _, u := range m.PeerURLs {
			if mine[strings.TrimRight(u, "/")] {
				self = &v.Members[i]
			}
		}
	}
	adv := urlStrings(ec.AdvertisePeerUrls)
	switch {
	case self == nil && (ec.ClusterState == embed.ClusterStateFlagExisting || started > 0):
		return fmt.Errorf("the cluster at %s does not list this member's peer URL %s: add it first with `picket cluster member-add %s %s`, then start this server with etcd-initial-cluster-state: existing and the etcd-initial-cluster that member-add prints: %w",
			v.URL, strings.Join(adv, ","), ec.Name, strings.Join(adv, ","), ErrNotAMember)
	case self != nil && self.Name != "" && len(self.ClientURLs) > 0:
		return fmt.Errorf("the cluster at %s already knows member %s (%s) as started, but this data dir %s is empty, so it was wiped or lost: never restart a wiped member under its old ID; run `picket cluster replace %s` (it removes the member, adds it back with a new ID and starts it as existing): %w",
			v.URL, self.Name, strings.Join(adv, ","), ec.Dir, self.Name, ErrAlreadyBootstrapped)
	}
	return nil
}

// checkStale runs after a member whose data dir already held data has started: etcd
// ignored initial-cluster, so a member that was first started on its own (as a single
// node) runs a one-member cluster of its own instead of joining the configured one.
func checkStale(ee *embed.Etcd, ec *embed.Config) error {
	peers := otherPeerURLs(ec)
	if len(peers) == 0 {
		return nil
	}
	ms := ee.Server.Cluster().Members()
	if len(ms) != 1 || ms[0].ID != ee.Server.MemberID() {
		return nil
	}
	return fmt.Errorf("etcd data dir %s holds a one-member cluster (%s) from an earlier start of this server, so etcd-initial-cluster (%s) is ignored and it would not join those peers. "+
		"Stop picket, delete %s (after a snapshot if it holds data you need), add this member from a running server with `picket cluster member-add %s %s`, "+
		"and start it again with etcd-initial-cluster-state: existing (or new, when all members are bootstrapped together): %w",
		ec.Dir, ee.Server.Cluster().ID(), ec.InitialCluster, ec.Dir, ec.Name, strings.Join(urlStrings(ec.AdvertisePeerUrls), ","), ErrStaleMember)
}
