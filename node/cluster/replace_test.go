package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/node/client"
	"github.com/picketmon/picket/node/nodetest"
)

// fakeAPI answers the read routes Replace's preflight uses from fixed data.
func fakeAPI(t *testing.T, ml MemberList, h Health, infoName string) *Client {
	t.Helper()
	mux := http.NewServeMux()
	js := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(v) }
	}
	mux.HandleFunc("GET /api/core/v2/cluster/members", js(ml))
	mux.HandleFunc("GET /health", js(h))
	mux.HandleFunc("GET /info", js(Info{Name: infoName}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("preflight must not change anything: %s %s", r.Method, r.URL)
		w.WriteHeader(500)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{APIURL: srv.URL, AccessToken: "x"}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return New(c)
}

func member(id uint64, name string, learner bool) Member {
	m := Member{ID: id, Name: name, PeerURLs: []string{"https://10.0.0." + string(rune('0'+id)) + ":2380"}, IsLearner: learner}
	if name != "" {
		m.ClientURLs = []string{"https://10.0.0." + string(rune('0'+id)) + ":2379"}
	}
	return m
}

func health(healthy map[uint64]bool, ms ...Member) Health {
	var h Health
	for _, m := range ms {
		h.ClusterHealth = append(h.ClusterHealth, MemberHealth{MemberID: m.ID, Name: m.Name, Healthy: healthy[m.ID]})
	}
	return h
}

func TestReplaceRefusals(t *testing.T) {
	m1, m2, m3 := member(1, "a", false), member(2, "b", false), member(3, "c", false)
	for _, tc := range []struct {
		name    string
		members []Member
		healthy map[uint64]bool
		target  string
		local   bool
		info    string
		want    error
		text    string
	}{
		{"unknown member", []Member{m1, m2, m3}, map[uint64]bool{1: true, 2: true}, "zz", false, "a", ErrNoSuchMember, "no member named zz"},
		{"would lose quorum", []Member{m1, m2, m3}, map[uint64]bool{1: true}, "c", true, "a", ErrQuorum, "below a quorum of 2"},
		{"only voter", []Member{m1}, map[uint64]bool{}, "a", true, "b", ErrQuorum, "only voter"},
		{"another learner", []Member{m1, m2, m3, member(4, "d", true)}, map[uint64]bool{1: true, 2: true, 4: true}, "c", true, "a", ErrOtherLearner, "one learner at a time"},
		{"an unstarted member", []Member{m1, m2, m3, member(4, "", false)}, map[uint64]bool{1: true, 2: true}, "c", true, "a", ErrOtherLearner, "has not started"},
		{"remote replace of a running member", []Member{m1, m2, m3}, map[uint64]bool{1: true, 2: true, 3: true}, "c", false, "a", ErrTargetRunning, "stop its server first"},
		{"local replace through its own API", []Member{m1, m2, m3}, map[uint64]bool{1: true, 2: true}, "c", true, "c", ErrSameServer, "log in to another member"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeAPI(t, MemberList{Members: tc.members}, health(tc.healthy, tc.members...), tc.info)
			o := ReplaceOptions{Name: tc.target, StateFile: filepath.Join(t.TempDir(), "state.json")}
			if tc.local {
				o.Local = &Local{}
			}
			_, err := c.Replace(context.Background(), o)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

func TestJoinFile(t *testing.T) {
	dir := t.TempDir()
	if j, err := ReadJoin(dir); j != nil || err != nil {
		t.Fatalf("no file: %v %v", j, err)
	}
	if err := WriteJoin(dir, Join{Name: "a", MemberID: "1f", InitialCluster: "a=https://x:2380"}); err != nil {
		t.Fatal(err)
	}
	j, err := ReadJoin(dir)
	if err != nil || j.Name != "a" || j.InitialCluster != "a=https://x:2380" || j.Created.IsZero() {
		t.Fatalf("read: %+v %v", j, err)
	}
	if err := RemoveJoin(dir); err != nil {
		t.Fatal(err)
	}
	if j, _ := ReadJoin(dir); j != nil {
		t.Fatal("join file still there")
	}
}

func TestAddResultInitialCluster(t *testing.T) {
	r := AddResult{Member: Member{ID: 9, PeerURLs: []string{"https://10.0.0.9:2380"}},
		Members: []Member{member(1, "a", false), {ID: 9, PeerURLs: []string{"https://10.0.0.9:2380"}}}}
	got, err := r.InitialCluster("new")
	if err != nil || got != "a=https://10.0.0.1:2380,new=https://10.0.0.9:2380" {
		t.Fatalf("%q %v", got, err)
	}
}

// PromoteWithRetry gives up at once on a refusal a retry would only repeat (here 404:
// no such member, from a real node), rather than retrying until its deadline.
func TestPromoteWithRetryStopsOnRefusal(t *testing.T) {
	n := nodetest.Start(t)
	c, err := client.New(client.Config{APIURL: n.URL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(t.Context(), nodetest.AdminUser, nodetest.AdminPassword); err != nil {
		t.Fatal(err)
	}
	// The context outlives any sensible answer, but not the two-minute retry: a retry
	// loop ends with the context's error instead of the API's.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = New(c).PromoteWithRetry(ctx, 0xdead, 2*time.Minute)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("promote of no such member: err = %v, want the API's 404", err)
	}
	for _, c := range []struct {
		err   error
		final bool
	}{
		{&client.APIError{Status: http.StatusConflict}, false},
		{&client.APIError{Status: http.StatusBadRequest}, false},
		{&client.APIError{Status: http.StatusServiceUnavailable}, false},
		{errors.New("connection refused"), false},
		{&client.APIError{Status: http.StatusForbidden}, true},
		{&client.APIError{Status: http.StatusNotFound}, true},
		{fmt.Errorf("refresh: %w", client.ErrSessionExpired), true},
		{client.ErrNotLoggedIn, true},
	} {
		if got := promoteRefusalFinal(c.err); got != c.final {
			t.Errorf("promoteRefusalFinal(%v) = %v, want %v", c.err, got, c.final)
		}
	}
}
