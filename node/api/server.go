// Package api serves Picket's REST API: the Sensu Go core/v2 resource routes,
// authentication, health, readiness, version, metrics and cluster information.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// maxBody is the largest request body accepted; larger bodies get 413.
const maxBody = 512 * 1024

// Config is what the API server needs from its node.
type Config struct {
	// Name is this server's name (its etcd member name), reported by /info.
	Name    string
	Version string
	Store   *etcdx.Store
	// EtcdClient is how to reach etcd, for the per-member health checks.
	EtcdClient etcdx.ClientConfig
	Auth       *Auth
	Logger     *slog.Logger
	// Tasks reports the owner of each elected task for /info; nil means none run yet.
	Tasks func() map[string]*string
	// StoreEvent stores an event written through the API as a check result (state,
	// silencing, pipeline); nil stores it as given.
	StoreEvent func(ctx context.Context, ev *events.Event) error
	// Execute publishes an ad hoc check request (POST …/checks/{name}/execute).
	Execute func(ctx context.Context, ns, check string, subscriptions []string, reason string) error
}

// Server is the HTTP handler of the REST API.
type Server struct {
	cfg      Config
	store    *etcdx.Store
	auth     *Auth
	log      *slog.Logger
	ready    atomic.Bool
	mux      *http.ServeMux
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	authFail *prometheus.CounterVec
}

// New builds the API handler. It answers /ready with 503 until SetReady(true).
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, store: cfg.Store, auth: cfg.Auth, log: cfg.Logger, mux: http.NewServeMux()}
	s.registry = prometheus.NewRegistry()
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_http_requests_total", Help: "API requests by method, route and status code.",
	}, []string{"method", "route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "picket_http_request_duration_seconds", Help: "API request latency by method and route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"method", "route"})
	s.authFail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_auth_failures_total", Help: "Rejected authentication attempts by endpoint.",
	}, []string{"endpoint"})
	s.registry.MustRegister(s.requests, s.latency, s.authFail,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.mux.HandleFunc("GET /health", s.handleHealth)
	s.mux.HandleFunc("GET /version", s.handleVersion)
	s.mux.HandleFunc("GET /ready", s.handleReady)
	// With etcd's own metrics (an embedded member registers them with Prometheus's
	// default registry): its disk latencies, leader and database size are what tell an
	// operator whether etcd keeps up.
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{s.registry, etcdMetrics{}}, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /auth", s.handleAuth)
	s.mux.HandleFunc("POST /auth/token", s.handleToken)
	s.mux.HandleFunc("GET /auth/test", s.authed(s.handleAuthTest))
	s.mux.HandleFunc("POST /auth/logout", s.handleLogout)
	s.mux.HandleFunc("GET /info", s.authed(s.handleInfo))
	s.mux.HandleFunc("/api/core/v2/", s.authed(s.handleCoreV2))
	if os.Getenv("PICKET_PPROF") == "1" {
		// Profiling for benchmarks only; off unless asked for.
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	return s
}

// Registry exposes the metrics registry so other components can add their metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// etcdMetrics gathers the etcd_ families of Prometheus's default registry, where an
// embedded etcd member registers its metrics; the rest of that registry (Go and process
// collectors) is also in the API's own.
type etcdMetrics struct{}

// What it could not gather is left out rather than failing /metrics: the rest of the
// default registry is not Picket's.
func (etcdMetrics) Gather() ([]*dto.MetricFamily, error) {
	mfs, _ := prometheus.DefaultGatherer.Gather()
	out := mfs[:0]
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "etcd_") {
			out = append(out, mf)
		}
	}
	return out, nil
}

// SetReady flips /ready and lets requests through once the node is ready.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

type routeLabelKey struct{}

// ServeHTTP counts and times every request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	label := new(string)
	r = r.WithContext(context.WithValue(r.Context(), routeLabelKey{}, label))
	_, pattern := s.mux.Handler(r)
	*label = pattern
	s.mux.ServeHTTP(sw, r)
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	route := *label
	if route == "" {
		route = "unmatched"
	}
	s.requests.WithLabelValues(r.Method, route, strconv.Itoa(sw.status)).Inc()
	s.latency.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
}

func setRouteLabel(r *http.Request, route string) {
	if p, ok := r.Context().Value(routeLabelKey{}).(*string); ok {
		*p = r.Method + " " + route
	}
}

// authed wraps a handler that needs an authenticated caller.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			writeError(w, errorf(http.StatusServiceUnavailable, "server is starting; retry in a moment"))
			return
		}
		p, err := s.auth.Authenticate(r.Context(), r)
		if err != nil {
			if errors.Is(err, errUnauthorized) {
				s.authFail.WithLabelValues("api").Inc()
				writeError(w, errorf(http.StatusUnauthorized, "%s", strings.TrimSuffix(err.Error(), ": "+errUnauthorized.Error())))
				return
			}
			s.log.Error("authenticate", "err", err)
			writeError(w, err)
			return
		}
		h(w, r, p)
	}
}

func (s *Server) handleAuth(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeError(w, errorf(http.StatusServiceUnavailable, "server is starting; retry in a moment"))
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		s.authFail.WithLabelValues("auth").Inc()
		writeError(w, errorf(http.StatusUnauthorized, "send the username and password with HTTP Basic authentication"))
		return
	}
	tok, err := s.auth.Login(r.Context(), user, pass)
	if err != nil {
		if errors.Is(err, errBadCredentials) {
			s.authFail.WithLabelValues("auth").Inc()
			s.log.Info("login failed", "user", user, "remote", r.RemoteAddr)
			writeError(w, errorf(http.StatusUnauthorized, "%v", err))
			return
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tok)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	_, access, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&body); err != nil || body.RefreshToken == "" {
		writeError(w, errorf(http.StatusBadRequest, `send {"refresh_token": "..."} with the access token as Bearer`))
		return
	}
	tok, err := s.auth.Refresh(r.Context(), strings.TrimSpace(access), body.RefreshToken)
	if err != nil {
		if errors.Is(err, errUnauthorized) {
			s.authFail.WithLabelValues("token").Inc()
			writeError(w, errorf(http.StatusUnauthorized, "%s", strings.TrimSuffix(err.Error(), ": "+errUnauthorized.Error())))
			return
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tok)
}

func (s *Server) handleAuthTest(w http.ResponseWriter, _ *http.Request, p *Principal) {
	writeJSON(w, http.StatusOK, map[string]any{"username": p.Username, "groups": p.Groups, "role": p.Role})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") {
		writeError(w, errorf(http.StatusUnauthorized, "log out with the access token as Authorization: Bearer <token>"))
		return
	}
	if err := s.auth.Logout(r.Context(), strings.TrimSpace(token)); err != nil {
		if errors.Is(err, errUnauthorized) {
			writeError(w, errorf(http.StatusUnauthorized, "invalid access token"))
			return
		}
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"picket": s.cfg.Version, "sensu_backend": s.cfg.Version}
	if s.store != nil && s.ready.Load() {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		cli := s.store.Client()
		for _, ep := range cli.Endpoints() {
			if st, err := cli.Status(ctx, ep); err == nil {
				out["etcd"] = map[string]string{"etcdserver": st.Version}
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	timeout := 3 * time.Second
	if t := r.URL.Query().Get("timeout"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n <= 0 {
			writeError(w, errorf(http.StatusBadRequest, "timeout %q must be a positive number of seconds", t))
			return
		}
		timeout = time.Duration(n) * time.Second
	}
	if !s.ready.Load() {
		writeError(w, errorf(http.StatusServiceUnavailable, "server is starting; etcd is not ready yet"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	writeJSON(w, http.StatusOK, etcdx.ClusterHealth(ctx, s.store.Client(), s.cfg.EtcdClient, timeout))
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request, _ *Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var members []map[string]any
	if resp, err := s.store.Client().MemberList(ctx); err == nil {
		for _, m := range resp.Members {
			members = append(members, map[string]any{
				"id": fmt.Sprintf("%x", m.GetID()), "name": m.GetName(),
				"peer_urls": m.GetPeerURLs(), "client_urls": m.GetClientURLs(), "is_learner": m.GetIsLearner(),
			})
		}
	}
	tasks := map[string]*string{}
	if s.cfg.Tasks != nil {
		tasks = s.cfg.Tasks() // every task, nil for those nobody runs yet
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": s.cfg.Name, "version": s.cfg.Version, "members": members, "tasks": tasks})
}

// handleCoreV2 routes everything below /api/core/v2/.
func (s *Server) handleCoreV2(w http.ResponseWriter, r *http.Request, p *Principal) {
	rest := strings.TrimPrefix(r.URL.Path, "/api/core/v2/")
	if strings.HasPrefix(rest, "cluster/") || rest == "cluster" {
		setRouteLabel(r, "/api/core/v2/cluster")
		if err := s.serveCluster(w, r, strings.TrimPrefix(rest, "cluster"), p); err != nil {
			writeError(w, err)
		}
		return
	}
	if segs := strings.Split(strings.Trim(rest, "/"), "/"); len(segs) == 5 && segs[0] == "namespaces" && segs[2] == "checks" && segs[4] == "execute" {
		setRouteLabel(r, "/api/core/v2/namespaces/{ns}/checks/{name}/execute")
		if err := s.execute(w, r, segs[1], segs[3], p); err != nil {
			writeError(w, err)
		}
		return
	}
	if s.routeAggregates(w, r, rest, p) {
		return
	}
	rt, err := parseResourcePath(rest)
	if err != nil {
		writeError(w, err)
		return
	}
	setRouteLabel(r, rt.template)
	if err := s.serveResource(w, r, rt, p); err != nil {
		var he *httpError
		var mbe *http.MaxBytesError
		var ve events.ValidationError
		if !errors.As(err, &he) && !errors.As(err, &mbe) && !errors.As(err, &ve) {
			s.log.Warn("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeError(w, err)
	}
}

// execute answers POST …/checks/{name}/execute: an ad hoc run of a check, optionally on
// other subscriptions than its own, answered 202 once the request is published.
func (s *Server) execute(w http.ResponseWriter, r *http.Request, ns, name string, p *Principal) error {
	if r.Method != http.MethodPost {
		return errorf(http.StatusMethodNotAllowed, "use POST to execute a check")
	}
	if !allowed(p.Role, verbWrite, "checks") {
		return errorf(http.StatusForbidden, "user %s (role %s) may not execute checks", p.Username, roleName(p.Role))
	}
	if s.cfg.Execute == nil {
		return errorf(http.StatusServiceUnavailable, "this server has no agent gateway to run checks")
	}
	var body struct {
		Check         string   `json:"check"`
		Subscriptions []string `json:"subscriptions"`
		Reason        string   `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&body); err != nil {
			return errorf(http.StatusBadRequest, `body must be {"check": "%s", "subscriptions": [...], "reason": "..."}: %v`, name, err)
		}
	}
	if body.Check != "" && body.Check != name {
		return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("check %q does not match the name %q in the URL", body.Check, name),
			fields: []events.FieldError{{Field: "check", Message: "must match the name in the URL"}}}
	}
	if err := s.cfg.Execute(r.Context(), ns, name, body.Subscriptions, body.Reason); err != nil {
		if errors.Is(err, etcdx.ErrNotFound) {
			return errorf(http.StatusNotFound, "check %q not found in namespace %s", name, ns)
		}
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"issued": "ok"})
	return nil
}
