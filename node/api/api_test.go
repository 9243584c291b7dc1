package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picketmon/picket/node/nodetest"
)

// apiClient is a tiny raw HTTP client: these tests check status codes and bodies of
// the real server, so they use no higher-level client on purpose.
type apiClient struct {
	t     *testing.T
	base  string
	token string
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

func (c *apiClient) do(method, path string, body any, hdr ...string) answer {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, raw}
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	ExpiresAt    int64  `json:"expires_at"`
	RefreshToken string `json:"refresh_token"`
}

func login(t *testing.T, base, user, pass string) (*apiClient, tokens) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/auth", nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login %s: status %d", user, resp.StatusCode)
	}
	var tok tokens
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	return &apiClient{t: t, base: base, token: tok.AccessToken}, tok
}

func want(t *testing.T, what string, a answer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, a.status, status, a.body)
	}
}

var shared struct {
	once sync.Once
	node *nodetest.Node
	dir  string
}

// sharedNode is one server for every test of this file that does not need its own.
func sharedNode(t *testing.T) *nodetest.Node {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "picket-api-test-")
		if err != nil {
			t.Fatal(err)
		}
		shared.dir = dir
		shared.node = nodetest.StartWith(&keepAlive{T: t}, nodetest.Options{StateDir: dir})
	})
	if shared.node == nil {
		t.Fatal("shared node failed to start")
	}
	return shared.node
}

// keepAlive lets the shared node outlive the test that started it; TestMain stops it.
type keepAlive struct{ *testing.T }

func (k *keepAlive) Cleanup(func()) {}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_ = shared.node.Close(ctx)
		cancel()
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

const checkJSON = `{"metadata":{"name":"cpu"},"command":"check-cpu.sh -w 75","interval":60,"publish":true,"subscriptions":["linux"],"handlers":["slack"]}`

func TestUnauthenticated(t *testing.T) {
	n := sharedNode(t)
	anon := &apiClient{t: t, base: n.URL}
	for _, p := range []string{"/api/core/v2/namespaces/default/checks", "/api/core/v2/namespaces", "/info", "/auth/test"} {
		want(t, "GET "+p, anon.do("GET", p, nil), 401)
	}
	want(t, "POST without token", anon.do("POST", "/api/core/v2/namespaces/default/checks", checkJSON), 401)
	want(t, "bad bearer", anon.do("GET", "/auth/test", nil, "Authorization", "Bearer nonsense"), 401)
	want(t, "bad scheme", anon.do("GET", "/auth/test", nil, "Authorization", "Digest x"), 401)
	for _, p := range []string{"/health", "/version", "/ready", "/metrics"} {
		want(t, "GET "+p, anon.do("GET", p, nil), 200)
	}
	req, _ := http.NewRequest("GET", n.URL+"/auth", nil)
	req.SetBasicAuth("admin", "wrong-password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
}

func TestCheckLifecycle(t *testing.T) {
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	base := "/api/core/v2/namespaces/default/checks"
	want(t, "create", c.do("POST", base, checkJSON), 201)
	t.Cleanup(func() { c.do("DELETE", base+"/cpu", nil) })
	want(t, "create again", c.do("POST", base, checkJSON), 409)

	got := c.do("GET", base+"/cpu", nil)
	want(t, "get", got, 200)
	var chk map[string]any
	got.json(t, &chk)
	if chk["command"] != "check-cpu.sh -w 75" || chk["metadata"].(map[string]any)["created_by"] != "admin" {
		t.Fatalf("stored check: %s", got.body)
	}
	etag := got.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on GET")
	}

	patched := c.do("PATCH", base+"/cpu", `{"interval":30,"labels":null}`)
	want(t, "patch", patched, 200)
	patched.json(t, &chk)
	if chk["interval"].(float64) != 30 || chk["command"] != "check-cpu.sh -w 75" {
		t.Fatalf("patched check: %s", patched.body)
	}
	// The ETag we read is stale now: a conditional write must not overwrite.
	want(t, "stale If-Match put", c.do("PUT", base+"/cpu", checkJSON, "If-Match", etag), 412)
	want(t, "stale If-Match patch", c.do("PATCH", base+"/cpu", `{"interval":20}`, "If-Match", etag), 412)

	want(t, "put replace", c.do("PUT", base+"/cpu", checkJSON), 201)
	want(t, "put name mismatch", c.do("PUT", base+"/other", checkJSON), 400)
	want(t, "wrong namespace in body", c.do("POST", base, strings.Replace(checkJSON, `"name":"cpu"`, `"name":"x","namespace":"ops"`, 1)), 400)
	want(t, "unknown namespace", c.do("POST", "/api/core/v2/namespaces/nope/checks", checkJSON), 404)
	want(t, "unknown kind", c.do("GET", "/api/core/v2/namespaces/default/widgets", nil), 404)
	want(t, "patch missing", c.do("PATCH", base+"/missing", `{"interval":5}`), 404)
	want(t, "delete", c.do("DELETE", base+"/cpu", nil), 204)
	want(t, "get deleted", c.do("GET", base+"/cpu", nil), 404)
	want(t, "delete deleted", c.do("DELETE", base+"/cpu", nil), 404)
	want(t, "method on collection", c.do("DELETE", base, nil), 405)
}

func TestValidationNamesField(t *testing.T) {
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	a := c.do("POST", "/api/core/v2/namespaces/default/checks", strings.Replace(checkJSON, `"interval":60`, `"interval":-5`, 1))
	want(t, "interval -5", a, 400)
	var e struct {
		Message string `json:"message"`
		Code    int    `json:"code"`
		Fields  []struct{ Field, Message string }
	}
	a.json(t, &e)
	if e.Code != 400 || len(e.Fields) == 0 || e.Fields[0].Field != "interval" || !strings.Contains(e.Message, "interval") {
		t.Fatalf("error body does not name interval: %s", a.body)
	}
	want(t, "not JSON", c.do("POST", "/api/core/v2/namespaces/default/checks", "{"), 400)
	want(t, "bad limit", c.do("GET", "/api/core/v2/namespaces/default/checks?limit=x", nil), 400)
	want(t, "bad continue", c.do("GET", "/api/core/v2/namespaces/default/checks?limit=1&continue=garbage", nil), 400)
}

func TestBodyLimit(t *testing.T) {
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	big := `{"metadata":{"name":"big"},"command":"` + strings.Repeat("x", 1<<20) + `","interval":10}`
	want(t, "1 MB POST", c.do("POST", "/api/core/v2/namespaces/default/checks", big), 413)
	want(t, "1 MB PUT", c.do("PUT", "/api/core/v2/namespaces/default/checks/big", big), 413)
	want(t, "not stored", c.do("GET", "/api/core/v2/namespaces/default/checks/big", nil), 404)
}

func TestRoles(t *testing.T) {
	n := sharedNode(t)
	admin, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	want(t, "create viewer", admin.do("POST", "/api/core/v2/users", `{"username":"vera","password":"vera-password","groups":["viewers"]}`), 201)
	want(t, "create editor", admin.do("POST", "/api/core/v2/users", `{"username":"ed","password":"ed-password","groups":["editors"]}`), 201)
	viewer, _ := login(t, n.URL, "vera", "vera-password")
	want(t, "viewer reads", viewer.do("GET", "/api/core/v2/namespaces/default/checks", nil), 200)
	want(t, "viewer writes", viewer.do("POST", "/api/core/v2/namespaces/default/checks", checkJSON), 403)
	want(t, "viewer lists users", viewer.do("GET", "/api/core/v2/users", nil), 403)
	editor, _ := login(t, n.URL, "ed", "ed-password")
	want(t, "editor writes", editor.do("PUT", "/api/core/v2/namespaces/default/handlers/slack", `{"metadata":{"name":"slack"},"type":"pipe","command":"notify.sh"}`), 201)
	want(t, "editor creates namespace", editor.do("POST", "/api/core/v2/namespaces", `{"name":"ops"}`), 403)
	want(t, "editor deletes", editor.do("DELETE", "/api/core/v2/namespaces/default/handlers/slack", nil), 204)

	users := admin.do("GET", "/api/core/v2/users", nil)
	want(t, "admin lists users", users, 200)
	if !strings.Contains(string(users.body), "password_hash") || strings.Contains(string(users.body), `"password":`) {
		t.Fatalf("admin's user list should carry hashes and no passwords: %s", users.body)
	}
	want(t, "disable viewer", admin.do("PATCH", "/api/core/v2/users/vera", `{"disabled":true}`), 200)
	want(t, "disabled user's token", viewer.do("GET", "/auth/test", nil), 401)
	want(t, "delete self", admin.do("DELETE", "/api/core/v2/users/admin", nil), 409)
}

func TestPagingAndNamespaces(t *testing.T) {
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	want(t, "create ns", c.do("POST", "/api/core/v2/namespaces", `{"name":"paging"}`), 201)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		want(t, "create "+name, c.do("PUT", "/api/core/v2/namespaces/paging/mutators/"+name, `{"metadata":{"name":"`+name+`"},"command":"cat"}`), 201)
	}
	var names []string
	cont := ""
	pages := 0
	for {
		a := c.do("GET", "/api/core/v2/namespaces/paging/mutators?limit=2&continue="+cont, nil)
		want(t, "page", a, 200)
		var items []struct{ Metadata struct{ Name string } }
		a.json(t, &items)
		for _, it := range items {
			names = append(names, it.Metadata.Name)
		}
		pages++
		cont = a.header.Get("Sensu-Continue")
		if cont == "" {
			break
		}
	}
	if strings.Join(names, "") != "abcde" || pages != 3 {
		t.Fatalf("paged %d pages: %v", pages, names)
	}
	all := c.do("GET", "/api/core/v2/mutators", nil)
	want(t, "all namespaces", all, 200)
	if !strings.Contains(string(all.body), `"namespace":"paging"`) {
		t.Fatalf("cross-namespace list: %s", all.body)
	}
	want(t, "delete non-empty ns", c.do("DELETE", "/api/core/v2/namespaces/paging", nil), 409)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		want(t, "delete "+name, c.do("DELETE", "/api/core/v2/namespaces/paging/mutators/"+name, nil), 204)
	}
	want(t, "delete empty ns", c.do("DELETE", "/api/core/v2/namespaces/paging", nil), 204)
	want(t, "list in deleted ns", c.do("GET", "/api/core/v2/namespaces/paging/mutators", nil), 404)
}

func TestEventsRoutes(t *testing.T) {
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	ev := `{"entity":{"metadata":{"name":"web1"},"entity_class":"proxy"},"check":{"metadata":{"name":"http"},"command":"true","interval":10,"status":2,"output":"down"}}`
	want(t, "put event", c.do("PUT", "/api/core/v2/namespaces/default/events/web1/http", ev), 201)
	want(t, "get event", c.do("GET", "/api/core/v2/namespaces/default/events/web1/http", nil), 200)
	a := c.do("GET", "/api/core/v2/namespaces/default/events/web1", nil)
	want(t, "entity's events", a, 200)
	var items []any
	a.json(t, &items)
	if len(items) != 1 {
		t.Fatalf("events of web1: %s", a.body)
	}
	want(t, "delete event", c.do("DELETE", "/api/core/v2/namespaces/default/events/web1/http", nil), 204)
}

func TestAPIKeys(t *testing.T) {
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	a := c.do("POST", "/api/core/v2/apikeys", `{"username":"admin"}`)
	want(t, "create key", a, 201)
	loc := a.header.Get("Location")
	key := loc[strings.LastIndex(loc, "/")+1:]
	if len(key) != 36 {
		t.Fatalf("Location %q does not end in a key", loc)
	}
	anon := &apiClient{t: t, base: n.URL}
	want(t, "key auth", anon.do("GET", "/auth/test", nil, "Authorization", "Key "+key), 200)
	want(t, "key for unknown user", c.do("POST", "/api/core/v2/apikeys", `{"username":"ghost"}`), 400)
	want(t, "revoke", c.do("DELETE", "/api/core/v2/apikeys/"+key, nil), 204)
	want(t, "revoked key", anon.do("GET", "/auth/test", nil, "Authorization", "Key "+key), 401)
}

func TestMetricsCountRequests(t *testing.T) {
	n := sharedNode(t)
	anon := &apiClient{t: t, base: n.URL}
	anon.do("GET", "/api/core/v2/namespaces", nil)
	m := anon.do("GET", "/metrics", nil)
	for _, s := range []string{`picket_http_requests_total{code="401",method="GET",route="/api/core/v2/"}`, "picket_http_request_duration_seconds_bucket", "picket_auth_failures_total"} {
		if !strings.Contains(string(m.body), s) {
			t.Fatalf("metrics lack %s", s)
		}
	}
	h := anon.do("GET", "/health", nil)
	var health struct {
		ClusterHealth []struct {
			Name    string
			Healthy bool
		}
	}
	h.json(t, &health)
	if len(health.ClusterHealth) != 1 || !health.ClusterHealth[0].Healthy {
		t.Fatalf("health: %s", h.body)
	}
}

func TestTokenRefreshAndExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.StartWith(t, nodetest.Options{AccessTokenTTL: 2 * time.Second})
	c, tok := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	want(t, "fresh token", c.do("GET", "/auth/test", nil), 200)
	time.Sleep(3100 * time.Millisecond) // JWT expiry has whole-second resolution
	a := c.do("GET", "/auth/test", nil)
	want(t, "expired token", a, 401)
	if !strings.Contains(string(a.body), "expired") {
		t.Fatalf("expiry message: %s", a.body)
	}
	refresh := func(access, refresh string) answer {
		r := &apiClient{t: t, base: n.URL, token: access}
		return r.do("POST", "/auth/token", map[string]string{"refresh_token": refresh})
	}
	want(t, "wrong refresh token", refresh(tok.AccessToken, "nope"), 401)
	a = refresh(tok.AccessToken, tok.RefreshToken)
	want(t, "refresh", a, 200)
	var next tokens
	a.json(t, &next)
	c.token = next.AccessToken
	want(t, "refreshed token", c.do("GET", "/auth/test", nil), 200)
	want(t, "refresh token reuse", refresh(tok.AccessToken, tok.RefreshToken), 401)
	want(t, "logout", c.do("POST", "/auth/logout", nil), 204)
	want(t, "after logout", c.do("GET", "/auth/test", nil), 401)
	want(t, "refresh after logout", refresh(next.AccessToken, next.RefreshToken), 401)
}

func TestRestartKeepsData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	dir := t.TempDir()
	n := nodetest.StartWith(t, nodetest.Options{StateDir: dir})
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	want(t, "create", c.do("POST", "/api/core/v2/namespaces/default/checks", checkJSON), 201)
	n.Stop(t)
	n2 := nodetest.StartWith(t, nodetest.Options{StateDir: dir})
	c2, _ := login(t, n2.URL, nodetest.AdminUser, nodetest.AdminPassword)
	want(t, "get after restart", c2.do("GET", "/api/core/v2/namespaces/default/checks/cpu", nil), 200)
}

func TestClusterAndInfoRoutes(t *testing.T) {
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	a := c.do("GET", "/api/core/v2/cluster/members", nil)
	want(t, "members", a, 200)
	var ml struct {
		Members []struct {
			ID   uint64
			Name string `json:"name"`
		} `json:"members"`
	}
	a.json(t, &ml)
	if len(ml.Members) != 1 || ml.Members[0].Name != "test" {
		t.Fatalf("members: %s", a.body)
	}
	want(t, "cluster id", c.do("GET", "/api/core/v2/cluster/id", nil), 200)
	want(t, "bad member id", c.do("DELETE", "/api/core/v2/cluster/members/zz", nil), 400)
	want(t, "add without peers", c.do("POST", "/api/core/v2/cluster/members", nil), 400)
	want(t, "unknown cluster route", c.do("GET", "/api/core/v2/cluster/nope", nil), 404)
	info := c.do("GET", "/info", nil)
	want(t, "info", info, 200)
	for _, s := range []string{`"name":"test"`, `"check-request-publisher"`, `"aggregate-pruner"`} {
		if !strings.Contains(string(info.body), s) {
			t.Fatalf("info lacks %s: %s", s, info.body)
		}
	}
	want(t, "create viewer", c.do("PUT", "/api/core/v2/users/val", `{"username":"val","password":"val-password","groups":["viewers"]}`), 201)
	v, _ := login(t, n.URL, "val", "val-password")
	want(t, "viewer reads members", v.do("GET", "/api/core/v2/cluster/members", nil), 200)
	want(t, "viewer adds member", v.do("POST", "/api/core/v2/cluster/members?peer-addrs=http://127.0.0.9:2380", nil), 403)
	want(t, "viewer info", v.do("GET", "/info", nil), 200)
	ver := c.do("GET", "/version", nil)
	if !strings.Contains(string(ver.body), "etcdserver") {
		t.Fatalf("version lacks etcd: %s", ver.body)
	}
}
