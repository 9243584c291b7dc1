package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/picketmon/picket/events"
)

// MaxAPIBody bounds a POST /events body: what fits in one frame, with room for the
// entity the agent adds.
const MaxAPIBody = 1 << 20

// startAPI listens on api-host:api-port and serves the local agent API in the
// background; the returned server is shut down by Run, and done is closed once it no
// longer serves.
func (a *Agent) startAPI() (srv *http.Server, done <-chan struct{}, err error) {
	addr := net.JoinHostPort(a.cfg.APIHost, strconv.Itoa(a.cfg.APIPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("agent API on %s: %w; set api-port to a free port or disable-api", addr, err)
	}
	srv = &http.Server{Handler: a.apiHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	a.log.Info("agent API listening", "address", ln.Addr().String())
	select {
	case a.apiAddr <- ln.Addr().String():
	default:
	}
	return srv, served, nil
}

// apiHandler serves POST /events, GET /healthz and GET /version.
func (a *Agent) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", a.postEvent)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": a.cfg.Version})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, format string, a ...any) {
	writeJSON(w, status, map[string]string{"message": fmt.Sprintf(format, a...)})
}

// healthz answers 200 while connected to a backend, 503 otherwise.
func (a *Agent) healthz(w http.ResponseWriter, _ *http.Request) {
	backend := a.Connected()
	body := map[string]any{"connected": backend != "", "queued": a.queueLen()}
	if backend == "" {
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	body["backend"] = backend
	writeJSON(w, http.StatusOK, body)
}

func (a *Agent) queueLen() int {
	if a.queue == nil {
		return 0
	}
	return a.queue.Len()
}

// postEvent takes an event (at least a check with a name; status and output default to
// 0 and ""), fills in the agent's entity, the namespace, times and a new id, and answers
// 202 once the event is durably queued. An entity of another name becomes the check's
// proxy_entity_name, as the event is always sent with the agent's own entity.
func (a *Agent) postEvent(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxAPIBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "event body is larger than %d bytes", MaxAPIBody)
			return
		}
		apiError(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	ev, err := a.parsePostedEvent(body)
	if err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err := a.enqueue(ev); err != nil {
		if errors.Is(err, ErrQueueFull) {
			apiError(w, http.StatusServiceUnavailable, "the agent's event queue is full; retry later")
			return
		}
		a.log.Error("posted event not queued", "check", ev.Check.Metadata.Name, "err", err)
		apiError(w, http.StatusInternalServerError, "event not queued: %v", err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (a *Agent) parsePostedEvent(body []byte) (*events.Event, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New(`empty body: post an event such as {"check": {"metadata": {"name": "my-check"}, "status": 1, "output": "disk almost full"}}`)
	}
	ev := &events.Event{}
	if err := json.Unmarshal(body, ev); err != nil {
		return nil, fmt.Errorf("body is not an event: %v", err)
	}
	if ev.Check == nil {
		return nil, errors.New(`event has no check: give at least {"check": {"metadata": {"name": "..."}, "status": N, "output": "..."}}`)
	}
	name := ev.Check.Metadata.Name
	if name == "" {
		return nil, errors.New("check.metadata.name is missing: name the check the result belongs to")
	}
	if !events.ValidName(name) {
		return nil, fmt.Errorf("check.metadata.name %q may only hold letters, digits, '_', '.', '-' and ':'", name)
	}
	if ns := ev.Check.Metadata.Namespace; ns != "" && ns != a.cfg.Namespace {
		return nil, fmt.Errorf("check.metadata.namespace %q is not the agent's namespace %q; leave it out", ns, a.cfg.Namespace)
	}
	if ev.Entity != nil && ev.Entity.Metadata.Name != "" && ev.Entity.Metadata.Name != a.cfg.Name {
		if !events.ValidName(ev.Entity.Metadata.Name) {
			return nil, fmt.Errorf("entity.metadata.name %q may only hold letters, digits, '_', '.', '-' and ':'", ev.Entity.Metadata.Name)
		}
		if ev.Check.ProxyEntityName == "" {
			ev.Check.ProxyEntityName = ev.Entity.Metadata.Name
		}
	}
	now := time.Now().Unix()
	ev.Check.Metadata.Namespace = a.cfg.Namespace
	if ev.Check.Executed == 0 {
		ev.Check.Executed = now
	}
	if ev.Check.Issued == 0 {
		ev.Check.Issued = now
	}
	ev.Check.History = nil // the backend keeps the history
	ev.Entity = a.entity.Entity()
	ev.Metadata.Namespace = a.cfg.Namespace
	ev.Timestamp = now
	return ev, nil
}
