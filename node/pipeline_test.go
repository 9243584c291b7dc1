package node_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/nodetest"
)

// apiCall sends a request as the admin and returns the status and body.
func apiCall(t *testing.T, n *nodetest.Node, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", n.URL+"/auth", nil)
	req.SetBasicAuth(nodetest.AdminUser, nodetest.AdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ = http.NewRequest(method, n.URL+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustAPI(t *testing.T, n *nodetest.Node, method, path, body string, want int) {
	t.Helper()
	if st, b := apiCall(t, n, method, path, body); st != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
	}
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSilences waits until the node's silence cache holds want entries (the API writes
// to etcd; the cache follows through a watch).
func waitSilences(t *testing.T, n *nodetest.Node, want int) {
	t.Helper()
	line := fmt.Sprintf("picket_silenced_entries %d\n", want)
	eventually(t, line, 10*time.Second, func() bool {
		resp, err := http.Get(n.URL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), line)
	})
}

func fileLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// resultSender sends check results of one check and waits for each ack, so the event is
// stored (and handed to the pipeline) before the next one goes.
type resultSender struct {
	t     *testing.T
	a     *wsAgent
	agent string
	check string
	seq   int
	mod   func(ev *events.Event)
}

func (s *resultSender) send(status uint32) {
	s.t.Helper()
	s.seq++
	id := fmt.Sprintf("%s-%s-%d", s.agent, s.check, s.seq)
	ev := result(s.agent, s.check, status, id)
	ev.Check.Subscriptions = []string{"linux"}
	if s.mod != nil {
		s.mod(ev)
	}
	s.a.send(agentgw.TypeEvent, ev)
	if ack := s.a.next(agentgw.TypeAck, 5*time.Second); !strings.Contains(ack, id) {
		s.t.Fatalf("ack %s, want %s", ack, id)
	}
}

// TestPipelineIncidentsAndSilences covers acceptance 1 and 2: an occurrences == 1 filter
// with a pipe handler writes one line per incident and one per resolution; a silence of
// the subscription stops it, deleting it lets the next incident through, and an
// expire_on_resolve silence ends when the check resolves; an expiring silence goes away.
func TestPipelineIncidentsAndSilences(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	out := filepath.Join(t.TempDir(), "incidents")
	mustAPI(t, n, "PUT", "/api/core/v2/namespaces/default/filters/first",
		`{"metadata":{"name":"first"},"action":"allow","expressions":["event.check.occurrences == 1"]}`, 201)
	mustAPI(t, n, "PUT", "/api/core/v2/namespaces/default/handlers/log",
		fmt.Sprintf(`{"metadata":{"name":"log"},"type":"pipe","command":"f=$(mktemp); cat > $f; echo >> $f; cat $f >> %s; rm -f $f","timeout":10,"filters":["first","not_silenced"]}`, out), 201)
	time.Sleep(500 * time.Millisecond) // the definitions reach the pipeline through a watch

	a := mustDialAgent(t, n, "web1", "default", "agent", nodetest.AgentPassword, []string{"linux"}, true)
	s := &resultSender{t: t, a: a, agent: "web1", check: "disk", mod: func(ev *events.Event) { ev.Check.Handlers = []string{"log"} }}
	expectLines := func(want int) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d handled events", want), 10*time.Second, func() bool { return fileLines(out) >= want })
		time.Sleep(300 * time.Millisecond) // and no more than that
		if got := fileLines(out); got != want {
			t.Fatalf("handler ran %d times, want %d", got, want)
		}
	}
	stored := func() *events.Event {
		var ev events.Event
		if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/web1/disk", &ev); st != 200 {
			t.Fatalf("get event: %d", st)
		}
		return &ev
	}

	// Acceptance 1: a check that keeps failing is handled once per incident.
	s.send(2)
	s.send(2)
	s.send(2)
	expectLines(1)
	s.send(0) // resolution
	expectLines(2)
	s.send(0)
	expectLines(2)

	// Acceptance 2: a silence of the subscription stops the handler.
	mustAPI(t, n, "PUT", "/api/core/v2/namespaces/default/silenced/linux:*", `{"subscription":"linux","reason":"maintenance"}`, 201)
	waitSilences(t, n, 1)
	s.send(2)
	if ev := stored(); !ev.Check.IsSilenced || len(ev.Check.Silenced) != 1 || ev.Check.Silenced[0] != "linux:*" {
		t.Fatalf("stored event not silenced: %v %v", ev.Check.IsSilenced, ev.Check.Silenced)
	}
	expectLines(2)
	mustAPI(t, n, "DELETE", "/api/core/v2/namespaces/default/silenced/linux:*", "", 204)
	waitSilences(t, n, 0)
	s.send(0)
	expectLines(3) // the resolution goes through again
	s.send(2)
	expectLines(4) // and so does the next incident
	if ev := stored(); ev.Check.IsSilenced {
		t.Fatal("event still silenced after the silence was deleted")
	}

	// expire_on_resolve: silenced while failing, gone when the check resolves.
	s.send(0)
	expectLines(5)
	mustAPI(t, n, "PUT", "/api/core/v2/namespaces/default/silenced/*:disk", `{"check":"disk","expire_on_resolve":true}`, 201)
	waitSilences(t, n, 1)
	s.send(2)
	expectLines(5)
	s.send(0)
	expectLines(6) // the resolution is handled: its silence ended with it
	if ev := stored(); ev.Check.IsSilenced || len(ev.Check.Silenced) != 0 {
		t.Fatalf("the resolution is stored as silenced by the silence it ended: %v", ev.Check.Silenced)
	}
	eventually(t, "the expire_on_resolve silence to be deleted", 5*time.Second, func() bool {
		st, _ := apiCall(t, n, "GET", "/api/core/v2/namespaces/default/silenced/*:disk", "")
		return st == 404
	})

	// expire: a silence past its expire_at is ignored and deleted.
	var sil events.Silenced
	st, body := apiCall(t, n, "PUT", "/api/core/v2/namespaces/default/silenced/linux:disk", `{"subscription":"linux","check":"disk","expire":1}`)
	if st != 201 {
		t.Fatalf("create expiring silence: %d %s", st, body)
	}
	if apiGet(t, n, "/api/core/v2/namespaces/default/silenced/linux:disk", &sil) != 200 || sil.ExpireAt == 0 {
		t.Fatalf("expire_at not set: %+v", sil)
	}
	eventually(t, "the expired silence to be deleted", 8*time.Second, func() bool {
		st, _ := apiCall(t, n, "GET", "/api/core/v2/namespaces/default/silenced/linux:disk", "")
		return st == 404
	})

	// The drop counter is on /metrics from the start.
	resp, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// etcd's own metrics are there too, from the embedded member.
	for _, m := range []string{`picket_pipeline_dropped_total{reason="queue_full"} 0`, `picket_pipeline_handler_runs_total{outcome="ok",type="pipe"} 6`, `picket_pipeline_filtered_total{filter="not_silenced"}`,
		"etcd_server_has_leader 1", "etcd_disk_wal_fsync_duration_seconds_count", "etcd_mvcc_db_total_size_in_use_in_bytes"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

// TestFilterValidationThroughAPI: a filter that does not compile is refused with the
// field and the position.
func TestFilterValidationThroughAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	st, body := apiCall(t, n, "PUT", "/api/core/v2/namespaces/default/filters/bad",
		`{"metadata":{"name":"bad"},"action":"allow","expressions":["true","event.check.status =="]}`)
	if st != 400 || !strings.Contains(string(body), "expressions[1]") || !strings.Contains(string(body), "line 1, column 22") {
		t.Fatalf("status %d body %s", st, body)
	}
	// Handler sets that would loop through stored sets are refused, naming the loop.
	set := func(name string, members ...string) (int, []byte) {
		return apiCall(t, n, "PUT", "/api/core/v2/namespaces/default/handlers/"+name,
			fmt.Sprintf(`{"metadata":{"name":%q},"type":"set","handlers":%s}`, name, mustJSON(t, members)))
	}
	for _, c := range []struct {
		name    string
		members []string
		loop    string // "": accepted
	}{
		{"loopa", []string{"loopb", "mail"}, ""},
		{"loopb", []string{"loopc"}, ""},
		{"loopc", []string{"pager", "loopa"}, "loopc → loopa → loopb → loopc"},
		{"loopc", []string{"pager"}, ""},
		{"loopc", []string{"pager", "loopb"}, "loopc → loopb → loopc"},
		{"loopd", []string{"loopa", "loopa"}, ""},
	} {
		st, body := set(c.name, c.members...)
		if c.loop == "" {
			if st/100 != 2 {
				t.Fatalf("set %s %v: status %d body %s", c.name, c.members, st, body)
			}
			continue
		}
		if st != 400 || !strings.Contains(string(body), c.loop) || !strings.Contains(string(body), "handlers[1]") {
			t.Fatalf("set %s %v: want 400 naming %q at handlers[1], got %d %s", c.name, c.members, c.loop, st, body)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPipelineMetricsToTCP covers acceptance 4: Nagios perfdata become metric points in
// the stored event, and a tcp handler named in output_metric_handlers receives them.
func TestPipelineMetricsToTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(bufio.NewReader(c))
			c.Close()
			got <- b
		}
	}()
	mustAPI(t, n, "PUT", "/api/core/v2/namespaces/default/handlers/graphite",
		fmt.Sprintf(`{"metadata":{"name":"graphite"},"type":"tcp","socket":{"host":"127.0.0.1","port":%d},"timeout":5,"filters":["has_metrics"]}`,
			ln.Addr().(*net.TCPAddr).Port), 201)
	time.Sleep(500 * time.Millisecond) // the definition reaches the pipeline through a watch
	a := mustDialAgent(t, n, "db1", "default", "agent", nodetest.AgentPassword, []string{"linux"}, true)
	s := &resultSender{t: t, a: a, agent: "db1", check: "load", mod: func(ev *events.Event) {
		ev.Check.Output = "LOAD OK - load average: 0.50 | load1=0.5;5;10;0 users=3"
		ev.Check.OutputMetricFormat = events.MetricsNagios
		ev.Check.OutputMetricHandlers = []string{"graphite"}
		ev.Check.OutputMetricTags = []events.MetricTag{{Name: "host", Value: "{{ .name }}"}}
	}}
	s.send(0)
	var ev events.Event
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/events/db1/load", &ev); st != 200 {
		t.Fatalf("get event: %d", st)
	}
	if ev.Metrics == nil || len(ev.Metrics.Points) != 2 || ev.Metrics.Points[0].Name != "load1" || ev.Metrics.Points[0].Value != 0.5 ||
		len(ev.Metrics.Points[0].Tags) != 1 || ev.Metrics.Points[0].Tags[0].Value != "db1" {
		t.Fatalf("stored metrics: %+v", ev.Metrics)
	}
	select {
	case b := <-got:
		var sent events.Event
		if err := json.Unmarshal(b, &sent); err != nil || sent.Metrics == nil || len(sent.Metrics.Points) != 2 {
			t.Fatalf("tcp handler got %s: %v", b, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the tcp handler received nothing")
	}
}

// TestAggregates covers acceptance 5: an aggregate over three agents counts two ok and
// one critical; when one agent stops reporting, its result is pruned after the
// retention by the elected aggregate-pruner.
func TestAggregates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	n := nodetest.Start(t)
	var senders []*resultSender
	for i, status := range []uint32{0, 0, 2} {
		name := fmt.Sprintf("app%d", i+1)
		a := mustDialAgent(t, n, name, "default", "agent", nodetest.AgentPassword, []string{"linux"}, true)
		s := &resultSender{t: t, a: a, agent: name, check: "http", mod: func(ev *events.Event) {
			ev.Check.Aggregate = "frontend"
			ev.Check.Interval = 1
			ev.Check.Metadata.Annotations = map[string]string{events.AggregateRetentionAnnotation: "3"}
		}}
		s.send(status)
		senders = append(senders, s)
	}
	var agg events.Aggregate
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/aggregates/frontend", &agg); st != 200 {
		t.Fatalf("get aggregate: %d", st)
	}
	if agg.Name != "frontend" || agg.OK != 2 || agg.Critical != 1 || agg.Total != 3 || len(agg.Results) != 3 || agg.Results[2].Entity != "app3" {
		t.Fatalf("aggregate %+v", agg)
	}
	var list []events.Aggregate
	if st := apiGet(t, n, "/api/core/v2/namespaces/default/aggregates", &list); st != 200 || len(list) != 1 {
		t.Fatalf("list aggregates: %d %+v", st, list)
	}
	if st, _ := apiCall(t, n, "GET", "/api/core/v2/namespaces/default/aggregates/nope", ""); st != 404 {
		t.Fatalf("unknown aggregate: %d", st)
	}
	// app3 stops; the others keep reporting.
	deadline := time.Now().Add(15 * time.Second)
	for {
		senders[0].send(0)
		senders[1].send(0)
		agg = events.Aggregate{}
		apiGet(t, n, "/api/core/v2/namespaces/default/aggregates/frontend", &agg)
		if len(agg.Results) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("app3 not pruned: %+v", agg)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if agg.OK != 2 || agg.Critical != 0 || agg.Results[0].Entity != "app1" || agg.Results[1].Entity != "app2" {
		t.Fatalf("after pruning: %+v", agg)
	}
	// The pruner removes it from etcd, not only from the answer (which already leaves out
	// results past their retention).
	eventually(t, "the pruner to delete app3's result", 5*time.Second, func() bool {
		kvs, _, err := n.Store().ListAll(t.Context(), "/picket/aggregates/default/frontend")
		return err == nil && len(kvs) == 2
	})
}
