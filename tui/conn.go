package tui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
	"github.com/picketmon/picket/node/cluster"
)

// Conn is how the console reaches a cluster: the API URLs of its servers (the first is
// tried first), the TLS trust and the session. Any server answers for the whole cluster,
// so the console keeps working when the one it talked to dies.
type Conn struct {
	APIURLs []string
	// APIByMember maps a member's name to its server's API URL, when known (a sandbox):
	// replace then avoids talking to the server it replaces.
	APIByMember map[string]string
	// Session holds the tokens and TLS settings; its APIURL is ignored.
	Session client.Config
	// ConfigDir is where refreshed tokens are saved; "" keeps them in memory.
	ConfigDir string
	// Username and Password, when set, log in when the session is opened.
	Username, Password string
}

// Session is a live connection to a cluster: the cluster operations of node/cluster
// (shared with `picket cluster …`) over a transport that fails over between servers.
type Session struct {
	*cluster.Client
	tr   *failover
	conn Conn
}

// Open connects to the cluster described by c, logging in when c carries a password.
func (c *Conn) Open(ctx context.Context) (*Session, error) {
	if len(c.APIURLs) == 0 {
		return nil, errors.New("no API URL to talk to")
	}
	tr, err := newFailover(c.APIURLs, c.Session)
	if err != nil {
		return nil, err
	}
	cfg := c.Session
	cfg.APIURL = c.APIURLs[0]
	api, err := client.New(cfg, client.Options{ConfigDir: c.ConfigDir, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		return nil, err
	}
	if c.Password != "" {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := api.Login(lctx, c.Username, c.Password); err != nil {
			return nil, fmt.Errorf("log in to %s as %s: %w", strings.Join(c.APIURLs, ", "), c.Username, err)
		}
	}
	return &Session{Client: cluster.New(api), tr: tr, conn: *c}, nil
}

// merge adds c's servers to the session's, for a node that just joined.
func (s *Session) merge(c *Conn) {
	s.tr.add(c.APIURLs)
	for name, u := range c.APIByMember {
		if s.conn.APIByMember == nil {
			s.conn.APIByMember = map[string]string{}
		}
		s.conn.APIByMember[name] = u
	}
}

// Answering returns the API URL that answered last.
func (s *Session) Answering() string { return s.tr.current() }

// Replace runs cluster.Client.Replace while keeping requests away from the server of
// the member being replaced, which Replace stops.
func (s *Session) Replace(ctx context.Context, o cluster.ReplaceOptions) (*cluster.ReplaceResult, error) {
	if u := s.conn.APIByMember[o.Name]; u != "" {
		restore := s.tr.avoid(u)
		defer restore()
	}
	return s.Client.Replace(ctx, o)
}

// Counts are the agents and events the dashboard shows.
type Counts struct {
	// Agents is the number of agents whose keepalive is passing.
	Agents int
	// Entities is the number of agent entities.
	Entities int
	// Events counts events by status: OK, warning, critical, unknown.
	Events [4]int
}

// Counts lists the events and agent entities of every namespace and counts them.
func (s *Session) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	evKind, _ := events.LookupKind("events")
	enKind, _ := events.LookupKind("entities")
	evs, err := s.API().List(ctx, evKind, "")
	if err != nil {
		return c, err
	}
	for _, raw := range evs {
		var e struct {
			Check *struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
				Status uint32 `json:"status"`
			} `json:"check"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Check == nil {
			continue
		}
		st := e.Check.Status
		if st > 3 {
			st = 3
		}
		c.Events[st]++
		if e.Check.Metadata.Name == "keepalive" && st == 0 {
			c.Agents++
		}
	}
	ens, err := s.API().List(ctx, enKind, "")
	if err != nil {
		return c, err
	}
	for _, raw := range ens {
		var e struct {
			Class string `json:"entity_class"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Class == "agent" {
			c.Entities++
		}
	}
	return c, nil
}

// Probe measures a TCP connect to the first reachable client URL of a member, from this
// console: a member unreachable from here may still be healthy (firewalls), so the
// dashboard shows it beside the health, not instead of it.
func (s *Session) Probe(ctx context.Context, urls []string) (time.Duration, error) {
	return probeTCP(ctx, urls)
}

func probeTCP(ctx context.Context, urls []string) (time.Duration, error) {
	if len(urls) == 0 {
		return 0, errors.New("no client URLs")
	}
	var lastErr error
	for _, raw := range urls {
		host := raw
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			host = u.Host
		}
		var d net.Dialer
		t := time.Now()
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			lastErr = err
			continue
		}
		took := time.Since(t)
		conn.Close()
		return took, nil
	}
	return 0, lastErr
}

// failover is an http.RoundTripper that sends each request to the server that answered
// last and, when it cannot be reached, to the next one. Requests that may change state
// are retried elsewhere only when the connection was refused before anything was sent.
type failover struct {
	base *http.Transport

	mu      sync.Mutex
	urls    []*url.URL
	cur     int
	avoided map[string]int
}

func newFailover(raw []string, cfg client.Config) (*failover, error) {
	f := &failover{avoided: map[string]int{}}
	for _, r := range raw {
		n, err := client.NormalizeURL(r)
		if err != nil {
			return nil, err
		}
		u, _ := url.Parse(n)
		f.urls = append(f.urls, u)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: time.Second, KeepAlive: 15 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 3 * time.Second
	tc, err := client.TLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tc
	f.base = tr
	return f, nil
}

func (f *failover) add(raw []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range raw {
		n, err := client.NormalizeURL(r)
		if err != nil {
			continue
		}
		dup := false
		for _, u := range f.urls {
			dup = dup || u.String() == n
		}
		if !dup {
			u, _ := url.Parse(n)
			f.urls = append(f.urls, u)
		}
	}
}

func (f *failover) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.urls[f.cur].String()
}

// avoid keeps requests away from raw until the returned function is called.
func (f *failover) avoid(raw string) func() {
	n, _ := client.NormalizeURL(raw)
	f.mu.Lock()
	f.avoided[n]++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.avoided[n]--
		if f.avoided[n] <= 0 {
			delete(f.avoided, n)
		}
		f.mu.Unlock()
	}
}

// order returns the indexes to try: the current server first, avoided ones left out
// (unless every server is avoided).
func (f *failover) order() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i := range f.urls {
		j := (f.cur + i) % len(f.urls)
		if f.avoided[f.urls[j].String()] == 0 {
			out = append(out, j)
		}
	}
	if len(out) == 0 {
		out = []int{f.cur}
	}
	return out
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead
	var lastErr error
	for n, i := range f.order() {
		f.mu.Lock()
		u := f.urls[i]
		f.mu.Unlock()
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, ""
		if n > 0 && req.Body != nil {
			if req.GetBody == nil {
				return nil, lastErr
			}
			b, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r.Body = b
		}
		resp, err := f.base.RoundTrip(r)
		if err == nil {
			f.mu.Lock()
			f.cur = i
			f.mu.Unlock()
			return resp, nil
		}
		lastErr = err
		// The next request starts elsewhere, whatever happens to this one.
		f.mu.Lock()
		if f.cur == i {
			f.cur = (i + 1) % len(f.urls)
		}
		f.mu.Unlock()
		if req.Context().Err() != nil || (!idempotent && !refusedBeforeSending(err)) {
			return nil, err
		}
	}
	return nil, lastErr
}

// refusedBeforeSending reports a dial failure: nothing reached the server.
func refusedBeforeSending(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
