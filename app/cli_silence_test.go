package app

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/nodetest"
)

func TestCLISilenceAndAggregates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real node")
	}
	n := nodetest.Start(t)
	vars := loginTo(t, n)

	out := mustRun(t, vars, "", "silence", "--subscription", "linux", "--reason", "upgrade", "--expire", "2h")
	if !strings.HasPrefix(out, "Created silence linux:* in namespace default, until ") {
		t.Fatalf("silence printed %q", out)
	}
	var s events.Silenced
	if err := json.Unmarshal([]byte(mustRun(t, vars, "", "get", "silenced", "linux:*", "--format", "json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Reason != "upgrade" || s.Expire != 7200 || s.ExpireAt < time.Now().Unix()+7100 || s.Creator == "" && s.Metadata.CreatedBy == "" {
		t.Fatalf("stored silence %+v", s)
	}
	out = mustRun(t, vars, "", "silence", "--check", "disk", "--expire-on-resolve", "--begin", "+1h")
	if !strings.Contains(out, "*:disk") || !strings.Contains(out, "from ") || !strings.Contains(out, "until the check resolves") {
		t.Fatalf("silence printed %q", out)
	}
	if r := runCLI(t, vars, "", "silence", "--subscription", "linux"); r.code == 0 || !strings.Contains(r.stderr, "already exists") || !strings.Contains(r.stderr, "picket delete silenced 'linux:*'") {
		t.Fatalf("duplicate silence: code %d, %s", r.code, r.stderr)
	}
	if r := runCLI(t, vars, "", "silence", "--check", "cpu", "--begin", "2020-01-01T00:00:00Z", "--expire", "1h"); r.code != 2 || !strings.Contains(r.stderr, "already past") {
		t.Fatalf("silence that would have ended in 2020: code %d, %s", r.code, r.stderr)
	}
	if r := runCLI(t, vars, "", "silence"); r.code != 2 {
		t.Fatalf("silence without a target: code %d", r.code)
	}

	if out := mustRun(t, vars, "", "list", "aggregates"); out != "No aggregates found in namespace default.\n" {
		t.Fatalf("empty aggregates: %q", out)
	}
	rec, _ := json.Marshal(events.AggregateRecord{Entity: "web1", Check: "http", Status: 2, Executed: time.Now().Unix(), Interval: 60, Retention: 180})
	if _, err := n.Store().Put(t.Context(), "/picket/aggregates/default/frontend/web1", rec); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, vars, "", "list", "aggregates")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || strings.Join(strings.Fields(lines[1]), " ") != "frontend 0 0 1 0 0 1" {
		t.Fatalf("list aggregates:\n%s", out)
	}
	if out := mustRun(t, vars, "", "list", "aggregates", "-A", "--format", "json"); !strings.Contains(out, `"critical": 1`) {
		t.Fatalf("json: %s", out)
	}
}
