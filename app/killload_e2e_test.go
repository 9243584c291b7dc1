package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/picketmon/picket/agentgw"
)

// TestKill9UnderLoadLosesNothingAcknowledged sends events from several agents as fast as
// the server takes them, kills the server with SIGKILL in the middle, restarts it on the
// same state dir and checks that every event the server acknowledged is stored: an ack
// means committed.
func TestKill9UnderLoadLosesNothingAcknowledged(t *testing.T) {
	bin := picketBinary(t)
	state := t.TempDir()
	ports := freeTCPPorts(t, 4)
	args := serverArgs(state, ports)
	api := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	gw := fmt.Sprintf("ws://127.0.0.1:%d", ports[1])

	srv := startServer(t, bin, args...)
	srv.waitFor(t, "picket server ready", 30*time.Second)
	initEnv := []string{"PICKET_BACKEND_CLUSTER_ADMIN_PASSWORD=kill-admin-pass", "PICKET_BACKEND_AGENT_PASSWORD=kill-agent-pass"}
	if out, code := runPicket(t, bin, initEnv, "init", fmt.Sprintf("--etcd-client-urls=http://127.0.0.1:%d", ports[2])); code != 0 {
		t.Fatalf("init: %s", out)
	}

	var mu sync.Mutex
	acked := map[string]bool{} // "entity/check" of every acknowledged event
	sent := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	const agents = 8
	for a := 0; a < agents; a++ {
		wg.Add(1)
		go func(a int) {
			defer wg.Done()
			name := fmt.Sprintf("load-%d", a)
			h := http.Header{}
			h.Set(agentgw.HeaderAgentName, name)
			h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("agent:kill-agent-pass")))
			h.Set(agentgw.AckHeader, "1")
			conn, _, err := websocket.Dial(ctx, gw, &websocket.DialOptions{HTTPHeader: h})
			if err != nil {
				t.Errorf("%s: dial: %v", name, err)
				return
			}
			defer conn.CloseNow()
			go func() {
				for {
					_, b, err := conn.Read(ctx)
					if err != nil {
						return
					}
					if typ, payload, err := agentgw.Decode(b); err == nil && typ == agentgw.TypeAck {
						var ack agentgw.Ack
						if json.Unmarshal(payload, &ack) == nil {
							mu.Lock()
							acked[ack.ID] = true
							mu.Unlock()
						}
					}
				}
			}()
			for i := 0; ctx.Err() == nil; i++ {
				check := fmt.Sprintf("c-%05d", i)
				id := name + "/" + check // the ID names the key, so an ack says which event
				ev := fmt.Sprintf(`{"entity":{"metadata":{"name":%q},"entity_class":"agent"},"check":{"metadata":{"name":%q},"command":"x","interval":10,"status":%d,"output":"load"},"id":%q}`,
					name, check, i%3, id)
				if err := conn.Write(ctx, websocket.MessageBinary, agentgw.Encode(agentgw.TypeEvent, []byte(ev))); err != nil {
					return // the server died
				}
				mu.Lock()
				sent++
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}(a)
	}

	// Let load build up, then kill the server without warning.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.exitWithin(t, 10*time.Second)
	cancel()
	wg.Wait()
	mu.Lock()
	ackedIDs := make([]string, 0, len(acked))
	for id := range acked {
		ackedIDs = append(ackedIDs, id)
	}
	total := sent
	mu.Unlock()
	if len(ackedIDs) < 100 {
		t.Fatalf("only %d events acknowledged before the kill; the load did not build up", len(ackedIDs))
	}

	srv2 := startServer(t, bin, args...)
	srv2.waitFor(t, "picket server ready", 30*time.Second)
	token := httpToken(t, api, "admin", "kill-admin-pass")
	st, body := httpDo(t, "GET", api+"/api/core/v2/namespaces/default/events", token, "")
	if st != 200 {
		t.Fatalf("list events: %d %s", st, body)
	}
	var stored []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &stored); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, e := range stored {
		have[e.ID] = true
	}
	missing := 0
	for _, id := range ackedIDs {
		if !have[id] {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged event %s is not stored after the restart", id)
			}
		}
	}
	t.Logf("sent %d events, %d acknowledged before kill -9, %d stored after the restart, %d acknowledged ones missing",
		total, len(ackedIDs), len(stored), missing)
	_ = srv2.cmd.Process.Signal(syscall.SIGTERM)
	srv2.exitWithin(t, 15*time.Second)
}
