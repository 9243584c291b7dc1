//go:build linux

package events

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunCommand(t *testing.T) {
	t.Setenv("PICKET_INHERITED", "from-agent")
	dir := t.TempDir()
	tests := []struct {
		name       string
		spec       CommandSpec
		wantOutput string
		wantStatus int
	}{
		{"ok", CommandSpec{Command: "echo hello"}, "hello\n", 0},
		{"warning", CommandSpec{Command: "echo careful; exit 1"}, "careful\n", 1},
		{"critical", CommandSpec{Command: "exit 2"}, "", 2},
		{"unknown", CommandSpec{Command: "exit 3"}, "", 3},
		{"large status", CommandSpec{Command: "exit 200"}, "", 200},
		{"stderr in order", CommandSpec{Command: "echo one; echo two >&2; echo three"}, "one\ntwo\nthree\n", 0},
		{"pipes and redirections", CommandSpec{Command: "printf 'b\\na\\n' | sort | tr a-z A-Z 2>/dev/null"}, "A\nB\n", 0},
		{"killed by a signal", CommandSpec{Command: "kill -TERM $$"}, "", 128 + int(syscall.SIGTERM)},
		{"stdin", CommandSpec{Command: "cat", Stdin: []byte(`{"check":{}}`)}, `{"check":{}}`, 0},
		{"no stdin", CommandSpec{Command: "wc -c"}, "0\n", 0},
		{"env added", CommandSpec{Command: `echo "$PICKET_EXTRA"`, Env: []string{"PICKET_EXTRA=x y"}}, "x y\n", 0},
		{"env inherited", CommandSpec{Command: `echo "$PICKET_INHERITED"`}, "from-agent\n", 0},
		{"env overrides", CommandSpec{Command: `echo "$PICKET_INHERITED"`, Env: []string{"PICKET_INHERITED=from-check"}}, "from-check\n", 0},
		{"dir", CommandSpec{Command: "pwd -P", Dir: dir}, mustEvalSymlinks(t, dir) + "\n", 0},
		{"output cap", CommandSpec{Command: "head -c 100000 /dev/zero | tr '\\0' a", MaxOutput: 10}, "aaaaaaaaaa", 0},
		{"output cap does not block a chatty command", CommandSpec{Command: "head -c 20000000 /dev/zero", MaxOutput: 3}, "\x00\x00\x00", 0},
		{"output cap keeps whole characters", CommandSpec{Command: "printf 'a\\303\\251b'", MaxOutput: 2}, "a", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := RunCommand(context.Background(), tt.spec)
			if res.Err != nil || res.TimedOut {
				t.Fatalf("Err %v, TimedOut %v", res.Err, res.TimedOut)
			}
			if res.Output != tt.wantOutput || res.Status != tt.wantStatus {
				t.Fatalf("got status %d output %q, want status %d output %q", res.Status, res.Output, tt.wantStatus, tt.wantOutput)
			}
			if res.Duration <= 0 {
				t.Fatalf("Duration %v", res.Duration)
			}
		})
	}
}

func TestRunCommandUncapped(t *testing.T) {
	res := RunCommand(context.Background(), CommandSpec{Command: "head -c 3000000 /dev/zero"})
	if len(res.Output) != 3000000 || res.Status != 0 {
		t.Fatalf("got %d bytes, status %d; want 3000000 bytes, 0", len(res.Output), res.Status)
	}
}

func TestRunCommandNotFound(t *testing.T) {
	res := RunCommand(context.Background(), CommandSpec{Command: "picket-no-such-command-here"})
	if res.Status != 127 || !strings.Contains(res.Output, "not found") || res.Err != nil {
		t.Fatalf("got status %d output %q err %v; want 127 and the shell's complaint", res.Status, res.Output, res.Err)
	}
}

func TestRunCommandMissingDir(t *testing.T) {
	res := RunCommand(context.Background(), CommandSpec{Command: "true", Dir: filepath.Join(t.TempDir(), "gone")})
	if res.Err == nil || res.Status != StatusUnknown {
		t.Fatalf("got status %d err %v; want %d and an error", res.Status, res.Err, StatusUnknown)
	}
}

// The timeout must kill the background processes too: they hold the output pipe open,
// and left alone they would pile up on the host.
func TestRunCommandTimeoutKillsGroup(t *testing.T) {
	res := RunCommand(context.Background(), CommandSpec{
		Command: "echo started; sleep 100 & echo $!; sleep 100 & echo $!; wait",
		Timeout: 300 * time.Millisecond,
	})
	if !res.TimedOut || res.Status != StatusTimedOut || res.Err != nil {
		t.Fatalf("got TimedOut %v status %d err %v; want a timeout with status 2", res.TimedOut, res.Status, res.Err)
	}
	if !strings.HasPrefix(res.Output, "Execution timed out\nstarted\n") {
		t.Fatalf("output %q should start with the timeout notice, then what the command wrote", res.Output)
	}
	if res.Duration > 10*time.Second {
		t.Fatalf("took %v", res.Duration)
	}
	assertGone(t, pidsIn(t, res.Output, 2)...)
}

func TestRunCommandKillsLeftovers(t *testing.T) {
	// No timeout: the shell exits at once, and the background sleep must not keep the
	// run (or the host) busy for 100 s.
	res := RunCommand(context.Background(), CommandSpec{Command: "sleep 100 & echo $!"})
	if res.Status != 0 || res.TimedOut || res.Duration > 10*time.Second {
		t.Fatalf("got status %d TimedOut %v after %v", res.Status, res.TimedOut, res.Duration)
	}
	assertGone(t, pidsIn(t, res.Output, 1)...)
}

func TestRunCommandCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	res := RunCommand(ctx, CommandSpec{Command: "sleep 100 & echo $!; sleep 100"})
	if !errors.Is(res.Err, context.Canceled) || res.TimedOut || res.Status != StatusUnknown {
		t.Fatalf("got err %v TimedOut %v status %d; want context.Canceled, no timeout, status 3", res.Err, res.TimedOut, res.Status)
	}
	assertGone(t, pidsIn(t, res.Output, 1)...)

	if res := RunCommand(ctx, CommandSpec{Command: "echo never"}); !errors.Is(res.Err, context.Canceled) || res.Output != "" {
		t.Fatalf("a cancelled context still ran the command: %+v", res)
	}
}

func TestRunCommandNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, spec := range []CommandSpec{
		{Command: "echo hi"},
		{Command: "cat", Stdin: make([]byte, 1<<20)}, // more than a pipe holds
		{Command: "sleep 100 & sleep 100", Timeout: 100 * time.Millisecond},
		{Command: "sleep 100 &"},
		{Command: "head -c 1000000 /dev/zero", MaxOutput: 5},
	} {
		RunCommand(context.Background(), spec)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustEvalSymlinks(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pidsIn returns the last n lines of output that are numbers: the pids a command echoed.
func pidsIn(t *testing.T, output string, n int) []int {
	t.Helper()
	var pids []int
	for _, line := range strings.Split(output, "\n") {
		if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) < n {
		t.Fatalf("output %q has %d pids, want %d", output, len(pids), n)
	}
	return pids[len(pids)-n:]
}

// assertGone waits a little for each process to disappear. A zombie counts as gone: it
// has died and only waits for its new parent (init) to reap it.
func assertGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for {
			err := syscall.Kill(pid, 0)
			if errors.Is(err, syscall.ESRCH) || isZombie(pid) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d is still running (kill 0: %v)", pid, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
