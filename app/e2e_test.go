package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picketmon/picket/node/nodetest"
)

// These tests build the real picket binary and drive it as an operator would.

var built struct {
	once sync.Once
	path string
	err  error
}

func picketBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the picket binary")
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "picket-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "picket")
		out, err := exec.Command("go", "build", "-o", built.path, "..").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// freeTCPPorts returns n ports free on 127.0.0.1.
func freeTCPPorts(t *testing.T, n int) []int { return nodetest.FreePorts(t, n) }

// serverProc is a running `picket server` process.
type serverProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startServer(t *testing.T, bin string, args ...string) *serverProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"server"}, args...)...)
	cmd.Env = append(os.Environ(), "PICKET_BACKEND_LOG_LEVEL=info")
	p := &serverProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitFor waits until the output contains s, or the process exits, or the deadline.
func (p *serverProc) waitFor(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.stderr.String(), s) {
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("server exited (%v) before %q:\n%s", err, s, p.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no %q within %s:\n%s", s, d, p.stderr.String())
}

// exitWithin waits for the process to exit and returns its exit code.
func (p *serverProc) exitWithin(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("server still running after %s:\n%s", d, p.stderr.String())
	}
	return -1
}

func serverArgs(stateDir string, ports []int) []string {
	return []string{
		"--state-dir", stateDir,
		"--api-listen-address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--agent-port", fmt.Sprint(ports[1]),
		"--etcd-name", "e2e",
		"--etcd-listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		"--etcd-advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		"--etcd-listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[3]),
		"--etcd-initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[3]),
		"--etcd-initial-cluster", fmt.Sprintf("e2e=http://127.0.0.1:%d", ports[3]),
	}
}

func runPicket(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

func httpToken(t *testing.T, base, user, pass string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/auth", nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&tok) != nil {
		t.Fatalf("login %s: %d", user, resp.StatusCode)
	}
	return tok.AccessToken
}

func httpDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerProcessLifecycle(t *testing.T) {
	bin := picketBinary(t)
	state := t.TempDir()
	ports := freeTCPPorts(t, 4)
	args := serverArgs(state, ports)
	api := fmt.Sprintf("http://127.0.0.1:%d", ports[0])

	srv := startServer(t, bin, args...)
	srv.waitFor(t, "picket server ready", 30*time.Second)

	// A second server on the same state dir fails at once and says why.
	other := freeTCPPorts(t, 4)
	dup := startServer(t, bin, serverArgs(state, other)...)
	if code := dup.exitWithin(t, 10*time.Second); code != 1 {
		t.Fatalf("second server on the same state dir: exit %d", code)
	}
	if out := dup.stderr.String(); !strings.Contains(out, state) || !strings.Contains(out, "in use") {
		t.Fatalf("locked state dir message:\n%s", out)
	}
	// A second server on a busy API port fails at once too.
	busy := serverArgs(t.TempDir(), other)
	busy[3] = fmt.Sprintf("127.0.0.1:%d", ports[0])
	dup2 := startServer(t, bin, busy...)
	if code := dup2.exitWithin(t, 10*time.Second); code != 1 {
		t.Fatalf("second server on a busy port: exit %d", code)
	}
	if out := dup2.stderr.String(); !strings.Contains(out, "address already in use") || !strings.Contains(out, "api-listen-address") {
		t.Fatalf("busy port message:\n%s", out)
	}

	// init seeds the cluster once; a second run changes nothing.
	etcdURL := fmt.Sprintf("--etcd-client-urls=http://127.0.0.1:%d", ports[2])
	initEnv := []string{"PICKET_BACKEND_CLUSTER_ADMIN_PASSWORD=e2e-admin-pass"}
	out, code := runPicket(t, bin, initEnv, "init", etcdURL)
	if code != 0 || !strings.Contains(out, "Cluster initialized") || strings.Contains(out, "e2e-admin-pass") {
		t.Fatalf("init: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "agent") {
		t.Fatalf("init should print the generated agent password:\n%s", out)
	}
	out, code = runPicket(t, bin, initEnv, "init", etcdURL)
	if code != 0 || !strings.Contains(out, "already initialized") {
		t.Fatalf("second init: exit %d\n%s", code, out)
	}

	token := httpToken(t, api, "admin", "e2e-admin-pass")
	st, body := httpDo(t, "POST", api+"/api/core/v2/namespaces/default/checks", token,
		`{"metadata":{"name":"disk"},"command":"check-disk","interval":30,"publish":true,"subscriptions":["linux"]}`)
	if st != 201 {
		t.Fatalf("create check: %d %s", st, body)
	}

	// SIGTERM stops the server cleanly within a few seconds.
	start := time.Now()
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.exitWithin(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, srv.stderr.String())
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))

	// A restart on the same state dir keeps every resource.
	srv2 := startServer(t, bin, args...)
	srv2.waitFor(t, "picket server ready", 30*time.Second)
	token = httpToken(t, api, "admin", "e2e-admin-pass")
	if st, body := httpDo(t, "GET", api+"/api/core/v2/namespaces/default/checks/disk", token, ""); st != 200 || !strings.Contains(body, "check-disk") {
		t.Fatalf("check after restart: %d %s", st, body)
	}
	_ = srv2.cmd.Process.Signal(syscall.SIGINT)
	srv2.exitWithin(t, 15*time.Second)
}

func TestDevServer(t *testing.T) {
	bin := picketBinary(t)
	port := freeTCPPorts(t, 3)
	// An etcd client URL given as a flag is kept (the peer port stays a free one).
	srv := startServer(t, bin, "--dev", "--api-listen-address", fmt.Sprintf("127.0.0.1:%d", port[0]), "--agent-port", fmt.Sprint(port[1]),
		"--etcd-listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", port[2]))
	srv.waitFor(t, "picket login", 30*time.Second)
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port[2])); err != nil {
		t.Errorf("etcd is not on the client URL given with --dev: %v", err)
	} else {
		c.Close()
	}
	var password string
	sc := bufio.NewScanner(strings.NewReader(srv.stderr.String()))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "password" {
			password = f[1]
		}
	}
	if len(password) < 16 {
		t.Fatalf("no generated password in:\n%s", srv.stderr.String())
	}
	token := httpToken(t, fmt.Sprintf("http://127.0.0.1:%d", port[0]), "admin", password)
	if st, _ := httpDo(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/api/core/v2/namespaces", port[0]), token, ""); st != 200 {
		t.Fatalf("list namespaces: %d", st)
	}
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.exitWithin(t, 15*time.Second); code != 0 {
		t.Fatalf("dev server exit %d", code)
	}
}
