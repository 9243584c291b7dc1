package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/nodetest"
)

// TestEventsFenceAcrossServers: the server holding an agent's session stores the
// agent's settled events without a condition of their own (one comparison of the events
// fence per grouped transaction). Every other writer of the agent's events moves the
// fence: a result posted through another server's API, the agent's session moving to
// the other server and back; a result for an entity nobody claims leaves it alone.
// No result is lost or built on a stale state: each check counts every result sent.
func TestEventsFenceAcrossServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member and two servers")
	}
	n1 := nodetest.Start(t)
	n2 := nodetest.StartWith(t, nodetest.Options{Etcd: n1.Store().Client().Endpoints()})
	const entity = "fence1"
	var checks []string
	for i := 0; i < 20; i++ {
		checks = append(checks, fmt.Sprintf("c%02d", i))
	}
	sent := map[string]int{}
	round := 0
	sendRound := func(a *wsAgent) {
		t.Helper()
		round++
		for _, c := range checks {
			a.send(agentgw.TypeEvent, result(entity, c, 2, fmt.Sprintf("r%d-%s", round, c)))
			sent[c]++
		}
		for range checks {
			a.next(agentgw.TypeAck, 10*time.Second)
		}
	}
	dial := func(n *nodetest.Node) *wsAgent {
		t.Helper()
		a := mustDialAgent(t, n, entity, "default", "agent", nodetest.AgentPassword, []string{"linux"}, true)
		a.next(agentgw.TypeEntityConfig, 5*time.Second)
		return a
	}

	a := dial(n1)
	// The fence is usable once it stood still for a while after the server started.
	time.Sleep(etcdx.FenceQuiet + 300*time.Millisecond)
	for i := 0; i < 4; i++ {
		sendRound(a)
	}
	if v := metricValue(t, n1, "picket_event_writes_unconditional_total"); v == 0 {
		t.Errorf("no write of the session's settled events skipped its condition")
	}

	fenceRev := func() int64 {
		t.Helper()
		kv, err := n1.Store().Get(context.Background(), "/picket/fences/events")
		if err != nil {
			t.Fatal(err)
		}
		return kv.ModRevision
	}
	post := func(ev *events.Event) {
		t.Helper()
		body, _ := json.Marshal(ev)
		if st, b := adminCall(t, n2, "POST", "/api/core/v2/namespaces/default/events", string(body)); st != 201 {
			t.Fatalf("POST event through the other server: %d %s", st, b)
		}
	}
	// A result for an entity no session claims (a proxy) leaves the fence alone.
	before := fenceRev()
	proxy := result("router-1", "ping", 0, "")
	proxy.Entity.EntityClass = "proxy"
	post(proxy)
	if after := fenceRev(); after != before {
		t.Errorf("a result for an unclaimed entity moved the fence (%d → %d)", before, after)
	}
	// Another server stores a result for one of the agent's checks through its API:
	// the agent's events are claimed, so that write moves the fence.
	post(result(entity, "c00", 2, "api-1"))
	sent["c00"]++
	if after := fenceRev(); after == before {
		t.Errorf("a result for a claimed entity, from the API, left the fence at %d", after)
	}
	sendRound(a) // at once: the session's server may not have seen the fence move yet

	// The agent's session moves to the other server, then back.
	a.conn.Close(websocket.StatusNormalClosure, "moving")
	b := dial(n2)
	sendRound(b)
	sendRound(b)
	b.conn.Close(websocket.StatusNormalClosure, "moving back")
	c := dial(n1)
	sendRound(c)
	sendRound(c)

	// Two agents with the same name, one on each server at once (a misconfiguration,
	// or the overlap of a failover): the sessions take the agent's events from each
	// other, and still no result is lost.
	d := dial(n2)
	time.Sleep(etcdx.FenceQuiet + 300*time.Millisecond)
	for i := 0; i < 3; i++ {
		sendRound(c)
		sendRound(d)
	}
	for i := 0; i < 3; i++ {
		round++
		for _, a := range []*wsAgent{c, d} {
			for _, name := range checks {
				a.send(agentgw.TypeEvent, result(entity, name, 2, fmt.Sprintf("r%d-%p-%s", round, a, name)))
				sent[name]++
			}
		}
		for _, a := range []*wsAgent{c, d} {
			for range checks {
				a.next(agentgw.TypeAck, 10*time.Second)
			}
		}
	}
	sendRound(c) // last, so the stored IDs are known

	for _, name := range checks {
		var got events.Event
		if st := apiGet(t, n1, "/api/core/v2/namespaces/default/events/"+entity+"/"+name, &got); st != 200 {
			t.Fatalf("event %s: %d", name, st)
		}
		// Every result counts; the history keeps the last 21, as Sensu's does.
		want := sent[name]
		if got.ID != fmt.Sprintf("r%d-%s", round, name) || got.Check.Occurrences != int64(want) || len(got.Check.History) != min(want, 21) {
			t.Errorf("%s: id %s, occurrences %d, %d results in its history; want r%d-%s, %d and %d",
				name, got.ID, got.Check.Occurrences, len(got.Check.History), round, name, want, min(want, 21))
		}
	}
	t.Logf("unconditional writes: %v on the first server, %v on the second; transactions refused by the fence: %v and %v",
		metricValue(t, n1, "picket_event_writes_unconditional_total"), metricValue(t, n2, "picket_event_writes_unconditional_total"),
		metricValue(t, n1, "picket_event_commits_fenced_total"), metricValue(t, n2, "picket_event_commits_fenced_total"))
}
