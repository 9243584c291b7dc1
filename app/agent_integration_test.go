package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/nodetest"
)

// tcpProxy forwards connections to a target that can change, so an agent keeps one
// backend URL while the test stops a node and starts it again on other ports.
type tcpProxy struct {
	ln     net.Listener
	target atomic.Pointer[string]
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newTCPProxy(t *testing.T) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) setTarget(wsURL string) {
	hostport := strings.TrimPrefix(wsURL, "ws://")
	p.target.Store(&hostport)
}

// cut closes every connection through the proxy at once, as a dead server or network
// would: nothing more reaches either side.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			target := p.target.Load()
			if target == nil {
				return
			}
			up, err := net.DialTimeout("tcp", *target, 2*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			p.track(c, true)
			p.track(up, true)
			defer p.track(c, false)
			defer p.track(up, false)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
			c.Close()
			up.Close()
			<-done
		}()
	}
}

// apiClient talks to a test node's REST API as the admin.
type apiClient struct {
	t    *testing.T
	base string
	tok  string
}

func newAPIClient(t *testing.T, base string) *apiClient {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/auth", nil)
	req.SetBasicAuth(nodetest.AdminUser, nodetest.AdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return &apiClient{t: t, base: base, tok: tok.AccessToken}
}

func (c *apiClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Authorization", "Bearer "+c.tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *apiClient) event(entity, check string) *events.Event {
	code, b := c.do("GET", "/api/core/v2/namespaces/default/events/"+entity+"/"+check, nil)
	if code != http.StatusOK {
		return nil
	}
	ev := &events.Event{}
	if err := json.Unmarshal(b, ev); err != nil {
		c.t.Fatalf("event %s/%s: %v", entity, check, err)
	}
	return ev
}

func queueFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "queue", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAgentPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startInProcessAgent runs `picket agent args...` in this process, its log in stderr, until stop;
// stop waits for it at most 10 s and returns its exit code (-1 when it did not stop in
// time, which is reported), and can be called again.
func startInProcessAgent(t *testing.T, args ...string) (stderr *syncBuffer, stop func() int) {
	t.Helper()
	stderr = &syncBuffer{}
	env := testEnv(nil)
	env.Stderr = stderr
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- Run(ctx, env, append([]string{"agent"}, args...)) }()
	code, stopped := 0, false
	stop = func() int {
		if stopped {
			return code
		}
		stopped = true
		cancel()
		select {
		case code = <-exited:
		case <-time.After(10 * time.Second):
			code = -1
			t.Error("agent did not stop within 10s of the signal")
		}
		return code
	}
	return stderr, stop
}

// TestAgentAgainstRealServer runs `picket agent` in-process against a real node: the
// agent connects and keeps its entity alive, runs a published check, its results are
// acknowledged and leave the queue, and 50 events posted to the local API while the
// server is down all arrive exactly once after it comes back.
func TestAgentAgainstRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real node")
	}
	n := nodetest.Start(t)
	proxy := newTCPProxy(t)
	proxy.setTarget(n.AgentURL)
	api := newAPIClient(t, n.URL)

	check := map[string]any{
		"metadata": map[string]any{"name": "itest", "namespace": "default"},
		"command":  "echo itest-ok; exit 1", "interval": 1, "publish": true, "subscriptions": []string{"itest"},
	}
	if code, b := api.do("PUT", "/api/core/v2/namespaces/default/checks/itest", check); code/100 != 2 {
		t.Fatalf("create check: %d %s", code, b)
	}

	cache := t.TempDir()
	apiPort := freeAgentPort(t)
	stderr, stopAgent := startInProcessAgent(t, "-c", writeConfigFile(t, "agent.yml", "labels: {api_key: hunter2}\n"),
		"--name", "itest-agent", "--password", nodetest.AgentPassword,
		"--backend-url", "ws://"+proxy.ln.Addr().String(), "--subscriptions", "itest",
		"--cache-dir", cache, "--api-port", strconv.Itoa(apiPort), "--retry-min", "50ms", "--retry-max", "500ms",
		"--keepalive-interval", "1", "--log-level", "debug")
	stop := func() {
		if code := stopAgent(); code > 0 {
			t.Errorf("agent exit code %d\n%s", code, stderr.String())
		}
	}
	defer stop()
	local := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	healthz := func() int {
		resp, err := http.Get(local + "/healthz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Keepalives create the entity, with real system facts and redacted labels.
	waitFor(t, "the agent's entity", 20*time.Second, func() bool {
		code, _ := api.do("GET", "/api/core/v2/namespaces/default/entities/itest-agent", nil)
		return code == http.StatusOK
	})
	_, b := api.do("GET", "/api/core/v2/namespaces/default/entities/itest-agent", nil)
	var ent events.Entity
	if err := json.Unmarshal(b, &ent); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if ent.System.Hostname != host || ent.System.OS == "" || len(ent.System.Network.Interfaces) == 0 || ent.Metadata.Labels["api_key"] != "REDACTED" {
		t.Errorf("entity = %s", b)
	}
	waitFor(t, "healthz 200", 10*time.Second, func() bool { return healthz() == http.StatusOK })

	// The published check runs on the agent and its result arrives, then leaves the queue
	// once acknowledged.
	waitFor(t, "the check's event", 30*time.Second, func() bool {
		ev := api.event("itest-agent", "itest")
		return ev != nil && ev.Check.Output == "itest-ok\n" && ev.Check.Status == 1
	})
	waitFor(t, "the queue to empty (acks)", 10*time.Second, func() bool { return queueFiles(t, cache) == 0 })
	if !strings.Contains(stderr.String(), `"acks":true`) {
		t.Errorf("the agent did not get acknowledgements:\n%s", stderr.String())
	}
	if code, b := api.do("DELETE", "/api/core/v2/namespaces/default/checks/itest", nil); code/100 != 2 {
		t.Fatalf("delete check: %d %s", code, b)
	}

	// The server goes away; 50 events posted meanwhile wait on disk.
	n.Stop(t)
	waitFor(t, "healthz 503", 20*time.Second, func() bool { return healthz() == http.StatusServiceUnavailable })
	for i := range 50 {
		body := fmt.Sprintf(`{"check": {"metadata": {"name": "posted-%02d"}, "status": 2, "output": "posted %d"}}`, i, i)
		resp, err := http.Post(local+"/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /events %d: %d", i, resp.StatusCode)
		}
	}
	if got := queueFiles(t, cache); got < 50 {
		t.Fatalf("%d events on disk, want at least 50", got)
	}

	// Back on the same state: every posted event arrives exactly once.
	n2 := nodetest.StartWith(t, nodetest.Options{StateDir: n.StateDir})
	proxy.setTarget(n2.AgentURL)
	api = newAPIClient(t, n2.URL)
	waitFor(t, "the queue to drain", 60*time.Second, func() bool { return queueFiles(t, cache) == 0 })
	for i := range 50 {
		ev := api.event("itest-agent", fmt.Sprintf("posted-%02d", i))
		if ev == nil {
			t.Errorf("posted-%02d did not arrive", i)
			continue
		}
		if ev.Check.Output != fmt.Sprintf("posted %d", i) || ev.Check.Status != 2 || len(ev.Check.History) != 1 || ev.Check.Occurrences != 1 {
			t.Errorf("posted-%02d: output %q status %d history %d occurrences %d (want exactly one result)",
				i, ev.Check.Output, ev.Check.Status, len(ev.Check.History), ev.Check.Occurrences)
		}
	}
	waitFor(t, "healthz 200 again", 10*time.Second, func() bool { return healthz() == http.StatusOK })
	stop()
	if os.Getenv("PICKET_TEST_SHOW_LOG") != "" {
		t.Log(stderr.String())
	}
	if !strings.Contains(stderr.String(), "picket agent stopped") {
		t.Errorf("no clean stop in the log:\n%s", stderr.String())
	}
}

// TestAgentRefusedByRealServer checks the agent names the problem when a real server
// refuses it, and keeps retrying.
func TestAgentRefusedByRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real node")
	}
	n := nodetest.Start(t)
	for _, tt := range []struct {
		name string
		args []string
		log  string
	}{
		{"wrong password", []string{"--password", "wrong-password"}, `check user \"agent\" and password`},
		{"unknown namespace", []string{"--password", nodetest.AgentPassword, "--namespace", "nope"}, `namespace \"nope\" does not exist on the backend`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr syncBuffer
			env := testEnv(nil)
			env.Stderr = &stderr
			ctx, cancel := context.WithCancel(context.Background())
			exited := make(chan int, 1)
			args := append([]string{"agent", "-c", writeConfigFile(t, "agent.yml", "{}\n"), "--backend-url", n.AgentURL,
				"--cache-dir", t.TempDir(), "--disable-api", "--retry-min", "50ms", "--retry-max", "200ms"}, tt.args...)
			go func() { exited <- Run(ctx, env, args) }()
			waitFor(t, "two refusals in the log", 20*time.Second, func() bool {
				return strings.Count(stderr.String(), tt.log) >= 2
			})
			cancel()
			if code := <-exited; code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr.String())
			}
		})
	}
}

// TestAgentFailoverStoresResultsOnce: a server stores an agent's results but has not
// acknowledged them (its acks wait 30 s to go out together) when the agent's connection
// is cut; the agent fails over to another server of the same cluster and resends them,
// marked as resends. The new server knows only the last one's ID, and the check's
// history tells it the others were stored: every result is in the history once.
func TestAgentFailoverStoresResultsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two real nodes")
	}
	n1 := nodetest.StartWith(t, nodetest.Options{AgentAckDelay: 30 * time.Second})
	n2 := nodetest.StartWith(t, nodetest.Options{Etcd: n1.Store().Client().Endpoints(), Name: "test2"})
	proxy := newTCPProxy(t)
	proxy.setTarget(n1.AgentURL)
	api := newAPIClient(t, n1.URL)
	cache := t.TempDir()
	apiPort := freeAgentPort(t)
	stderr, stop := startInProcessAgent(t, "--name", "fo-agent", "--password", nodetest.AgentPassword,
		"--backend-url", "ws://"+proxy.ln.Addr().String(), "--subscriptions", "fo",
		"--cache-dir", cache, "--api-port", strconv.Itoa(apiPort), "--retry-min", "50ms", "--retry-max", "200ms")
	defer stop()
	waitFor(t, "the agent's entity", 20*time.Second, func() bool {
		code, _ := api.do("GET", "/api/core/v2/namespaces/default/entities/fo-agent", nil)
		return code == http.StatusOK
	})

	// Five results of one check through the agent's API: n1 stores them, acknowledges the
	// first at once and holds the other acks back.
	const results = 5
	t0 := time.Now().Unix() - 100
	for i := range results {
		body := fmt.Sprintf(`{"check": {"metadata": {"name": "fo"}, "status": %d, "output": "result %d", "executed": %d}}`, i%2, i, t0+int64(10*i))
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/events", apiPort), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /events %d: %d", i, resp.StatusCode)
		}
	}
	waitFor(t, "the results stored on n1, all but the first not acknowledged", 20*time.Second, func() bool {
		ev := api.event("fo-agent", "fo")
		return ev != nil && len(ev.Check.History) == results && queueFiles(t, cache) == results-1
	})

	// The connection dies; the agent reaches n2, which knows none of those IDs but the last.
	proxy.setTarget(n2.AgentURL)
	proxy.cut()
	waitFor(t, "n2 to acknowledge the resent results", 30*time.Second, func() bool {
		return strings.Count(stderr.String(), "connected to backend") >= 2 && queueFiles(t, cache) == 0
	})
	ev := newAPIClient(t, n2.URL).event("fo-agent", "fo")
	if ev == nil {
		t.Fatal("after the failover: no event")
	}
	if len(ev.Check.History) != results || ev.Check.Output != fmt.Sprintf("result %d", results-1) {
		t.Fatalf("after the failover: %d results in the history (%v), output %q; want the %d results once each, the last one current",
			len(ev.Check.History), ev.Check.History, ev.Check.Output, results)
	}
}
