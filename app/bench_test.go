package app

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/node/nodetest"
)

// TestHistQuantile: quantiles between two readings of a cumulative histogram, as
// Prometheus's histogram_quantile computes them.
func TestHistQuantile(t *testing.T) {
	inf := math.Inf(1)
	before := map[float64]float64{0.001: 5, 0.002: 5, 0.004: 5, inf: 5}
	// 100 new observations: 10 under 1 ms, 80 in 1–2 ms, 10 in 2–4 ms.
	after := map[float64]float64{0.001: 15, 0.002: 95, 0.004: 105, inf: 105}
	for _, c := range []struct {
		q, want, lo, hi float64
	}{
		{0.05, 0.0005, 0, 0.001},
		{0.5, 0.0015, 0.001, 0.002},
		{0.99, 0.0038, 0.002, 0.004},
	} {
		est, lo, hi, ok := histQuantile(before, after, c.q)
		if !ok || math.Abs(est-c.want) > 1e-9 || lo != c.lo || hi != c.hi {
			t.Errorf("q %.2f: %v in [%v, %v] (%v), want %v in [%v, %v]", c.q, est, lo, hi, ok, c.want, c.lo, c.hi)
		}
	}
	// Past the last finite bucket only a lower bound is known.
	over := map[float64]float64{0.001: 15, 0.002: 15, 0.004: 15, inf: 115}
	if est, lo, hi, _ := histQuantile(before, over, 0.99); est != 0.004 || lo != 0.004 || !math.IsInf(hi, 1) {
		t.Errorf("over the last bucket: %v [%v, %v]", est, lo, hi)
	}
	if got := fmtQuantile(before, over, 0.99); got != "over 4 ms" {
		t.Errorf("fmtQuantile = %q", got)
	}
	if _, _, _, ok := histQuantile(before, before, 0.5); ok {
		t.Error("a quantile of no observations")
	}
}

// TestServerMetricsScrape: one scrape gives plain samples by name and a histogram's
// buckets by bound; a missing name is an error naming it.
func TestServerMetricsScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `# HELP process_cpu_seconds_total CPU.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
picket_agent_event_commit_seconds_bucket{le="0.001"} 3
picket_agent_event_commit_seconds_bucket{le="0.002"} 7
picket_agent_event_commit_seconds_bucket{le="+Inf"} 9
picket_agent_event_commit_seconds_sum 0.01
picket_agent_event_commit_seconds_count 9
`)
	}))
	defer srv.Close()
	m, err := serverMetrics(srv.URL, serverCPUMetric)
	if err != nil || m[serverCPUMetric] != 12.5 {
		t.Fatalf("scrape: %v %v", m, err)
	}
	b := histogramBuckets(m, commitHistogram)
	if len(b) != 3 || b[0.001] != 3 || b[0.002] != 7 || b[math.Inf(1)] != 9 {
		t.Fatalf("buckets %v", b)
	}
	if histogramBuckets(m, "nope") != nil {
		t.Fatal("buckets of a histogram the scrape lacks")
	}
	if _, err := serverMetrics(srv.URL, "go_memstats_heap_inuse_bytes"); err == nil {
		t.Fatal("a missing metric was not reported")
	}
}

// TestBenchAgentsAgainstNode runs 'picket bench agents' against a real node: every
// simulated agent connects through the bench's own WebSocket client, its check results
// are acknowledged (so committed) and stored, and the report says so.
func TestBenchAgentsAgainstNode(t *testing.T) {
	n := nodetest.Start(t)
	r := runCLI(t, nil, "", "bench", "agents", "--agents", "20", "--duration", "3s", "--event-rate", "200", "--progress", "1s",
		"--name-prefix", "wire-", "--backend-url", n.AgentURL, "--api-url", n.URL, "--password", nodetest.AgentPassword)
	if r.code != 0 {
		t.Fatalf("bench: code %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "connected 20 of 20 agents") || !strings.Contains(r.stdout, "; 0 failed") {
		t.Fatalf("not every agent connected:\n%s", r.stdout)
	}
	// One progress line a second; the agents stay connected all along.
	if n := strings.Count(r.stdout, "  … "); n < 2 || !strings.Contains(r.stdout, ": 20 agents connected; last 1s: sent ") {
		t.Fatalf("want progress lines while holding, got %d:\n%s", n, r.stdout)
	}
	if !strings.Contains(r.stdout, "this machine while holding: CPUs ") {
		t.Fatalf("no line on the machine's CPUs:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "connections lost") {
		t.Fatalf("a connection was lost:\n%s", r.stdout)
	}
	var sent, acked int
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "events: sent ") {
			fmt.Sscanf(line, "events: sent %d, acknowledged %d", &sent, &acked)
		}
	}
	// At 200/s against an idle node every result is acknowledged but those still in
	// flight when the hold ends: a commit, and acks wait up to the node's ack delay
	// (250 ms) to go out together, so about 60 at 200/s; 120 leaves room.
	if sent < 300 || acked < sent-120 {
		t.Fatalf("sent %d, acknowledged %d:\n%s", sent, acked, r.stdout)
	}
	token := httpToken(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	code, body := httpDo(t, "GET", n.URL+"/api/core/v2/namespaces/default/events/wire-00007", token, "")
	if code != 200 || !strings.Contains(body, `"name":"bench-check-`) || !strings.Contains(body, `"history":[`) {
		t.Fatalf("stored events of wire-00007: %d %s", code, body)
	}
	// 200/s over 20 agents is 10 results a second each: 10 checks, each reporting every
	// second, all of them stored.
	if !strings.Contains(r.stdout, "each agent's results rotate through 10 check(s): each check reports every 1s") {
		t.Fatalf("no line on the checks per agent:\n%s", r.stdout)
	}
	for i := 0; i < 10; i++ {
		if !strings.Contains(body, fmt.Sprintf(`"name":"bench-check-%d"`, i)) {
			t.Errorf("wire-00007 has no event of bench-check-%d: %s", i, body)
		}
	}
}

func TestBenchTargetRotation(t *testing.T) {
	// Every agent gets every one of its checks equally often, and each check's status
	// changes with every result, whatever the counts.
	for _, tc := range []struct{ agents, checks int }{{1000, 20}, {1000, 15}, {7, 3}, {10, 10}, {3, 1}, {1000, 1}} {
		seen := map[[2]int]int{}
		last := map[[2]int]int{}
		for i := 0; i < tc.agents*tc.checks*5; i++ {
			a, c, st := benchTarget(i, tc.agents, tc.checks)
			p := [2]int{a, c}
			// Each result of a check has another status than the one before.
			if n := seen[p]; n > 0 && st != (last[p]+1)%3 {
				t.Errorf("%d agents × %d checks: pair %v went from status %d to %d", tc.agents, tc.checks, p, last[p], st)
			}
			seen[p]++
			last[p] = st
		}
		if len(seen) != tc.agents*tc.checks {
			t.Errorf("%d agents × %d checks: %d pairs reported, want all", tc.agents, tc.checks, len(seen))
		}
		for p, n := range seen {
			if n != 5 {
				t.Errorf("%d agents × %d checks: pair %v reported %d times, want 5", tc.agents, tc.checks, p, n)
			}
		}
	}
	for _, tc := range []struct {
		rate   float64
		agents int
		want   int
	}{{20000, 1000, 20}, {200, 20, 10}, {100, 1000, 1}, {0, 5, 1}, {1500, 1000, 2}} {
		if got := autoChecksPerAgent(tc.rate, tc.agents); got != tc.want {
			t.Errorf("autoChecksPerAgent(%v, %d) = %d, want %d", tc.rate, tc.agents, got, tc.want)
		}
	}
}

// The machine's CPU times come from /proc/stat's first line: idle with iowait, steal
// on its own, the total of the eight fields (guest time is inside user already).
func TestParseHostCPU(t *testing.T) {
	got, ok := parseHostCPU("cpu  2761072 716 482447 4480326 98340 0 139090 5226 300 7")
	want := hostCPUTimes{total: 2761072 + 716 + 482447 + 4480326 + 98340 + 139090 + 5226, idle: 4480326 + 98340, steal: 5226}
	if !ok || got != want {
		t.Fatalf("parseHostCPU = %+v, %v; want %+v", got, ok, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 3 x 5 6 7 8"} {
		if _, ok := parseHostCPU(bad); ok {
			t.Errorf("parseHostCPU(%q) accepted", bad)
		}
	}
	if _, err := os.Stat("/proc/stat"); err == nil {
		if h, ok := readHostCPU(); !ok || h.total == 0 || h.idle > h.total {
			t.Fatalf("readHostCPU on this machine = %+v, %v", h, ok)
		}
	}
}

// Busy is the share neither idle nor stolen; steal its own share; counters that went
// backwards give no figure rather than a huge one.
func TestHostCPUShare(t *testing.T) {
	a := hostCPUTimes{total: 1000, idle: 500, steal: 10}
	b := hostCPUTimes{total: 2000, idle: 800, steal: 110}
	busy, steal, ok := hostCPUShare(a, b)
	if !ok || math.Abs(busy-60) > 1e-9 || math.Abs(steal-10) > 1e-9 {
		t.Fatalf("hostCPUShare = %v, %v, %v; want 60, 10, true", busy, steal, ok)
	}
	for _, b := range []hostCPUTimes{
		{total: 1000, idle: 500, steal: 10}, // no time passed
		{total: 2000, idle: 800, steal: 5},  // steal went backwards
		{total: 2000, idle: 400, steal: 10}, // idle went backwards
	} {
		if busy, steal, ok := hostCPUShare(a, b); ok {
			t.Errorf("hostCPUShare(%+v, %+v) = %v, %v, true; want no figure", a, b, busy, steal)
		}
	}
}

// When the server goes away mid-hold, the bench counts the lost connections, says so,
// and stops sending for those agents instead of blaming the server for a backlog.
func TestBenchAgentsServerGone(t *testing.T) {
	n := nodetest.Start(t)
	done := make(chan cliResult, 1)
	go func() {
		done <- runCLI(t, nil, "", "bench", "agents", "--agents", "5", "--duration", "4s", "--event-rate", "500", "--progress", "0",
			"--name-prefix", "gone-", "--backend-url", n.AgentURL, "--api-url", "", "--password", nodetest.AgentPassword)
	}()
	// Stop the node once every agent is connected (their entities exist by then).
	token := httpToken(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	for i := 0; ; i++ {
		code, body := httpDo(t, "GET", n.URL+"/api/core/v2/namespaces/default/entities", token, "")
		if code == 200 && strings.Count(body, `"name":"gone-`) >= 5 {
			break
		}
		if i == 200 {
			t.Fatalf("the agents did not connect: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.Stop(t)
	r := <-done
	if !strings.Contains(r.stdout, "connections lost before the end: 5 of 5") || !strings.Contains(r.stdout, "held 0 agents") {
		t.Fatalf("want the 5 lost connections reported:\n%s\nstderr: %s", r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "the server did not keep up") {
		t.Fatalf("events for lost agents were counted as the server's backlog:\n%s", r.stdout)
	}
}
