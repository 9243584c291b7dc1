package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/events"
)

func TestClaimRejectsDuplicateStaleAndRunning(t *testing.T) {
	type step struct {
		op     string // claim or release
		check  string
		issued int64
		want   error
	}
	steps := []step{
		{"claim", "disk", 100, nil},
		{"claim", "disk", 200, errRunning}, // still running
		{"release", "disk", 0, nil},
		{"claim", "disk", 100, errStale}, // duplicate delivery
		{"claim", "disk", 50, errStale},  // older than the last run
		{"claim", "disk", 101, nil},      // newer: runs
		{"claim", "cpu", 1, nil},         // other checks are independent
		{"release", "disk", 0, nil},
		{"release", "cpu", 0, nil},
		{"claim", "cpu", 1, errStale},
		{"claim", "cpu", 2, nil},
	}
	a := New(Config{Name: "h"})
	for i, s := range steps {
		if s.op == "release" {
			a.release(s.check)
			continue
		}
		if err := a.claim(s.check, s.issued); !errors.Is(err, s.want) {
			t.Fatalf("step %d: claim(%s, %d) = %v, want %v", i, s.check, s.issued, err, s.want)
		}
	}
}

func runOne(t *testing.T, cfg events.CheckConfig, hooks ...events.HookConfig) *events.Event {
	t.Helper()
	a := New(Config{Name: "host-1", CacheDir: t.TempDir()})
	q, err := OpenQueue(t.TempDir(), 10, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.queue = q
	a.execute(context.Background(), cfg, 42, hooks...)
	_, _, b, ok := q.next(0)
	if !ok {
		t.Fatal("no event queued")
	}
	ev := &events.Event{}
	if err := json.Unmarshal(b, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestExecute(t *testing.T) {
	tests := []struct {
		name      string
		cfg       events.CheckConfig
		status    uint32
		output    string // prefix
		outputHas string
		maxOutLen int
		command   string // the command the event shows, when set
	}{
		{name: "status and output", cfg: events.CheckConfig{Command: "echo WARN; exit 1"}, status: 1, output: "WARN\n"},
		{name: "stderr too", cfg: events.CheckConfig{Command: "echo out; echo err >&2; exit 2"}, status: 2, output: "out\nerr\n"},
		{name: "env vars", cfg: events.CheckConfig{Command: `echo "$A-$B"`, EnvVars: []string{"A=1", "B=2"}}, output: "1-2\n"},
		{name: "stdin gets the event", cfg: events.CheckConfig{Command: "cat", Stdin: true}, outputHas: `"name":"host-1"`},
		{name: "no stdin by default", cfg: events.CheckConfig{Command: "cat"}, output: ""},
		{name: "timeout kills", cfg: events.CheckConfig{Command: "sleep 30", Timeout: 1}, status: uint32(events.StatusTimedOut), output: events.TimeoutOutput},
		{name: "max output size", cfg: events.CheckConfig{Command: "head -c 10000 /dev/zero | tr '\\0' x", MaxOutputSize: 100}, maxOutLen: 100, output: "xxxx"},
		{name: "discard output", cfg: events.CheckConfig{Command: "echo secret; exit 2", DiscardOutput: true}, status: 2, output: ""},
		{name: "command not found", cfg: events.CheckConfig{Command: "/nonexistent/plugin"}, status: 127},
		{name: "tokens of the entity", cfg: events.CheckConfig{Command: `echo {{ .name }} {{ .nosuch | default "80" }}`}, output: "host-1 80\n",
			command: "echo host-1 80"},
		{name: "a token without a value", cfg: events.CheckConfig{Command: "echo {{ .nosuch }}"}, status: uint32(events.StatusUnknown),
			output: "error while substituting check tokens: ", outputHas: "no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Metadata.Name = "chk"
			ev := runOne(t, tt.cfg)
			c := ev.Check
			if c.Status != tt.status {
				t.Errorf("status = %d, want %d (output %q)", c.Status, tt.status, c.Output)
			}
			if !strings.HasPrefix(c.Output, tt.output) || (tt.output == "" && tt.outputHas == "" && tt.status != 127 && c.Output != "") {
				t.Errorf("output = %q, want prefix %q", c.Output, tt.output)
			}
			if tt.outputHas != "" && !strings.Contains(c.Output, tt.outputHas) {
				t.Errorf("output = %q, want it to contain %q", c.Output, tt.outputHas)
			}
			if tt.command != "" && c.Command != tt.command {
				t.Errorf("event's command = %q, want %q (substituted, as Sensu shows it)", c.Command, tt.command)
			}
			if tt.maxOutLen > 0 && len(c.Output) > tt.maxOutLen {
				t.Errorf("output is %d bytes, more than %d", len(c.Output), tt.maxOutLen)
			}
			if c.Issued != 42 || c.Executed == 0 || c.Metadata.Namespace != "default" || ev.ID == "" || ev.Entity.Metadata.Name != "host-1" {
				t.Errorf("event = id %q issued %d executed %d ns %q entity %q", ev.ID, c.Issued, c.Executed, c.Metadata.Namespace, ev.Entity.Metadata.Name)
			}
		})
	}
}

func TestStandaloneCronCheck(t *testing.T) {
	cfg := events.CheckConfig{Command: "echo cron", Cron: "@every 1s"}
	cfg.Metadata.Name = "by-cron"
	fb := newFakeBackend(t, false)
	startAgent(t, Config{BackendURLs: []string{fb.url()}, Checks: []events.CheckConfig{cfg}})
	ev := fb.next("event")
	if ev.Check.Metadata.Name != "by-cron" || ev.Check.Output != "cron\n" || ev.Check.Cron != "@every 1s" {
		t.Fatalf("event %+v", ev.Check)
	}
}

func TestStandaloneCheckRunsOnItsGrid(t *testing.T) {
	cfg := events.CheckConfig{Command: "echo standalone", Interval: 1}
	cfg.Metadata.Name = "local"
	fb := newFakeBackend(t, false)
	startAgent(t, Config{BackendURLs: []string{fb.url()}, Checks: []events.CheckConfig{cfg}})
	var issued []int64
	for len(issued) < 2 {
		ev := fb.next("event")
		if ev.Check.Metadata.Name != "local" || ev.Check.Output != "standalone\n" {
			t.Fatalf("event %+v", ev.Check)
		}
		issued = append(issued, ev.Check.Issued)
	}
	if issued[1] <= issued[0] {
		t.Fatalf("issued times %v do not advance", issued)
	}
	// Issued is a grid time of agentname:checkname.
	grid := events.NextRun(events.AgentCheckKey("host-1", "local"), time.Second, time.Unix(issued[0], 0))
	if grid.Unix() != issued[0] {
		t.Fatalf("issued %d is not on the grid (next grid time %v)", issued[0], grid)
	}
}

// TestCheckHooks: after the check, the agent runs the hooks check_hooks selects for the
// result's status, from the definitions the request carries, and the event carries
// their results; hooks for other statuses do not run.
func TestCheckHooks(t *testing.T) {
	hook := func(name, command string, stdin bool, timeout int64) events.HookConfig {
		h := events.HookConfig{Command: command, Stdin: stdin, Timeout: timeout}
		h.Metadata.Name = name
		return h
	}
	defs := []events.HookConfig{
		hook("ps", "echo diagnostics; exit 3", false, 0),
		hook("stdin", "grep -o '\"status\":2' ", true, 5),
		hook("slow", "sleep 30", false, 1),
		hook("on-ok", "echo fine", false, 0),
		hook("tokens", `echo {{ .name }} {{ .labels.disk | default "/var" }}`, false, 0),
		hook("no-value", "echo {{ .nosuch }}", false, 0),
	}
	cfg := events.CheckConfig{Command: "echo CRIT; exit 2", CheckHooks: []map[string][]string{
		{"critical": {"ps"}, "0": {"on-ok"}},
		{"non-zero": {"ps", "stdin", "missing"}},
		{"2": {"slow", "tokens", "no-value"}},
	}}
	cfg.Metadata.Name = "disk"
	ev := runOne(t, cfg, defs...)
	got := map[string]events.Hook{}
	var order []string
	for _, h := range ev.Check.Hooks {
		got[h.Metadata.Name] = h
		order = append(order, h.Metadata.Name)
	}
	if strings.Join(order, ",") != "ps,stdin,slow,tokens,no-value" {
		t.Fatalf("hooks run: %v, want ps,stdin,slow,tokens,no-value (each once, on-ok not, missing left out)", order)
	}
	// Tokens take the entity's values, as in check commands; the hook shows the command
	// that ran. One without a value does not run and says why.
	if h := got["tokens"]; h.Status != 0 || h.Output != "host-1 /var\n" || h.Command != "echo host-1 /var" {
		t.Errorf("tokens hook: %+v", h)
	}
	if h := got["no-value"]; h.Status != int32(events.StatusUnknown) || !strings.HasPrefix(h.Output, "error while substituting hook tokens: ") ||
		!strings.Contains(h.Output, "no value") || h.Executed == 0 || h.Issued != 42 {
		t.Errorf("no-value hook: %+v", h)
	}
	if h := got["ps"]; h.Status != 3 || h.Output != "diagnostics\n" || h.Issued != 42 || h.Executed == 0 || h.Command != "echo diagnostics; exit 3" {
		t.Errorf("ps hook: %+v", h)
	}
	if h := got["stdin"]; h.Status != 0 || !strings.Contains(h.Output, `"status":2`) {
		t.Errorf("stdin hook did not get the event with the check's status: %+v", h)
	}
	if h := got["slow"]; h.Status != int32(events.StatusTimedOut) {
		t.Errorf("slow hook: status %d, want the timeout status %d", h.Status, events.StatusTimedOut)
	}
	// A passing result runs only the hooks for status 0.
	cfg.Command = "echo OK"
	ev = runOne(t, cfg, defs...)
	if len(ev.Check.Hooks) != 1 || ev.Check.Hooks[0].Metadata.Name != "on-ok" || ev.Check.Hooks[0].Output != "fine\n" {
		t.Errorf("hooks after a passing result: %+v", ev.Check.Hooks)
	}
}
