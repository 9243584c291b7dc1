package app

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmuxConsole is `picket console` running in a real terminal: a detached tmux session.
type tmuxConsole struct {
	t       *testing.T
	session string
	shots   []string
}

func (c *tmuxConsole) tmux(args ...string) string {
	c.t.Helper()
	out, err := exec.Command("tmux", args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (c *tmuxConsole) keys(keys ...string) {
	c.t.Helper()
	for _, k := range keys {
		c.tmux("send-keys", "-t", c.session, k)
		time.Sleep(30 * time.Millisecond)
	}
}

func (c *tmuxConsole) screen() string { return c.tmux("capture-pane", "-p", "-t", c.session) }

// waitFor waits until the screen shows every one of texts and returns the time it took.
func (c *tmuxConsole) waitFor(d time.Duration, texts ...string) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		s := c.screen()
		ok := true
		for _, x := range texts {
			ok = ok && strings.Contains(s, x)
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			c.t.Fatalf("no %q on screen within %s:\n%s", texts, d, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *tmuxConsole) shot(stage string) {
	s := c.screen()
	c.shots = append(c.shots, "=== "+stage+"\n"+s)
	c.t.Logf("%s:\n%s", stage, s)
}

// serverPID reads the pid of the server holding a sandbox member's data dir.
func serverPID(dir, name string) int {
	b, err := os.ReadFile(filepath.Join(dir, name, "state", "etcd.lock"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// consoleSandbox is a console in tmux with data and config dirs of its own, and the
// 3-member local sandbox it bootstrapped.
type consoleSandbox struct {
	*tmuxConsole
	bin, dir, sandbox string
	first             string // the sandbox's first loopback address; the others follow it
	ports             []int  // API, agent gateway, etcd client and etcd peer ports
}

// bootstrapSandbox starts `picket console` in tmux session and bootstraps a 3-member
// local sandbox from it, up to the screen that shows the admin password. The servers
// (every member under the sandbox dir), the tmux session and the screenshots file
// ($PICKET_CONSOLE_SHOTS) are seen to when the test ends.
func bootstrapSandbox(t *testing.T, session string) *consoleSandbox {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install tmux): the console's end-to-end test needs a real terminal")
	}
	bin := picketBinary(t)
	dir := t.TempDir()
	sandbox := filepath.Join(dir, "data", "picket", "sandbox")
	// The servers run detached from the console: stop them (by the pids in their lock
	// files, which this test started) whatever happens.
	t.Cleanup(func() {
		var pids []int
		locks, _ := filepath.Glob(filepath.Join(sandbox, "*", "state", "etcd.lock"))
		for _, l := range locks {
			if pid := serverPID(sandbox, filepath.Base(filepath.Dir(filepath.Dir(l)))); pid > 0 {
				if err := syscall.Kill(pid, syscall.SIGTERM); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, pid := range pids {
			for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// A loopback block of its own, and free ports, so other tests and servers on this
	// machine do not collide with the sandbox.
	first := fmt.Sprintf("127.%d.%d.1", 100+rand.IntN(150), 1+rand.IntN(250))
	ports := freeTCPPorts(t, 4)
	c := &tmuxConsole{t: t, session: session}
	env := fmt.Sprintf("env XDG_DATA_HOME=%s PICKET_CONFIG_DIR=%s TERM=xterm-256color", filepath.Join(dir, "data"), filepath.Join(dir, "cli"))
	c.tmux("new-session", "-d", "-s", c.session, "-x", "100", "-y", "30", env+" "+bin+" console; sleep 600")
	t.Cleanup(func() { _ = exec.Command("tmux", "kill-session", "-t", c.session).Run() })
	t.Cleanup(func() {
		if p := os.Getenv("PICKET_CONSOLE_SHOTS"); p != "" {
			_ = os.WriteFile(p, []byte(strings.Join(c.shots, "\n")), 0o644)
		}
	})

	c.waitFor(10*time.Second, "What next?")
	c.shot("home")
	c.keys("Enter")
	c.waitFor(5*time.Second, "Start a local sandbox cluster")
	// Node 1's address (the others follow it), then the ports, then Start.
	c.keys("Tab", "Tab", "Tab", "C-u", first)
	c.keys("Tab", "Tab", "Tab", "Tab", "Tab", "C-u", fmt.Sprintf("%d %d %d %d", ports[0], ports[1], ports[2], ports[3]))
	c.keys("Tab", "Tab", "Tab", "Tab")
	c.shot("bootstrap form")
	c.keys("Enter")
	c.waitFor(90*time.Second, "Shown only now")
	c.shot("bootstrap done")
	return &consoleSandbox{tmuxConsole: c, bin: bin, dir: dir, sandbox: sandbox, first: first, ports: ports}
}

// TestConsoleSandboxE2E is the acceptance scenario in a real terminal: bootstrap
// a 3-member sandbox from the console, kill one member's server, see it unhealthy within
// 3 s, replace it from the dashboard, and see three healthy members again.
func TestConsoleSandboxE2E(t *testing.T) {
	sb := bootstrapSandbox(t, fmt.Sprintf("picket-e2e-%d", os.Getpid()))
	c, sandbox := sb.tmuxConsole, sb.sandbox
	c.keys("Enter")
	c.waitFor(20*time.Second, "3 healthy", "tolerates 1 more failure")
	c.shot("dashboard: three healthy members")

	pid := serverPID(sandbox, "picket-2")
	if pid <= 0 {
		t.Fatal("no pid for picket-2")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := c.waitFor(3*time.Second, "UNHEALTHY: picket-2")
	t.Logf("picket-2 shown unhealthy %s after kill -9", took.Round(10*time.Millisecond))
	c.shot(fmt.Sprintf("dashboard: picket-2 killed, unhealthy after %s", took.Round(100*time.Millisecond)))

	c.keys("Down", "r")
	c.waitFor(5*time.Second, "Replace member picket-2?")
	c.shot("replace confirmation")
	c.keys("y")
	c.waitFor(60*time.Second, "Replaced picket-2")
	c.shot("replace done")
	c.keys("Escape")
	c.waitFor(20*time.Second, "3 healthy", "tolerates 1 more failure")
	if s := c.screen(); strings.Contains(s, "UNHEALTHY") {
		t.Fatalf("still unhealthy:\n%s", s)
	}
	c.shot("dashboard: three healthy members again")
	c.keys("q")
}

func TestConsoleNeedsTerminal(t *testing.T) {
	var out, errb strings.Builder
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, Environ: os.Environ}
	if code := Run(t.Context(), env, []string{"console"}); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "needs a terminal") || !strings.Contains(errb.String(), "picket cluster health") {
		t.Fatalf("message: %s", errb.String())
	}
	// Without a terminal, picket with no command still prints the usage.
	errb.Reset()
	if code := Run(t.Context(), env, nil); code != 2 || !strings.Contains(errb.String(), "Usage: picket COMMAND") {
		t.Fatalf("no args: exit %d, %s", code, errb.String())
	}
}
