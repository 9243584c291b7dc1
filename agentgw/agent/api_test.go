package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/picketmon/picket/events"
)

func newAPITestAgent(t *testing.T, maxEvents int) (*Agent, http.Handler) {
	t.Helper()
	a := New(Config{Name: "host-1", Namespace: "ops", Labels: map[string]string{"secret": "x"}, Version: "1.2.3"})
	q, err := OpenQueue(t.TempDir(), maxEvents, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.queue = q
	return a, a.apiHandler()
}

func do(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

func TestPostEventQueues(t *testing.T) {
	a, h := newAPITestAgent(t, 10)
	rec := do(h, "POST", "/events", `{"check": {"metadata": {"name": "backup"}, "status": 2, "output": "backup failed", "history": [{"status": 0}]}, "entity": {"metadata": {"name": "nas-1"}}}`)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	ids := a.queue.IDs()
	if len(ids) != 1 {
		t.Fatalf("queue = %v", ids)
	}
	_, _, b, _ := a.queue.next(0)
	ev := &events.Event{}
	if err := json.Unmarshal(b, ev); err != nil {
		t.Fatal(err)
	}
	c := ev.Check
	if ev.ID != ids[0] || c.Metadata.Name != "backup" || c.Metadata.Namespace != "ops" || c.Status != 2 || c.Output != "backup failed" ||
		c.Executed == 0 || c.Issued == 0 || len(c.History) != 0 || c.ProxyEntityName != "nas-1" || ev.Timestamp == 0 {
		t.Fatalf("queued event: id %s check %+v", ev.ID, c)
	}
	if ev.Entity.Metadata.Name != "host-1" || ev.Entity.Metadata.Labels["secret"] != Redacted {
		t.Fatalf("entity = %+v", ev.Entity.Metadata)
	}
}

func TestPostEventRejects(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		message    string
	}{
		{"empty body", "", 400, "empty body"},
		{"not JSON", "{nope", 400, "not an event"},
		{"no check", `{"entity": {}}`, 400, "no check"},
		{"no check name", `{"check": {"status": 1}}`, 400, "check.metadata.name is missing"},
		{"bad check name", `{"check": {"metadata": {"name": "a b"}}}`, 400, "may only hold"},
		{"negative status", `{"check": {"metadata": {"name": "a"}, "status": -1}}`, 400, "not an event"},
		{"status of the wrong type", `{"check": {"metadata": {"name": "a"}, "status": "ok"}}`, 400, "not an event"},
		{"other namespace", `{"check": {"metadata": {"name": "a", "namespace": "prod"}}}`, 400, "not the agent's namespace"},
		{"too large", `{"check": {"metadata": {"name": "a"}, "output": "` + strings.Repeat("x", MaxAPIBody) + `"}}`, 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, h := newAPITestAgent(t, 10)
			rec := do(h, "POST", "/events", tt.body)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.message) {
				t.Fatalf("got %d %s, want %d with %q", rec.Code, rec.Body, tt.status, tt.message)
			}
			if a.queue.Len() != 0 {
				t.Fatal("a rejected event was queued")
			}
		})
	}
}

// TestPostEventNamesAsTheServer: the local API takes the names the server takes, ':'
// included; before, it refused them.
func TestPostEventNamesAsTheServer(t *testing.T) {
	a, h := newAPITestAgent(t, 10)
	body := `{"entity": {"metadata": {"name": "router:1"}}, "check": {"metadata": {"name": "app:health"}, "status": 1}}`
	if rec := do(h, "POST", "/events", body); rec.Code != 202 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if a.queue.Len() != 1 {
		t.Fatal("the event was not queued")
	}
}

func TestPostEventQueueFull(t *testing.T) {
	_, h := newAPITestAgent(t, 1)
	body := `{"check": {"metadata": {"name": "a"}}}`
	if rec := do(h, "POST", "/events", body); rec.Code != 202 {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, "POST", "/events", body); rec.Code != 503 || !strings.Contains(rec.Body.String(), "queue is full") {
		t.Fatalf("second: %d %s", rec.Code, rec.Body)
	}
}

func TestHealthzAndVersion(t *testing.T) {
	a, h := newAPITestAgent(t, 10)
	rec := do(h, "GET", "/healthz", "")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"connected":false`) {
		t.Fatalf("disconnected healthz: %d %s", rec.Code, rec.Body)
	}
	url := "ws://backend:8081"
	a.connected.Store(&url)
	rec = do(h, "GET", "/healthz", "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"backend":"ws://backend:8081"`) {
		t.Fatalf("connected healthz: %d %s", rec.Code, rec.Body)
	}
	rec = do(h, "GET", "/version", "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"version":"1.2.3"}` {
		t.Fatalf("version: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, "GET", "/events", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /events: %d", rec.Code)
	}
}

func TestLocalAPIOverHTTP(t *testing.T) {
	fb := newFakeBackend(t, false)
	a := startAgent(t, Config{BackendURLs: []string{fb.url()}})
	addr := <-a.apiAddr
	resp, err := http.Post("http://"+addr+"/events", "application/json", strings.NewReader(`{"check": {"metadata": {"name": "posted"}, "status": 1, "output": "hi"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("POST /events: %d", resp.StatusCode)
	}
	ev := fb.next("event")
	if ev.Check.Metadata.Name != "posted" || ev.Check.Output != "hi" {
		t.Fatalf("event %+v", ev.Check)
	}
}
