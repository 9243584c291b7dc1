package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picketmon/picket/node/cluster"
)

// TestConsoleJoinE2E is issue 6's acceptance 2 in a real terminal: next to a 3-member
// sandbox bootstrapped from one console, a second console with a home and data dir of
// its own (so it knows no cluster) joins a fourth local node through its join form, with
// one member's API URL and the admin credentials; the node ends up a healthy voter, on
// both consoles' dashboards and for the CLI.
func TestConsoleJoinE2E(t *testing.T) {
	a := bootstrapSandbox(t, fmt.Sprintf("picket-join-e2e-%d-a", os.Getpid()))
	m := regexp.MustCompile(`Admin user admin, password ([A-Za-z0-9]+)`).FindStringSubmatch(a.screen())
	if m == nil {
		t.Fatalf("no admin password on the screen:\n%s", a.screen())
	}
	password := m[1]
	a.keys("Enter")
	a.waitFor(20*time.Second, "3 healthy", "tolerates 1 more failure")
	a.shot("console 1, dashboard: three healthy members")

	// The second console: its own HOME, data and config dirs.
	home := filepath.Join(a.dir, "node4")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	// The node's files go where the form suggests, ~/picket-cluster of that HOME; its
	// server runs detached from the console: stop it (by the pid in its lock file, or the
	// one the join reported) whatever happens.
	nodeDir := filepath.Join(home, "picket-cluster")
	b := &tmuxConsole{t: t, session: fmt.Sprintf("picket-join-e2e-%d-b", os.Getpid())}
	startedPID := 0
	t.Cleanup(func() {
		pid := serverPID(home, "picket-cluster")
		if pid <= 0 {
			pid = startedPID
		}
		if pid <= 0 {
			return
		}
		// Only a server of this test: its command line names the node's config.
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !bytes.Contains(cmd, []byte(nodeDir)) {
			return
		}
		if syscall.Kill(pid, syscall.SIGTERM) != nil {
			return
		}
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	})
	// Both consoles' screens go, in order, to the one list $PICKET_CONSOLE_SHOTS receives.
	bshot := func(stage string) {
		b.shot(stage)
		a.shots = append(a.shots, b.shots...)
		b.shots = nil
	}
	env := fmt.Sprintf("env HOME=%s XDG_DATA_HOME=%s PICKET_CONFIG_DIR=%s TERM=xterm-256color",
		home, filepath.Join(home, "data"), filepath.Join(home, "cli"))
	b.tmux("new-session", "-d", "-s", b.session, "-x", "100", "-y", "30", env+" "+a.bin+" console; sleep 600")
	t.Cleanup(func() { _ = exec.Command("tmux", "kill-session", "-t", b.session).Run() })

	b.waitFor(10*time.Second, "What next?", "none known")
	bshot("console 2, home: no cluster known")
	b.keys("Down", "Down", "Enter")
	b.waitFor(5*time.Second, "Join an existing cluster", "Member API URL")

	// The fourth node: the next address of the sandbox's block, the sandbox's ports.
	block := strings.TrimSuffix(a.first, ".1")
	addr := block + ".4"
	apiURL := "https://" + hostPort(block+".2", a.ports[0])
	certs := filepath.Join(a.sandbox, "certs")
	b.keys("C-u", apiURL, "Tab") // member API URL (picket-2's)
	b.keys("C-u", "admin", "Tab")
	b.keys(password, "Tab")
	b.keys("C-u", filepath.Join(certs, "ca.pem"), "Tab")
	b.keys("C-u", "picket-4", "Tab")
	b.keys("C-u", addr, "Tab")
	b.keys("C-u", fmt.Sprintf("%d %d %d %d", a.ports[0], a.ports[1], a.ports[2], a.ports[3]), "Tab")
	b.keys("Tab") // directory: the suggested ~/picket-cluster
	b.keys("C-u", certs, "Tab")
	b.waitFor(5*time.Second, "node4/picket-cluster", "sandbox/certs", "picket-4", addr)
	bshot("console 2, join form")

	start := time.Now()
	b.keys("Enter")
	b.waitFor(5*time.Second, "Joining picket-4 to the cluster at "+apiURL)
	if pid := regexp.MustCompile(`picket server pid (\d+)`).FindStringSubmatch(b.waitScreen(60*time.Second, "picket server pid")); pid != nil {
		fmt.Sscan(pid[1], &startedPID)
	}
	b.waitFor(2*time.Minute, "picket-4 joined the cluster as a voter")
	took := time.Since(start)
	t.Logf("picket-4 joined as a voter %s after the form was sent", took.Round(10*time.Millisecond))
	bshot(fmt.Sprintf("console 2, join done after %s", took.Round(100*time.Millisecond)))

	b.keys("Enter")
	b.waitFor(20*time.Second, "Quorum 3 of 4 voters", "4 healthy", "tolerates 1 more failure", "picket-4")
	bshot("console 2, dashboard: four healthy voters")
	a.waitFor(20*time.Second, "Quorum 3 of 4 voters", "4 healthy", "tolerates 1 more failure", "picket-4")
	a.shot("console 1, dashboard: four healthy voters")
	for _, c := range []*tmuxConsole{a.tmuxConsole, b} {
		if s := c.screen(); strings.Contains(s, "UNHEALTHY") || strings.Contains(s, "learner") {
			t.Fatalf("%s: a member is unhealthy or still a learner:\n%s", c.session, s)
		}
	}

	// The CLI, with the sandbox's session, agrees: four members, no learner, all healthy.
	cli := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(a.bin, append([]string{"cluster"}, args...)...)
		cmd.Env = append(os.Environ(), "PICKET_CONFIG_DIR="+filepath.Join(a.sandbox, "cli"))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("picket cluster %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	var ml cluster.MemberList
	if err := json.Unmarshal(cli("member-list", "--format", "json"), &ml); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ml.Members {
		if m.IsLearner {
			t.Errorf("%s is still a learner", m.Name)
		}
		names = append(names, m.Name)
	}
	if len(ml.Members) != 4 || !strings.Contains(strings.Join(names, " "), "picket-4") {
		t.Fatalf("members %q, want picket-1 to picket-4", names)
	}
	var hl cluster.Health
	if err := json.Unmarshal(cli("health", "--format", "json"), &hl); err != nil {
		t.Fatal(err)
	}
	if len(hl.ClusterHealth) != 4 || !hl.Healthy() {
		t.Fatalf("health: %+v", hl)
	}
	t.Logf("picket cluster member-list:\n%s", cli("member-list"))
	b.keys("q")
	a.keys("q")
}

// waitScreen waits for text like waitFor and returns the screen that showed it.
func (c *tmuxConsole) waitScreen(d time.Duration, text string) string {
	c.t.Helper()
	c.waitFor(d, text)
	return c.screen()
}
