package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/nodetest"
)

// wsAgent speaks the wire protocol directly, frame by frame, as a Sensu agent does; the
// gateway under test is real.
type wsAgent struct {
	t      *testing.T
	conn   *websocket.Conn
	resp   *http.Response
	frames chan [2]string
	errc   chan error
}

// mustDialAgent connects an agent to n's gateway, ending the test if it cannot.
func mustDialAgent(t *testing.T, n *nodetest.Node, name, ns, user, pass string, subs []string, acks bool) *wsAgent {
	t.Helper()
	a, err := dialAgent(t, n.AgentURL, name, ns, user, pass, subs, acks)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// readyAgent dials name as the agent user, with acks and marked resends as a Picket
// agent asks, and waits for its entity config: the session is ready for events.
func readyAgent(t *testing.T, n *nodetest.Node, name string) *wsAgent {
	t.Helper()
	a := mustDialAgent(t, n, name, "default", "agent", nodetest.AgentPassword, []string{"linux"}, true)
	a.next(agentgw.TypeEntityConfig, 5*time.Second)
	return a
}

func dialAgent(t *testing.T, url, name, ns, user, pass string, subs []string, acks bool) (*wsAgent, error) {
	t.Helper()
	h := http.Header{}
	h.Set(agentgw.HeaderAgentName, name)
	h.Set(agentgw.HeaderNamespace, ns)
	h.Set(agentgw.HeaderSubscriptions, strings.Join(subs, ","))
	h.Set(agentgw.HeaderUser, user)
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	if acks {
		h.Set(agentgw.AckHeader, "1")
		h.Set(agentgw.ResendHeader, "1") // as a Picket agent asks
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return &wsAgent{resp: resp}, err
	}
	conn.SetReadLimit(agentgw.MaxFrameSize)
	a := &wsAgent{t: t, conn: conn, resp: resp, frames: make(chan [2]string, 100), errc: make(chan error, 1)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				a.errc <- err
				close(a.frames)
				return
			}
			typ, payload, _ := agentgw.Decode(b)
			a.frames <- [2]string{typ, string(payload)}
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return a, nil
}

func (a *wsAgent) send(typ string, v any) {
	a.t.Helper()
	payload, _ := json.Marshal(v)
	if err := a.conn.Write(context.Background(), websocket.MessageBinary, agentgw.Encode(typ, payload)); err != nil {
		a.t.Fatalf("send %s: %v", typ, err)
	}
}

// next waits for the next frame of type typ, skipping others.
func (a *wsAgent) next(typ string, d time.Duration) string {
	a.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-a.frames:
			if !ok {
				a.t.Fatalf("connection closed waiting for %s: %v", typ, <-a.errc)
			}
			if f[0] == typ {
				return f[1]
			}
		case <-deadline:
			a.t.Fatalf("no %s frame within %s", typ, d)
		}
	}
}

func keepalive(name string, warning int64) *events.Event {
	ent := &events.Entity{EntityClass: "agent", Subscriptions: []string{"linux"}}
	ent.Metadata.Name = name
	chk := &events.Check{}
	chk.Metadata.Name = "keepalive"
	chk.Interval, chk.Timeout = 1, warning
	return &events.Event{Entity: ent, Check: chk, Timestamp: time.Now().Unix()}
}

func result(name, check string, status uint32, id string) *events.Event {
	ev := keepalive(name, 120)
	ev.Check.Metadata.Name = check
	ev.Check.Status, ev.Check.Output, ev.Check.Executed = status, "output of "+check, time.Now().Unix()
	ev.Check.Interval, ev.Check.Timeout = 10, 0
	ev.ID = id
	return ev
}

// adminToken logs in as the test admin and returns an access token.
func adminToken(t *testing.T, n *nodetest.Node) string {
	t.Helper()
	req, _ := http.NewRequest("GET", n.URL+"/auth", nil)
	req.SetBasicAuth(nodetest.AdminUser, nodetest.AdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// adminCall sends one authenticated request as the admin and returns the status and body.
func adminCall(t *testing.T, n *nodetest.Node, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, n.URL+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+adminToken(t, n))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func apiGet(t *testing.T, n *nodetest.Node, path string, v any) int {
	t.Helper()
	st, b := adminCall(t, n, "GET", path, "")
	if v != nil && st == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
	}
	return st
}

func apiDo(t *testing.T, n *nodetest.Node, method, path, body string) int {
	t.Helper()
	st, _ := adminCall(t, n, method, path, body)
	return st
}

func TestGatewayHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	cases := []struct {
		name, ns, user, pass string
		status               int
	}{
		{"wrong password", "default", "agent", "wrong", 401},
		{"unknown user", "default", "nobody", "x", 401},
		{"unknown namespace", "nope", "agent", nodetest.AgentPassword, 404},
	}
	for _, c := range cases {
		a, err := dialAgent(t, n.AgentURL, "a1", c.ns, c.user, c.pass, nil, false)
		if err == nil || a.resp == nil || a.resp.StatusCode != c.status {
			code := 0
			if a.resp != nil {
				code = a.resp.StatusCode
			}
			t.Errorf("%s: status %d, err %v; want %d", c.name, code, err, c.status)
		}
	}
	if st := apiDo(t, n, "POST", "/api/core/v2/users", `{"username":"watcher","password":"watcher-pass","groups":["viewers"]}`); st != 201 {
		t.Fatalf("create viewer: %d", st)
	}
	a, err := dialAgent(t, n.AgentURL, "a1", "default", "watcher", "watcher-pass", nil, false)
	if err == nil || a.resp == nil || a.resp.StatusCode != 403 {
		t.Errorf("viewer may not connect as an agent: %v", err)
	}
	ok := mustDialAgent(t, n, "a1", "default", "agent", nodetest.AgentPassword, nil, true)
	if ok.resp.Header.Get(agentgw.HeaderBackendID) != "test" || ok.resp.Header.Get(agentgw.AckHeader) != "1" || ok.resp.Header.Get("Accept") != "application/json" {
		t.Fatalf("response headers: %v", ok.resp.Header)
	}
	ok.next(agentgw.TypeEntityConfig, 5*time.Second)
}

// TestResentEventIsStoredOnce: an agent resends an event whose ack it lost; the server
// acknowledges it again and does not store it twice, also when other results of the same
// check came in between (up to the last 16 results are remembered).
func TestResentEventIsStoredOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	a := readyAgent(t, n, "resend1")
	send := func(id string, status uint32) {
		t.Helper()
		a.send(agentgw.TypeEvent, result("resend1", "disk", status, id))
		if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, id) {
			t.Fatalf("ack for %s: %s", id, ack)
		}
	}
	send("first", 2)
	send("first", 2) // the ack was lost: the same result again
	for i := 0; i < 5; i++ {
		send(fmt.Sprintf("later-%d", i), 0)
	}
	send("first", 2) // resent late, after others
	var ev events.Event
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/resend1/disk", &ev); st != 200 {
		t.Fatalf("event: %d", st)
	}
	if len(ev.Check.History) != 6 || ev.ID != "later-4" || ev.Check.Status != 0 {
		t.Fatalf("stored: id %s, status %d, history %+v; want later-4, 0 and 6 results", ev.ID, ev.Check.Status, ev.Check.History)
	}
}

func TestAgentEventsAndBadFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	a := mustDialAgent(t, n, "web1", "default", "agent", nodetest.AgentPassword, []string{"linux"}, true)
	other := readyAgent(t, n, "web2")
	a.send(agentgw.TypeKeepalive, keepalive("web1", 120))
	a.send(agentgw.TypeEvent, result("web1", "disk", 2, "id-1"))
	if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, "id-1") {
		t.Fatalf("ack: %s", ack)
	}
	// Garbage and a payload that is not an event are dropped; the session lives on.
	if err := a.conn.Write(context.Background(), websocket.MessageBinary, []byte("\x00\x01garbage")); err != nil {
		t.Fatal(err)
	}
	a.send(agentgw.TypeEvent, "not an event")
	a.send(agentgw.TypeEvent, result("web1", "disk", 0, "id-2"))
	if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, "id-2") {
		t.Fatalf("ack after garbage: %s", ack)
	}
	var ev events.Event
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/web1/disk", &ev); st != 200 {
		t.Fatalf("event: %d", st)
	}
	if ev.Check.Status != 0 || len(ev.Check.History) != 2 || ev.Check.History[0].Status != 2 || ev.Check.State != "passing" {
		t.Fatalf("event state: %+v", ev.Check)
	}
	// Stored compact, without its empty fields; the API shows it whole, one event or a list.
	kv, err := n.Store().Get(context.Background(), "/picket/events/default/web1/disk")
	if err != nil {
		t.Fatal(err)
	}
	if s := string(kv.Value); strings.Contains(s, `"status":0`) || strings.Contains(s, "proxy_entity_name") || !strings.Contains(s, `"history":[{"status":2,`) {
		t.Errorf("stored event is not compact: %s", s)
	}
	// ... and compressed: etcd holds the mark and an S2 block (the Store reads it plain).
	if raw, err := n.Store().Client().Get(context.Background(), kv.Key); err != nil || len(raw.Kvs) != 1 ||
		raw.Kvs[0].Value[0] != 0xfe || len(raw.Kvs[0].Value) >= len(kv.Value) {
		t.Errorf("stored event is not compressed: %v %v", raw, err)
	}
	for _, path := range []string{"/api/core/v2/namespaces/default/events/web1/disk", "/api/core/v2/namespaces/default/events"} {
		_, body := adminCall(t, n, "GET", path, "")
		if s := string(body); !strings.Contains(s, `"status":0,"total_state_change":`) || !strings.Contains(s, `"proxy_entity_name":""`) || !strings.Contains(s, `{"status":0,"executed":`) {
			t.Errorf("GET %s does not show the event whole: %s", path, s)
		}
	}
	var ent events.Entity
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/entities/web1", &ent); st != 200 || ent.LastSeen == 0 {
		t.Fatalf("entity from keepalive: %d %+v", st, ent)
	}

	// An oversized frame closes that session with "message too big"; others keep going.
	big := bytes.Repeat([]byte("x"), agentgw.MaxFrameSize+10)
	_ = a.conn.Write(context.Background(), websocket.MessageBinary, agentgw.Encode("event", big))
	select {
	case err := <-a.errc:
		if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Fatalf("oversized frame closed with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("oversized frame did not close the session")
	}
	other.send(agentgw.TypeEvent, result("web2", "disk", 1, "id-3"))
	if ack := other.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, "id-3") {
		t.Fatalf("other agent: %s", ack)
	}
}

func TestSchedulingDeliversOnGrid(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	a := mustDialAgent(t, n, "db1", "default", "agent", nodetest.AgentPassword, []string{"db"}, false)
	b := mustDialAgent(t, n, "web9", "default", "agent", nodetest.AgentPassword, []string{"web"}, false)
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/checks/ping",
		`{"metadata":{"name":"ping"},"command":"true","interval":2,"publish":true,"subscriptions":["db"]}`); st != 201 {
		t.Fatalf("create check: %d", st)
	}
	var issued []int64
	for i := 0; i < 2; i++ {
		var req agentgw.CheckRequest
		if err := json.Unmarshal([]byte(a.next(agentgw.TypeCheckRequest, 6*time.Second)), &req); err != nil {
			t.Fatal(err)
		}
		if req.Config.Metadata.Name != "ping" {
			t.Fatalf("request for %s", req.Config.Metadata.Name)
		}
		issued = append(issued, req.Issued)
	}
	if issued[1]-issued[0] != 2 {
		t.Fatalf("issued times %v are not one interval apart", issued)
	}
	grid := events.NextRun("ping", 2*time.Second, time.Unix(issued[0], 0).Add(-time.Nanosecond))
	if grid.Unix() != issued[0] {
		t.Fatalf("issued %d is not on the cadence grid (%d)", issued[0], grid.Unix())
	}
	select {
	case f := <-b.frames:
		if f[0] == agentgw.TypeCheckRequest {
			t.Fatalf("agent outside the subscription got %s", f[1])
		}
	default:
	}
	// Ad hoc execution reaches the agent at once.
	if st := apiDo(t, n, "POST", "/api/core/v2/namespaces/default/checks/ping/execute", `{"check":"ping","subscriptions":["web"]}`); st != 202 {
		t.Fatalf("execute: %d", st)
	}
	b.next(agentgw.TypeCheckRequest, 5*time.Second)
}

func TestKeepaliveMonitor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member and waits for a keepalive timeout")
	}
	n := nodetest.Start(t)
	a := mustDialAgent(t, n, "quiet1", "default", "agent", nodetest.AgentPassword, nil, false)
	a.send(agentgw.TypeKeepalive, keepalive("quiet1", 2))
	status := func() (uint32, error) {
		var ev events.Event
		if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/quiet1/keepalive", &ev); st != 200 {
			return 0, fmt.Errorf("status %d", st)
		}
		return ev.Check.Status, nil
	}
	waitStatus := func(want uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if s, err := status(); err == nil && s == want {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		s, err := status()
		t.Fatalf("keepalive status %d (%v), want %d", s, err, want)
	}
	waitStatus(0)
	waitStatus(1) // warning after the 2 s warning timeout
	// The monitor's fenced write stores compact too, as the grouped writer does; an empty
	// list stays one.
	if kv, err := n.Store().Get(context.Background(), "/picket/events/default/quiet1/keepalive"); err != nil ||
		strings.Contains(string(kv.Value), `"proxy_entity_name"`) || !strings.Contains(string(kv.Value), `"subscriptions":[]`) {
		t.Errorf("keepalive event from the monitor not stored compact (%v): %s", err, kv.Value)
	}
	a.send(agentgw.TypeKeepalive, keepalive("quiet1", 2))
	waitStatus(0)
}

func TestRoundRobinRotates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	got := make(chan string, 100)
	for _, name := range []string{"rr-a", "rr-b"} {
		a := mustDialAgent(t, n, name, "default", "agent", nodetest.AgentPassword, []string{"rr"}, false)
		ka := keepalive(name, 120)
		ka.Entity.Subscriptions = []string{"rr", "entity:" + name}
		a.send(agentgw.TypeKeepalive, ka)
		go func(name string, a *wsAgent) {
			for f := range a.frames {
				if f[0] == agentgw.TypeCheckRequest {
					var req agentgw.CheckRequest
					if json.Unmarshal([]byte(f[1]), &req) == nil {
						got <- fmt.Sprintf("%d %s", req.Issued, name)
					}
				}
			}
		}(name, a)
	}
	time.Sleep(300 * time.Millisecond) // both keepalives stored
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/checks/rr",
		`{"metadata":{"name":"rr"},"command":"true","interval":1,"publish":true,"round_robin":true,"subscriptions":["rr"]}`); st != 201 {
		t.Fatalf("create check: %d", st)
	}
	var seq []string
	for len(seq) < 4 {
		select {
		case s := <-got:
			seq = append(seq, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("round-robin requests so far: %v", seq)
		}
	}
	// One agent per tick, and consecutive ticks go to different agents.
	for i := 1; i < len(seq); i++ {
		var t0, t1 int64
		var a0, a1 string
		fmt.Sscanf(seq[i-1], "%d %s", &t0, &a0)
		fmt.Sscanf(seq[i], "%d %s", &t1, &a1)
		if t1 == t0 {
			t.Fatalf("two agents got tick %d: %v", t0, seq)
		}
		if t1 == t0+1 && a1 == a0 {
			t.Fatalf("tick %d and %d both went to %s: %v", t0, t1, a0, seq)
		}
	}
	t.Logf("round-robin sequence: %v", seq)
}

func TestProxyChecksAndTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	a := mustDialAgent(t, n, "poller", "default", "agent", nodetest.AgentPassword, []string{"proxy"}, true)
	for _, e := range []string{"site-a", "site-b"} {
		body := fmt.Sprintf(`{"metadata":{"name":%q,"labels":{"url":"https://%s.example"}},"entity_class":"proxy"}`, e, e)
		if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/entities/"+e, body); st != 201 {
			t.Fatalf("create entity %s: %d", e, st)
		}
	}
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/checks/http",
		`{"metadata":{"name":"http"},"command":"check-http {{ .labels.url }}","interval":2,"publish":true,"subscriptions":["proxy"],
		  "proxy_requests":{"entity_attributes":["entity.entity_class == 'proxy'"]}}`); st != 201 {
		t.Fatalf("create proxy check: %d", st)
	}
	seen := map[string]string{}
	for len(seen) < 2 {
		var req agentgw.CheckRequest
		if err := json.Unmarshal([]byte(a.next(agentgw.TypeCheckRequest, 8*time.Second)), &req); err != nil {
			t.Fatal(err)
		}
		seen[req.Config.ProxyEntityName] = req.Config.Command
	}
	if seen["site-a"] != "check-http https://site-a.example" || seen["site-b"] != "check-http https://site-b.example" {
		t.Fatalf("proxy requests: %v", seen)
	}

	// A result for a proxy entity is stored under it; with a ttl, silence raises an event.
	res := result("poller", "http", 0, "ttl-1")
	res.Check.ProxyEntityName, res.Check.Ttl, res.Check.Interval = "site-a", 2, 1
	a.send(agentgw.TypeEvent, res)
	a.next(agentgw.TypeAck, 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ev events.Event
		if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/site-a/http", &ev); st == 200 && ev.Check.Status == 1 &&
			strings.Contains(ev.Check.Output, "Last check execution was") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TTL event for site-a/http: %+v", ev.Check)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestDeregisterRemovesEntity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member and waits for a keepalive timeout")
	}
	n := nodetest.Start(t)
	a := mustDialAgent(t, n, "ephemeral1", "default", "agent", nodetest.AgentPassword, nil, true)
	out := filepath.Join(t.TempDir(), "deregistered")
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/handlers/dereg",
		fmt.Sprintf(`{"metadata":{"name":"dereg"},"type":"pipe","command":"cat > %s","timeout":10}`, out)); st != 201 {
		t.Fatalf("create handler: %d", st)
	}
	ka := keepalive("ephemeral1", 2)
	ka.Entity.Deregister = true
	ka.Entity.Deregistration.Handler = "dereg"
	a.send(agentgw.TypeKeepalive, ka)
	a.send(agentgw.TypeEvent, result("ephemeral1", "disk", 0, "d-1"))
	a.next(agentgw.TypeAck, 5*time.Second)
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/entities/ephemeral1", nil); st != 200 {
		t.Fatalf("entity not created: %d", st)
	}
	// Its session claims its events while it lasts.
	claim := "/picket/owners/default/ephemeral1"
	if _, err := n.Store().Get(context.Background(), claim); err != nil {
		t.Fatalf("claim of a connected agent: %v", err)
	}
	a.conn.CloseNow()
	deadline := time.Now().Add(10 * time.Second)
	for apiGet(t, n, "/api/core/v2/namespaces/default/entities/ephemeral1", nil) != 404 {
		if time.Now().After(deadline) {
			t.Fatal("entity with deregister: true still there after its keepalives stopped")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/ephemeral1/disk", nil); st != 404 {
		t.Fatalf("its events should go too: %d", st)
	}
	if _, err := n.Store().Get(context.Background(), claim); !errors.Is(err, etcdx.ErrNotFound) {
		t.Fatalf("claim after the agent left: %v; want it removed", err)
	}
	// The deregistration handler got the deregistration event.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, err := os.ReadFile(out); err == nil && strings.Contains(string(b), "deregistered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deregistration handler did not run")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAPIEventIsAResult(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	body := `{"entity":{"metadata":{"name":"router1"},"entity_class":"proxy"},"check":{"metadata":{"name":"ping"},"status":%d,"output":"from a script"}}`
	for i, st := range []int{2, 0} {
		if code := apiDo(t, n, "POST", "/api/core/v2/namespaces/default/events", fmt.Sprintf(body, st)); code != 201 {
			t.Fatalf("post %d: %d", i, code)
		}
	}
	var ev events.Event
	if apiGet(t, n, "/api/core/v2/namespaces/default/events/router1/ping", &ev) != 200 {
		t.Fatal("event not stored")
	}
	if len(ev.Check.History) != 2 || ev.Check.History[0].Status != 2 || ev.Check.State != "passing" || ev.Check.Occurrences != 1 {
		t.Fatalf("an API result should get state like an agent's: %+v", ev.Check)
	}
}

// TestCheckRequestsCarryHooks: a check request carries the definitions of the hooks its
// check's check_hooks name, scheduled or ad hoc; a hook that does not exist is left out.
func TestCheckRequestsCarryHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	a := mustDialAgent(t, n, "db2", "default", "agent", nodetest.AgentPassword, []string{"hooked"}, false)
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/hooks/ps", `{"metadata":{"name":"ps"},"command":"ps aux","timeout":10,"stdin":false}`); st != 201 {
		t.Fatalf("create hook: %d", st)
	}
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/checks/diag",
		`{"metadata":{"name":"diag"},"command":"false","interval":2,"publish":true,"subscriptions":["hooked"],"check_hooks":[{"critical":["ps","missing"]},{"non-zero":["ps"]}]}`); st != 201 {
		t.Fatalf("create check: %d", st)
	}
	check := func(how string) {
		var req agentgw.CheckRequest
		if err := json.Unmarshal([]byte(a.next(agentgw.TypeCheckRequest, 6*time.Second)), &req); err != nil {
			t.Fatal(err)
		}
		if len(req.Hooks) != 1 || req.Hooks[0].Metadata.Name != "ps" || req.Hooks[0].Command != "ps aux" || req.Hooks[0].Timeout != 10 {
			t.Fatalf("%s request carries hooks %+v, want the definition of ps only", how, req.Hooks)
		}
	}
	check("scheduled")
	if st := apiDo(t, n, "POST", "/api/core/v2/namespaces/default/checks/diag/execute", `{"check":"diag"}`); st != 202 {
		t.Fatalf("execute: %d", st)
	}
	check("ad hoc")
	// The API refuses check_hooks keys that select no status.
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/checks/bad",
		`{"metadata":{"name":"bad"},"command":"false","interval":2,"subscriptions":["x"],"check_hooks":[{"fatal":["ps"]}]}`); st != 400 {
		t.Fatalf("check_hooks key fatal: %d, want 400", st)
	}
}

// TestSubduedCheckIsNotPublished: no request goes out while a check's subdue covers the
// tick; once the subdue is removed, the next tick is published.
func TestSubduedCheckIsNotPublished(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	a := mustDialAgent(t, n, "db3", "default", "agent", nodetest.AgentPassword, []string{"quiet"}, false)
	check := `{"metadata":{"name":"quiet"},"command":"true","interval":1,"publish":true,"subscriptions":["quiet"]%s}`
	// A window that begins and ends at the same time lasts the whole day.
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/checks/quiet",
		fmt.Sprintf(check, `,"subdue":{"days":{"all":[{"begin":"12:00 AM","end":"12:00 AM"}]}}`)); st != 201 {
		t.Fatalf("create check: %d", st)
	}
	deadline := time.After(3500 * time.Millisecond)
	for done := false; !done; {
		select {
		case f := <-a.frames:
			if f[0] == agentgw.TypeCheckRequest {
				t.Fatalf("a subdued check was published: %s", f[1])
			}
		case <-deadline:
			done = true
		}
	}
	if st := apiDo(t, n, "PUT", "/api/core/v2/namespaces/default/checks/quiet", fmt.Sprintf(check, "")); st != 200 && st != 201 {
		t.Fatalf("update check: %d", st)
	}
	a.next(agentgw.TypeCheckRequest, 5*time.Second)
}

// TestEventStoredPlainByAnOlderBuild: events stored as plain JSON (before events were
// compressed) are shown by the API and continue their history when the next result
// arrives, which is stored compressed.
func TestEventStoredPlainByAnOlderBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	ctx := context.Background()
	key := "/picket/events/default/old1/disk"
	plain := `{"metadata":{"namespace":"default"},"timestamp":1796538262,"id":"old-2",` +
		`"entity":{"metadata":{"name":"old1","namespace":"default"},"entity_class":"agent"},` +
		`"check":{"metadata":{"name":"disk","namespace":"default"},"status":2,"state":"failing","occurrences":2,"occurrences_watermark":2,` +
		`"history":[{"status":2,"executed":1796538252},{"status":2,"executed":1796538262}]}}`
	if _, err := n.Store().Put(ctx, key, []byte(plain)); err != nil {
		t.Fatal(err)
	}
	var ev events.Event
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/old1/disk", &ev); st != 200 || ev.Check.Occurrences != 2 || len(ev.Check.History) != 2 {
		t.Fatalf("plain stored event through the API: %d %+v", st, ev.Check)
	}
	a := readyAgent(t, n, "old1")
	a.send(agentgw.TypeEvent, result("old1", "disk", 2, "new-3"))
	if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, "new-3") {
		t.Fatalf("ack: %s", ack)
	}
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/old1/disk", &ev); st != 200 || ev.ID != "new-3" || ev.Check.Occurrences != 3 || len(ev.Check.History) != 3 {
		t.Fatalf("after the next result: %d id %s %+v; want occurrences 3 and 3 results", st, ev.ID, ev.Check)
	}
	raw, err := n.Store().Client().Get(ctx, key)
	if err != nil || len(raw.Kvs) != 1 || raw.Kvs[0].Value[0] != 0xfe {
		t.Fatalf("the rewritten event is not compressed: %v %v", raw, err)
	}
}

// Results of one check that arrive back to back (an agent sending its queue after a
// reconnect) are stored in the order they were sent, though the gateway's workers take
// them side by side: the event shown is the last one sent, and the history runs in order.
func TestResultsOfOneCheckStoredInOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	a := readyAgent(t, n, "order1")
	const results = 20
	t0 := time.Now().Unix() - 1000
	for i := range results {
		r := result("order1", "disk", uint32(i%3), fmt.Sprintf("r-%02d", i))
		r.Check.Executed = t0 + int64(10*i)
		r.Check.Output = fmt.Sprintf("result %d", i)
		a.send(agentgw.TypeEvent, r)
	}
	for acked := 0; acked < results; {
		acked += strings.Count(a.next(agentgw.TypeAck, 10*time.Second), `"id"`)
	}
	var ev events.Event
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/order1/disk", &ev); st != 200 {
		t.Fatalf("event: %d", st)
	}
	if ev.Check.Output != fmt.Sprintf("result %d", results-1) || len(ev.Check.History) != results {
		t.Fatalf("stored %q with %d results; want the last one sent and %d", ev.Check.Output, len(ev.Check.History), results)
	}
	for i, h := range ev.Check.History {
		if h.Executed != t0+int64(10*i) {
			t.Fatalf("history out of order: %v", ev.Check.History)
		}
	}
}

// Results stored by another server (before a failover), which their agent resends here
// marked as resends: the stored event has only the last one's ID, and the earlier ones
// are known by the history, so none is stored twice. A marked resend the history does
// not hold is stored; an unmarked result is taken by its ID alone.
func TestResentResultsStoredElsewhereAreKnown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	ctx := context.Background()
	a := readyAgent(t, n, "resent2")
	const t0 = 1796538300
	other := `{"metadata":{"namespace":"default"},"timestamp":1796538300,"id":"other-3",` +
		`"entity":{"metadata":{"name":"resent2","namespace":"default"},"entity_class":"agent"},` +
		`"check":{"metadata":{"name":"disk","namespace":"default"},"status":2,"executed":1796538300,"state":"failing","occurrences":1,"occurrences_watermark":1,` +
		`"history":[{"status":2,"executed":1796538280},{"status":0,"executed":1796538290},{"status":2,"executed":1796538300}]}}`
	if _, err := n.Store().Put(ctx, "/picket/events/default/resent2/disk", []byte(other)); err != nil {
		t.Fatal(err)
	}
	deliver := func(a *wsAgent, typ string, r *events.Event) {
		t.Helper()
		a.send(typ, r)
		if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, r.ID) {
			t.Fatalf("ack for %s: %s", r.ID, ack)
		}
	}
	send := func(typ, id string, status uint32, executed int64) {
		t.Helper()
		r := result("resent2", "disk", status, id)
		r.Check.Executed = executed
		deliver(a, typ, r)
	}
	stored := func(entity, check, wantID string, wantResults int) {
		t.Helper()
		var ev events.Event
		if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/"+entity+"/"+check, &ev); st != 200 {
			t.Fatalf("event %s/%s: %d", entity, check, st)
		}
		if ev.ID != wantID || len(ev.Check.History) != wantResults {
			t.Fatalf("%s/%s stored: id %s, %d results; want %s and %d", entity, check, ev.ID, len(ev.Check.History), wantID, wantResults)
		}
	}
	send(agentgw.TypeResentEvent, "other-1", 2, t0-20)
	send(agentgw.TypeResentEvent, "other-2", 0, t0-10)
	send(agentgw.TypeResentEvent, "other-3", 2, t0)
	stored("resent2", "disk", "other-3", 3)
	// The same second with another status, and a later result: not stored before.
	send(agentgw.TypeResentEvent, "lost-4", 0, t0)
	stored("resent2", "disk", "lost-4", 4)
	send(agentgw.TypeResentEvent, "lost-5", 2, t0+10)
	stored("resent2", "disk", "lost-5", 5)
	// Not marked: a result like one in the history is new (a clock stepped back).
	send(agentgw.TypeEvent, "late-6", 0, t0-10)
	stored("resent2", "disk", "late-6", 6)

	// The key is in this server's cache when the other server writes it: the write's
	// condition fails, the other server's event is read, and its history knows the resend.
	b := readyAgent(t, n, "resent3")
	first := result("resent3", "disk", 0, "mine-1")
	first.Check.Executed = t0 - 30
	deliver(b, agentgw.TypeEvent, first)
	elsewhere := strings.ReplaceAll(other, "resent2", "resent3")
	if _, err := n.Store().Put(ctx, "/picket/events/default/resent3/disk", []byte(elsewhere)); err != nil {
		t.Fatal(err)
	}
	again := result("resent3", "disk", 0, "other-2")
	again.Check.Executed = t0 - 10
	deliver(b, agentgw.TypeResentEvent, again)
	stored("resent3", "disk", "other-3", 3)

	// A proxy entity's results come from several agents, at the same second with the
	// same status: a marked resend of one agent's is not taken for another's.
	proxy := `{"metadata":{"namespace":"default"},"timestamp":1796538300,"id":"pa-1",` +
		`"entity":{"metadata":{"name":"router4","namespace":"default"},"entity_class":"proxy"},` +
		`"check":{"metadata":{"name":"ping","namespace":"default"},"status":0,"executed":1796538300,"proxy_entity_name":"router4","state":"passing","history":[{"status":0,"executed":1796538300}]}}`
	if _, err := n.Store().Put(ctx, "/picket/events/default/router4/ping", []byte(proxy)); err != nil {
		t.Fatal(err)
	}
	pr := result("resent3", "ping", 0, "pb-1")
	pr.Check.Executed, pr.Check.ProxyEntityName = t0, "router4"
	deliver(b, agentgw.TypeResentEvent, pr)
	stored("router4", "ping", "pb-1", 2)
}

// A result whose event was rewritten behind this server's cache (another server, a
// monitor): the grouped write's condition fails, the stored event is read back, and the
// result's state builds on it rather than on the cache. The other writer's result, if
// its agent resends it here, is known as stored.
func TestEventWrittenElsewhereIsBuiltOn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	ctx := context.Background()
	a := readyAgent(t, n, "elsewhere1")
	send := func(id string) {
		t.Helper()
		a.send(agentgw.TypeEvent, result("elsewhere1", "disk", 2, id))
		if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, id) {
			t.Fatalf("ack for %s: %s", id, ack)
		}
	}
	send("mine-1")
	// Another writer stores a later state: four failing results in all.
	other := `{"metadata":{"namespace":"default"},"timestamp":1796538300,"id":"other-4",` +
		`"entity":{"metadata":{"name":"elsewhere1","namespace":"default"},"entity_class":"agent"},` +
		`"check":{"metadata":{"name":"disk","namespace":"default"},"status":2,"state":"failing","occurrences":4,"occurrences_watermark":4,` +
		`"history":[{"status":2,"executed":1796538270},{"status":2,"executed":1796538280},{"status":2,"executed":1796538290},{"status":2,"executed":1796538300}]}}`
	if _, err := n.Store().Put(ctx, "/picket/events/default/elsewhere1/disk", []byte(other)); err != nil {
		t.Fatal(err)
	}
	send("mine-2")
	var ev events.Event
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/elsewhere1/disk", &ev); st != 200 {
		t.Fatalf("event: %d", st)
	}
	if ev.ID != "mine-2" || ev.Check.Occurrences != 5 || len(ev.Check.History) != 5 {
		t.Fatalf("stored: id %s, occurrences %d, %d results; want mine-2 built on the other writer's event: 5 and 5",
			ev.ID, ev.Check.Occurrences, len(ev.Check.History))
	}
	// That other writer's result, resent to this server, is known as stored.
	a.send(agentgw.TypeEvent, result("elsewhere1", "disk", 2, "other-4"))
	if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, "other-4") {
		t.Fatalf("ack for other-4: %s", ack)
	}
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/elsewhere1/disk", &ev); st != 200 || ev.ID != "mine-2" || len(ev.Check.History) != 5 {
		t.Fatalf("after the resend: id %s, %d results; want mine-2 and 5", ev.ID, len(ev.Check.History))
	}
	// A result with an unknown ID executed before the stored one, at the second and with
	// the status of a result in the history, is stored: after a clock stepped back a real
	// result looks just like that, so a result is taken for a resend by its ID alone.
	late := result("elsewhere1", "disk", 2, "late-1")
	late.Check.Executed = 1796538290
	a.send(agentgw.TypeEvent, late)
	if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, "late-1") {
		t.Fatalf("ack for late-1: %s", ack)
	}
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/elsewhere1/disk", &ev); st != 200 || ev.ID != "late-1" || len(ev.Check.History) != 6 {
		t.Fatalf("after a late result: id %s, %d results; want late-1 stored, 6", ev.ID, len(ev.Check.History))
	}
}

// metricValue reads one unlabelled metric from the node's /metrics.
func metricValue(t *testing.T, n *nodetest.Node, name string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}

// TestStateReadOncePerEntity: an agent's first results on a server that has no state
// for it cost one read of all its entity's events, not one per check, and build on what
// was stored; a check stored behind that read (by another writer) is caught by the
// write's condition and built on too; results that arrive together share one read.
func TestStateReadOncePerEntity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	ctx := context.Background()
	stored := func(entity, check string, occurrences int) string {
		hist := make([]string, occurrences)
		for i := range hist {
			hist[i] = fmt.Sprintf(`{"status":2,"executed":%d}`, 1796538200+10*i)
		}
		return fmt.Sprintf(`{"metadata":{"namespace":"default"},"timestamp":%d,"id":"before-%s",`+
			`"entity":{"metadata":{"name":%q,"namespace":"default"},"entity_class":"agent"},`+
			`"check":{"metadata":{"name":%q,"namespace":"default"},"status":2,"state":"failing",`+
			`"occurrences":%d,"occurrences_watermark":%d,"history":[%s]}}`,
			1796538200+10*(occurrences-1), check, entity, check, occurrences, occurrences, strings.Join(hist, ","))
	}
	store := func(entity string, checks []string, occurrences int) {
		t.Helper()
		for i := 0; i < len(checks); i += 100 {
			var ops []clientv3.Op
			for _, c := range checks[i:min(i+100, len(checks))] {
				ops = append(ops, clientv3.OpPut("/picket/events/default/"+entity+"/"+c, stored(entity, c, occurrences)))
			}
			if _, err := n.Store().Client().Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	type counts struct{ entity, key, conflicts float64 }
	read := func() counts {
		return counts{metricValue(t, n, "picket_event_state_entity_reads_total"),
			metricValue(t, n, "picket_event_state_key_reads_total"),
			metricValue(t, n, "picket_event_write_conflicts_total")}
	}
	expect := func(what string, from counts, entity, key, conflicts float64) counts {
		t.Helper()
		now := read()
		if d := (counts{now.entity - from.entity, now.key - from.key, now.conflicts - from.conflicts}); d != (counts{entity, key, conflicts}) {
			t.Errorf("%s: %v entity reads, %v single-key reads, %v conflicts; want %v, %v, %v",
				what, d.entity, d.key, d.conflicts, entity, key, conflicts)
		}
		return now
	}
	check := func(entity, name string, occurrences int) {
		t.Helper()
		var ev events.Event
		if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/"+entity+"/"+name, &ev); st != 200 {
			t.Fatalf("event %s/%s: %d", entity, name, st)
		}
		if ev.ID != "new-"+name || ev.Check.Occurrences != int64(occurrences) || len(ev.Check.History) != occurrences {
			t.Errorf("%s/%s: id %s, occurrences %d, %d results; want new-%s, %d and %d",
				entity, name, ev.ID, ev.Check.Occurrences, len(ev.Check.History), name, occurrences, occurrences)
		}
	}
	connect := func(entity string) (send func(check string), sendAll func(checks []string)) {
		a := mustDialAgent(t, n, entity, "default", "agent", nodetest.AgentPassword, []string{"linux"}, true)
		a.next(agentgw.TypeEntityConfig, 5*time.Second)
		sendAll = func(checks []string) {
			t.Helper()
			for _, c := range checks {
				a.send(agentgw.TypeEvent, result(entity, c, 2, "new-"+c))
			}
			for range checks {
				if ack := a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, "new-") {
					t.Fatalf("want an ack: %s", ack)
				}
			}
		}
		return func(check string) { t.Helper(); sendAll([]string{check}) }, sendAll
	}

	store("scan1", []string{"a", "b", "c"}, 3)
	c0 := read()
	send, _ := connect("scan1")
	for _, c := range []string{"a", "b", "c", "d"} {
		send(c)
	}
	for _, c := range []string{"a", "b", "c"} {
		check("scan1", c, 4)
	}
	check("scan1", "d", 1)
	c1 := expect("four checks of one entity, one after the other", c0, 1, 0, 0)
	// Another writer stores a check this server took for absent when it read the entity.
	store("scan1", []string{"e"}, 4)
	send("e")
	check("scan1", "e", 5)
	c2 := expect("a check stored behind the entity's read", c1, 0, 0, 1)

	// An entity with more events than one read takes: a check beyond the first 256 is
	// read on its own, one among them was filled by the entity's read, and the entity's
	// other checks are read one at a time from then on.
	var many []string
	for i := 0; i < 300; i++ {
		many = append(many, fmt.Sprintf("c%03d", i))
	}
	store("scan2", many, 1)
	send2, _ := connect("scan2")
	for _, c := range []string{"c299", "c000", "c298"} {
		send2(c)
		check("scan2", c, 2)
	}
	c3 := expect("c299, c000, c298 of a 300-check entity", c2, 1, 2, 0)

	// Twenty results that arrive together (an agent resending its queue after a
	// failover) share the entity's read instead of each reading all twenty events.
	store("scan3", many[:20], 1)
	_, sendAll3 := connect("scan3")
	sendAll3(many[:20])
	for _, c := range many[:20] {
		check("scan3", c, 2)
	}
	now := read()
	if d := now.entity - c3.entity; d < 1 || d > 10 || now.key != c3.key || now.conflicts != c3.conflicts {
		t.Errorf("twenty results of one entity at once: %v entity reads (want a few at most, not one each), %v single-key reads, %v conflicts (want 0 and 0)",
			d, now.key-c3.key, now.conflicts-c3.conflicts)
	}
}
