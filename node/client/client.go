// Package client talks to Picket's core/v2 REST API on behalf of the CLI and the console:
// it logs in, keeps the access token fresh, follows list pages and turns error responses
// into *APIError values that say what the server refused and why.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/picketmon/picket/events"
)

// PageSize is how many resources List asks for per request.
const PageSize = 500

// refreshMargin is how long before its expiry an access token is refreshed, so that a
// request does not leave with a token that expires on the way.
const refreshMargin = 10 * time.Second

// ErrNotLoggedIn is returned when the API wants credentials and the client has neither a
// session nor an API key.
var ErrNotLoggedIn = errors.New("not logged in")

// ErrSessionExpired is returned when the refresh token was refused (expired, logged out,
// or issued by another server): only a new login helps.
var ErrSessionExpired = errors.New("session expired")

// APIError is an error response of the API: its HTTP status, the server's message and, for
// validation failures (400), the fields at fault.
type APIError struct {
	Status  int
	Message string
	Fields  []events.FieldError
}

// Error returns the field problems when there are any (they are the useful part of a
// validation failure), else the server's message.
func (e *APIError) Error() string {
	if len(e.Fields) > 0 {
		parts := make([]string, len(e.Fields))
		for i, f := range e.Fields {
			if f.Field == "" {
				parts[i] = f.Message
			} else {
				parts[i] = f.Field + ": " + f.Message
			}
		}
		return strings.Join(parts, "; ")
	}
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// Options tune a Client beyond what the stored Config says.
type Options struct {
	// ConfigDir, when not empty, is where the Config is saved after its tokens change
	// (login, refresh, logout), so the next command starts from the fresh session.
	ConfigDir string
	// APIKey, when not empty, authenticates every request with "Authorization: Key …"
	// instead of the session's tokens.
	APIKey string
	// HTTPClient replaces the client New builds from the Config's TLS settings.
	HTTPClient *http.Client
	// Now is the clock used to decide when to refresh; nil means time.Now.
	Now func() time.Time
}

// Client is a session with one Picket API. It is safe for concurrent use.
type Client struct {
	base string // API URL without a trailing slash
	hc   *http.Client
	opts Options

	refreshMu sync.Mutex // held during a refresh, so concurrent requests refresh once

	mu  sync.Mutex // guards cfg
	cfg Config
}

// New returns a client for cfg.APIURL (DefaultAPIURL when empty), trusting
// cfg.TrustedCAFile in addition to the system roots, or skipping verification when
// cfg.InsecureSkipTLSVerify is set.
func New(cfg Config, opts Options) (*Client, error) {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	base, err := NormalizeURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	cfg.APIURL = base
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hc := opts.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tc, err := TLSConfig(cfg)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
		hc = &http.Client{Transport: tr, Timeout: time.Minute}
	}
	return &Client{base: base, hc: hc, opts: opts, cfg: cfg}, nil
}

// NormalizeURL checks that raw is an http(s) URL with a host and returns it without a
// trailing slash, so stored and given URLs compare equal.
func NormalizeURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("API URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("API URL %q: want http://HOST:PORT or https://HOST:PORT", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("API URL %q: must not have a query or fragment", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Config returns a copy of the client's current configuration, tokens included.
func (c *Client) Config() Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// APIURL returns the API address the client talks to.
func (c *Client) APIURL() string { return c.base }

// tokenResponse is the body of GET /auth and POST /auth/token.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresAt    int64  `json:"expires_at"`
	RefreshToken string `json:"refresh_token"`
}

// Login exchanges a username and password for a session (GET /auth with Basic auth), keeps
// the tokens and saves them when Options.ConfigDir is set.
func (c *Client) Login(ctx context.Context, username, password string) error {
	req, err := c.newRequest(ctx, http.MethodGet, "/auth", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(username, password)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	var tok tokenResponse
	if err := decodeResponse(resp, &tok); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			return &APIError{Status: ae.Status, Message: "wrong username or password"}
		}
		return err
	}
	if tok.AccessToken == "" {
		return errors.New("the server answered without an access token")
	}
	c.mu.Lock()
	c.cfg.Username = username
	c.setTokensLocked(tok)
	cfg := c.cfg
	c.mu.Unlock()
	return c.save(cfg)
}

// Logout ends the session on the server (its refresh token stops working) and forgets the
// tokens locally, saving the result when Options.ConfigDir is set.
func (c *Client) Logout(ctx context.Context) error {
	resp, err := c.Do(ctx, http.MethodPost, "/auth/logout", nil)
	var serverErr error
	if err == nil {
		serverErr = decodeResponse(resp, nil)
	} else if !errors.Is(err, ErrSessionExpired) && !errors.Is(err, ErrNotLoggedIn) {
		serverErr = err
	}
	c.mu.Lock()
	c.setTokensLocked(tokenResponse{})
	cfg := c.cfg
	c.mu.Unlock()
	if err := c.save(cfg); err != nil {
		return err
	}
	if serverErr != nil {
		return fmt.Errorf("log out: %w", serverErr)
	}
	return nil
}

func (c *Client) setTokensLocked(tok tokenResponse) {
	c.cfg.AccessToken = tok.AccessToken
	c.cfg.RefreshToken = tok.RefreshToken
	c.cfg.ExpiresAt = tok.ExpiresAt
}

func (c *Client) save(cfg Config) error {
	if c.opts.ConfigDir == "" {
		return nil
	}
	return cfg.Save(c.opts.ConfigDir)
}

// Do sends one request to path (relative to the API URL, query included) with body encoded
// as JSON (nil: no body; []byte and json.RawMessage are sent as they are). It refreshes the
// access token first when it expires within 10 s, and once more and retries when the server
// answers 401. The caller owns the response, whatever its status.
func (c *Client) Do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	data, err := encodeBody(body)
	if err != nil {
		return nil, err
	}
	token, err := c.currentToken(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, method, path, data, token)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized || c.opts.APIKey != "" {
		return resp, nil
	}
	// The token may have expired early (clock skew, server restart with new keys):
	// refresh once and try again.
	discard(resp)
	if err := c.refresh(ctx, token); err != nil {
		return nil, err
	}
	token, err = c.currentToken(ctx)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, method, path, data, token)
}

// currentToken returns the access token to send, refreshing it first when it is about to
// expire. It returns "" when an API key is used or there is no session.
func (c *Client) currentToken(ctx context.Context) (string, error) {
	if c.opts.APIKey != "" {
		return "", nil
	}
	c.mu.Lock()
	token, refresh, exp := c.cfg.AccessToken, c.cfg.RefreshToken, c.cfg.ExpiresAt
	c.mu.Unlock()
	if refresh != "" && exp != 0 && !c.opts.Now().Add(refreshMargin).Before(time.Unix(exp, 0)) {
		if err := c.refresh(ctx, token); err != nil {
			return "", err
		}
		c.mu.Lock()
		token = c.cfg.AccessToken
		c.mu.Unlock()
	}
	return token, nil
}

// refresh trades the refresh token for new tokens, unless another request already replaced
// stale (the access token the caller found wanting) in the meantime.
func (c *Client) refresh(ctx context.Context, stale string) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	current, refreshToken := c.cfg.AccessToken, c.cfg.RefreshToken
	c.mu.Unlock()
	if current != stale {
		return nil
	}
	if refreshToken == "" {
		if current == "" {
			return ErrNotLoggedIn
		}
		return ErrSessionExpired
	}
	data, _ := json.Marshal(map[string]string{"refresh_token": refreshToken})
	resp, err := c.send(ctx, http.MethodPost, "/auth/token", data, current)
	if err != nil {
		return fmt.Errorf("refresh the access token: %w", err)
	}
	var tok tokenResponse
	if err := decodeResponse(resp, &tok); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			return fmt.Errorf("%w: the server refused the refresh token (%s)", ErrSessionExpired, ae.Error())
		}
		return fmt.Errorf("refresh the access token: %w", err)
	}
	if tok.AccessToken == "" {
		return errors.New("refresh the access token: the server answered without an access token")
	}
	c.mu.Lock()
	c.setTokensLocked(tok)
	cfg := c.cfg
	c.mu.Unlock()
	return c.save(cfg)
}

func (c *Client) newRequest(ctx context.Context, method, path string, data []byte) (*http.Request, error) {
	var rd io.Reader
	if data != nil {
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "picket")
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

func (c *Client) send(ctx context.Context, method, path string, data []byte, token string) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, data)
	if err != nil {
		return nil, err
	}
	switch {
	case c.opts.APIKey != "":
		req.Header.Set("Authorization", "Key "+c.opts.APIKey)
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return c.hc.Do(req)
}

func encodeBody(body any) ([]byte, error) {
	switch b := body.(type) {
	case nil:
		return nil, nil
	case []byte:
		return b, nil
	case json.RawMessage:
		return b, nil
	default:
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		return data, nil
	}
}

// discard drains and closes a response body so the connection can be reused.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// decodeResponse closes resp.Body; for a 2xx status it decodes the body into v (when v is
// not nil), for any other status it returns an *APIError.
func decodeResponse(resp *http.Response, v any) error {
	defer discard(resp)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readAPIError(resp)
	}
	if v == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode %s response: %w", resp.Request.URL.Path, err)
	}
	return nil
}

// CheckResponse returns an *APIError for a response whose status is not 2xx, reading
// the body for the server's message; it returns nil and leaves resp alone otherwise.
func CheckResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	defer discard(resp)
	return readAPIError(resp)
}

func readAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body struct {
		Message string              `json:"message"`
		Fields  []events.FieldError `json:"fields"`
	}
	ae := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(data, &body) == nil && (body.Message != "" || len(body.Fields) > 0) {
		ae.Message, ae.Fields = body.Message, body.Fields
	} else if text := strings.TrimSpace(string(data)); text != "" && len(text) < 300 {
		ae.Message = text
	}
	return ae
}

// collectionPath is the URL path of a kind's collection in namespace ns; for a namespaced
// kind an empty ns means every namespace.
func collectionPath(k events.Kind, ns string) string {
	if !k.Namespaced || ns == "" {
		return "/api/core/v2/" + k.Plural
	}
	return "/api/core/v2/namespaces/" + url.PathEscape(ns) + "/" + k.Plural
}

// resourcePath is the URL path of one resource. Event names ("entity/check") keep their
// slash as a path separator; every segment is escaped on its own.
func resourcePath(k events.Kind, ns, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%s: empty name", k.Plural)
	}
	if k.Namespaced && ns == "" {
		return "", fmt.Errorf("%s %s: no namespace given", k.Plural, name)
	}
	var b strings.Builder
	b.WriteString(collectionPath(k, ns))
	for _, seg := range strings.Split(name, "/") {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(seg))
	}
	return b.String(), nil
}

// List returns every resource of kind k in namespace ns (every namespace when ns is "" and
// the kind is namespaced), as the server's JSON, following continue tokens page by page.
func (c *Client) List(ctx context.Context, k events.Kind, ns string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	cont := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(PageSize)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		resp, err := c.Do(ctx, http.MethodGet, collectionPath(k, ns)+"?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		next := resp.Header.Get("Sensu-Continue")
		var page []json.RawMessage
		if err := decodeResponse(resp, &page); err != nil {
			return nil, fmt.Errorf("list %s: %w", k.Plural, err)
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		if next == cont {
			return nil, fmt.Errorf("list %s: the server repeated continue token %q", k.Plural, next)
		}
		cont = next
	}
}

// Get returns one resource as the server's JSON; a missing one is an *APIError with
// Status 404.
func (c *Client) Get(ctx context.Context, k events.Kind, ns, name string) (json.RawMessage, error) {
	p, err := resourcePath(k, ns, name)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(ctx, http.MethodGet, p, nil)
	if err != nil {
		return nil, err
	}
	var out json.RawMessage
	if err := decodeResponse(resp, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Put creates or replaces one resource (PUT) with body, the flat resource.
func (c *Client) Put(ctx context.Context, k events.Kind, ns, name string, body any) error {
	p, err := resourcePath(k, ns, name)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, http.MethodPut, p, body)
	if err != nil {
		return err
	}
	return decodeResponse(resp, nil)
}

// Create creates one resource (POST to the collection); it fails with a 409 *APIError when
// the resource exists. It returns the Location header, which for API keys names the new key.
func (c *Client) Create(ctx context.Context, k events.Kind, ns string, body any) (string, error) {
	if k.Namespaced && ns == "" {
		return "", fmt.Errorf("%s: no namespace given", k.Plural)
	}
	resp, err := c.Do(ctx, http.MethodPost, collectionPath(k, ns), body)
	if err != nil {
		return "", err
	}
	loc := resp.Header.Get("Location")
	return loc, decodeResponse(resp, nil)
}

// Delete deletes one resource; a missing one is an *APIError with Status 404.
func (c *Client) Delete(ctx context.Context, k events.Kind, ns, name string) error {
	p, err := resourcePath(k, ns, name)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, http.MethodDelete, p, nil)
	if err != nil {
		return err
	}
	return decodeResponse(resp, nil)
}

// TLSConfig is the client TLS configuration of cfg: its trusted CA file added to the
// system pool, or verification skipped when asked; nil when neither is set.
func TLSConfig(cfg Config) (*tls.Config, error) {
	if cfg.TrustedCAFile == "" && !cfg.InsecureSkipTLSVerify {
		return nil, nil
	}
	tc := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipTLSVerify}
	if cfg.TrustedCAFile != "" {
		pem, err := os.ReadFile(cfg.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("trusted CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("trusted CA file %s: no PEM certificates in it", cfg.TrustedCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
