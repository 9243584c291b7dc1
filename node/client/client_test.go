package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/picketmon/picket/events"
)

func TestConfigSaveLoadModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "picket")
	cfg := &Config{APIURL: "http://127.0.0.1:8080", Username: "admin", AccessToken: "a", RefreshToken: "r", ExpiresAt: 42, Namespace: "prod", Format: "yaml"}
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, FileName): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *cfg {
		t.Errorf("Load = %+v, want %+v", got, cfg)
	}

	// Saving again over a file someone loosened puts the mode back to 0600.
	if err := os.Chmod(filepath.Join(dir, FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.AccessToken = "b"
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, FileName))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("after re-save: mode %o, want 600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("config dir holds %d entries, want only %s", len(entries), FileName)
	}
}

func TestLoadMissingAndBroken(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(dir)
	if err != nil || *cfg != (Config{}) {
		t.Fatalf("Load of an empty dir = %+v, %v; want an empty config", cfg, err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Fatal("Load of a broken file succeeded")
	}
}

func TestDefaultDir(t *testing.T) {
	env := map[string]string{"PICKET_CONFIG_DIR": "/x/y"}
	if d, _ := DefaultDir(func(k string) string { return env[k] }); d != "/x/y" {
		t.Errorf("DefaultDir with PICKET_CONFIG_DIR = %q", d)
	}
	t.Setenv("XDG_CONFIG_HOME", "/home/u/.config")
	if d, _ := DefaultDir(func(string) string { return "" }); d != "/home/u/.config/picket" {
		t.Errorf("DefaultDir = %q, want /home/u/.config/picket", d)
	}
}

func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/":   "http://127.0.0.1:8080",
		" https://a.example:8080 ": "https://a.example:8080",
		"http://a/prefix/":         "http://a/prefix",
	} {
		if got, err := NormalizeURL(in); err != nil || got != want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1:8080", "ftp://a", "http://", "http://a?x=1"} {
		if _, err := NormalizeURL(bad); err == nil {
			t.Errorf("NormalizeURL(%q) succeeded", bad)
		}
	}
}

// TestListPagesAndErrors checks the client's side of the paging and error protocol
// against a scripted handler; the real server is exercised in the integration tests.
func TestListPagesAndErrors(t *testing.T) {
	var limits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		switch r.URL.Path {
		case "/api/core/v2/namespaces/default/checks":
			limits = append(limits, r.URL.Query().Get("limit"))
			page, _ := strconv.Atoi(r.URL.Query().Get("continue"))
			if page < 2 {
				w.Header().Set("Sensu-Continue", strconv.Itoa(page+1))
			}
			json.NewEncoder(w).Encode([]map[string]any{{"metadata": map[string]string{"name": "c" + strconv.Itoa(page)}}})
		case "/api/core/v2/namespaces/default/events/web01/cpu%20load", "/api/core/v2/namespaces/default/events/web01/cpu load":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"event not found","code":404}`))
		case "/api/core/v2/namespaces/default/handlers/h":
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"message":"invalid","code":400,"fields":[{"field":"type","message":"must be pipe"}]}`))
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
	}))
	defer srv.Close()
	c, err := New(Config{APIURL: srv.URL + "/", AccessToken: "tok"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checks, _ := events.LookupKind("checks")
	items, err := c.List(ctx, checks, "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || len(limits) != 3 || limits[0] != "500" {
		t.Errorf("List: %d items over limits %v; want 3 pages of limit 500", len(items), limits)
	}

	evk, _ := events.LookupKind("events")
	_, err = c.Get(ctx, evk, "default", "web01/cpu load")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Message != "event not found" {
		t.Errorf("Get missing event: %v", err)
	}
	hk, _ := events.LookupKind("handlers")
	err = c.Put(ctx, hk, "default", "h", map[string]string{})
	if !errors.As(err, &ae) || len(ae.Fields) != 1 || err.Error() != "type: must be pipe" {
		t.Errorf("Put invalid handler: %v", err)
	}
	if _, err := c.Get(ctx, hk, "", "h"); err == nil {
		t.Error("Get of a namespaced kind without a namespace succeeded")
	}
}

// TestConcurrentRequestsRefreshOnce checks that requests that all find their token
// refused trade the refresh token once, not once each.
func TestConcurrentRequestsRefreshOnce(t *testing.T) {
	var mu sync.Mutex
	refreshes := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/auth/token":
			var body struct {
				RefreshToken string `json:"refresh_token"`
			}
			json.NewDecoder(r.Body).Decode(&body)
			if r.Header.Get("Authorization") != "Bearer old" || body.RefreshToken != "r1" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			mu.Lock()
			refreshes++
			mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"access_token": "new", "refresh_token": "r2", "expires_at": 4102444800})
		case r.Header.Get("Authorization") == "Bearer new":
			w.Write([]byte(`{"name":"default"}`))
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	c, err := New(Config{APIURL: srv.URL, AccessToken: "old", RefreshToken: "r1", ExpiresAt: 4102444800}, Options{ConfigDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nsKind, _ := events.LookupKind("namespaces")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Get(context.Background(), nsKind, "", "default"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if refreshes != 1 {
		t.Errorf("%d refreshes, want 1", refreshes)
	}
	if saved, _ := Load(dir); saved.AccessToken != "new" || saved.RefreshToken != "r2" {
		t.Errorf("saved config %+v, want the new tokens", saved)
	}
}
