package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
)

// cliResult is what one in-process run of the picket command line produced.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs picket with args, an environment made only of vars, and stdin.
func runCLI(t *testing.T, vars map[string]string, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &Env{
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(k string) string { return vars[k] },
	}
	code := Run(context.Background(), env, args)
	return cliResult{code, out.String(), errOut.String()}
}

func TestCLIHelp(t *testing.T) {
	for _, cmd := range []string{"login", "create", "dump", "list", "get", "delete", "silence"} {
		r := runCLI(t, nil, "", cmd, "--help")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: picket "+cmd) || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%s --help: code %d, stdout:\n%s\nstderr: %s", cmd, r.code, r.stdout, r.stderr)
		}
		for _, flag := range []string{"--api-url", "--namespace", "--config-dir"} {
			if !strings.Contains(r.stdout, flag) {
				t.Errorf("%s --help does not explain %s", cmd, flag)
			}
		}
		// The description is wrapped by paragraph: no line is left with a word or two
		// that the next line could have taken.
		desc, _, _ := strings.Cut(r.stdout, "\nFlags:\n")
		lines := strings.Split(desc, "\n")
		for i, l := range lines {
			if utf8.RuneCountInString(l) > helpWidth {
				t.Errorf("%s --help: line %q is wider than %d", cmd, l, helpWidth)
			}
			if i+1 < len(lines) && l != "" && l[0] != ' ' && lines[i+1] != "" && lines[i+1][0] != ' ' {
				next, _, _ := strings.Cut(lines[i+1], " ")
				if utf8.RuneCountInString(l)+1+utf8.RuneCountInString(next) <= helpWidth {
					t.Errorf("%s --help: line %q ends early: %q fits after it", cmd, l, next)
				}
			}
		}
	}
}

func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"PICKET_CONFIG_DIR": dir}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list"}, "want exactly one KIND"},
		{[]string{"list", "widgets"}, `unknown kind "widgets"; valid kinds: `},
		{[]string{"list", "checks", "--format", "xml"}, "--format"},
		{[]string{"get", "check"}, "missing NAME"},
		{[]string{"get", "event", "web01"}, "ENTITY/CHECK"},
		{[]string{"delete"}, "missing KIND"},
		{[]string{"create"}, "no input"},
		{[]string{"create", "checks.yml"}, "give files with -f"},
		{[]string{"dump", "--format", "table"}, "--format"},
		{[]string{"dump", "gizmos"}, "unknown kind"},
		{[]string{"list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"login", "--api-url", "localhost:8080"}, "want http://HOST:PORT"},
		{[]string{"login", "-u", "admin"}, "no password"},
	} {
		r := runCLI(t, vars, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want code 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	// Listing without a session is a failure (1), with a hint to log in.
	r := runCLI(t, vars, "", "list", "checks")
	if r.code != 1 || !strings.Contains(r.stderr, "picket login") {
		t.Errorf("list without login: code %d, stderr %q", r.code, r.stderr)
	}
}

// TestStoredTokensStayWithTheirServer checks that a session stored for one API URL is
// never sent to another one given with --api-url.
func TestStoredTokensStayWithTheirServer(t *testing.T) {
	var calls atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "" {
			t.Errorf("stored credentials sent to another server: %q", r.Header.Get("Authorization"))
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer other.Close()
	dir := t.TempDir()
	cfg := &client.Config{APIURL: "http://127.0.0.1:1", Username: "admin", AccessToken: "secret-token", RefreshToken: "r", ExpiresAt: time.Now().Add(time.Hour).Unix()}
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, map[string]string{"PICKET_CONFIG_DIR": dir}, "", "list", "checks", "--api-url", other.URL)
	if r.code != 1 || !strings.Contains(r.stderr, "not logged in to "+other.URL) {
		t.Errorf("code %d, stderr %q", r.code, r.stderr)
	}
	if calls.Load() != 0 {
		t.Errorf("%d requests reached the other server", calls.Load())
	}
}

// TestCreateInvalidWritesNothing checks that one invalid document stops every write, and
// that every problem of every document is reported.
func TestCreateInvalidWritesNothing(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	dir := t.TempDir()
	cfg := &client.Config{APIURL: srv.URL, Username: "admin", AccessToken: "t", RefreshToken: "r", ExpiresAt: time.Now().Add(time.Hour).Unix()}
	if err := cfg.Save(dir); err != nil {
		t.Fatal(err)
	}
	in := t.TempDir()
	writeFile(t, filepath.Join(in, "a.yml"), `type: CheckConfig
api_version: core/v2
metadata:
  name: good
spec:
  command: "true"
  interval: 10
  subscriptions: [linux]
---
type: CheckConfig
metadata:
  name: bad
spec:
  command: ""
  interval: -5
  subscriptions: [linux]
`)
	writeFile(t, filepath.Join(in, "b.json"), `{"type": "Handler", "metadata": {"name": "h"}, "spec": {"type": "teleport"}}`)
	writeFile(t, filepath.Join(in, "notes.txt"), "not a resource")
	vars := map[string]string{"PICKET_CONFIG_DIR": dir}

	r := runCLI(t, vars, "", "create", "-f", in)
	if r.code != 1 {
		t.Fatalf("code %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	if calls.Load() != 0 {
		t.Errorf("%d requests were sent; want none when a document is invalid", calls.Load())
	}
	for _, want := range []string{
		filepath.Join(in, "a.yml") + " document 2 (CheckConfig bad): command: ",
		filepath.Join(in, "a.yml") + " document 2 (CheckConfig bad): interval: ",
		filepath.Join(in, "b.json") + " document 1 (Handler h): type: ",
		"nothing was written",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "notes.txt") || strings.Contains(r.stderr, "good") {
		t.Errorf("stderr mentions a file or document it should not:\n%s", r.stderr)
	}

	// A document that does not decode also stops everything; the documents after it are
	// still checked, each under its own number.
	r = runCLI(t, vars, "type: Gadget\nmetadata: {name: x}\nspec: {}\n---\ntype: CheckConfig\nmetadata: {name: bad}\nspec: {command: x, interval: -5}\n", "create", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, `stdin: document 1`) || !strings.Contains(r.stderr, `unknown type "Gadget"`) ||
		!strings.Contains(r.stderr, "stdin document 2 (CheckConfig bad): interval: ") {
		t.Errorf("unknown type, then an invalid check: code %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, vars, "", "create", "-f", filepath.Join(in, "missing.yml"))
	if r.code != 1 || !strings.Contains(r.stderr, "missing.yml: no such file or directory") {
		t.Errorf("missing file: code %d, stderr %q", r.code, r.stderr)
	}
	if calls.Load() != 0 {
		t.Errorf("%d requests were sent", calls.Load())
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestListTablesFit80Columns renders every kind's table with long values and checks that
// each line fits and that cells start under their headers.
func TestListTablesFit80Columns(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	long := strings.Repeat("very-long-value-", 8)
	raws := map[string]string{
		"checks":     `{"metadata":{"name":"check-` + long + `","namespace":"default"},"command":"/usr/lib/nagios/plugins/check_load -w 5,4,3 -c 10,8,6 ` + long + `","interval":60,"subscriptions":["linux","` + long + `"],"handlers":["slack","pagerduty","email"]}`,
		"entities":   `{"metadata":{"name":"web01.example.com","namespace":"default"},"entity_class":"agent","system":{"os":"linux","platform":"ubuntu"},"subscriptions":["linux","entity:web01.example.com","` + long + `"],"last_seen":1699999990}`,
		"events":     `{"metadata":{"namespace":"default"},"timestamp":1699999000,"entity":{"metadata":{"name":"` + long + `"}},"check":{"metadata":{"name":"` + long + `"},"status":2,"is_silenced":true}}`,
		"handlers":   `{"metadata":{"name":"slack"},"type":"pipe","command":"` + long + `","filters":["is_incident","not_silenced"],"mutator":"only_check_output"}`,
		"filters":    `{"metadata":{"name":"business-hours"},"action":"allow","expressions":["hour(event.check.issued) >= 9","hour(event.check.issued) <= 17","` + long + `"]}`,
		"mutators":   `{"metadata":{"name":"m"},"type":"javascript","eval":"` + long + `","timeout":10}`,
		"silenced":   `{"metadata":{"name":"linux:check-cpu"},"begin":1699990000,"expire_at":1700090000,"creator":"admin","reason":"` + long + `"}`,
		"hooks":      `{"metadata":{"name":"ps"},"command":"` + long + `","timeout":10,"stdin":true}`,
		"assets":     `{"metadata":{"name":"a"},"url":"https://example.com/` + long + `","sha512":"` + strings.Repeat("ab", 64) + `"}`,
		"namespaces": `{"name":"` + long + `"}`,
		"users":      `{"username":"alice","groups":["cluster-admins","` + long + `"],"disabled":false}`,
		"apikeys":    `{"metadata":{"name":"0f2c5d3e-8f9a-4b5c-9d1e-2a3b4c5d6e7f"},"username":"alice","created_at":1699990000}`,
	}
	for _, k := range events.Kinds() {
		raw, ok := raws[k.Plural]
		if !ok {
			t.Errorf("no sample for kind %s", k.Plural)
			continue
		}
		for _, withNS := range []bool{false, k.Namespaced} {
			objs, err := decodeObjects([]json.RawMessage{json.RawMessage(raw), json.RawMessage(raw)})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := writeList(&buf, k, objs, withNS, now); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
			if len(lines) != 3 {
				t.Errorf("%s: %d lines, want a header and 2 rows:\n%s", k.Plural, len(lines), buf.String())
			}
			header := lines[0]
			for _, l := range lines {
				if n := utf8.RuneCountInString(l); n > tableWidth {
					t.Errorf("%s (namespaces %v): line of %d columns:\n%s", k.Plural, withNS, n, buf.String())
				}
			}
			// Every header word after the first starts a column: the row has a space
			// before it and a cell starting at it.
			hr := []rune(header)
			row := []rune(lines[1])
			for i := 1; i < len(hr); i++ {
				if hr[i-1] == ' ' && hr[i] != ' ' && (i < 2 || hr[i-2] == ' ') {
					if i >= len(row) || row[i-1] != ' ' || row[i] == ' ' {
						t.Errorf("%s: column at %d not aligned:\n%s", k.Plural, i, buf.String())
					}
				}
			}
			if withNS && !strings.HasPrefix(header, "NAMESPACE") {
				t.Errorf("%s: -A table does not start with NAMESPACE:\n%s", k.Plural, buf.String())
			}
		}
	}
}

func TestTableTruncatesWithEllipsis(t *testing.T) {
	var buf bytes.Buffer
	rows := [][]string{{"a", strings.Repeat("x", 200)}}
	if err := writeTable(&buf, []string{"NAME", "COMMAND"}, []int{4, 8}, rows, 80); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if got := lines[1]; utf8.RuneCountInString(got) != 80 || !strings.HasSuffix(got, "x…") {
		t.Errorf("row %q: want 80 columns ending in …", got)
	}
	// Short tables are not padded to 80.
	buf.Reset()
	writeTable(&buf, []string{"NAME", "TYPE"}, []int{4, 4}, [][]string{{"cpu", "pipe"}}, 80)
	if want := "NAME  TYPE\ncpu   pipe\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestKeyValueView(t *testing.T) {
	raw := json.RawMessage(`{"command":"check-cpu.sh -w 75 -c 90","handlers":["slack","email"],"interval":60,"publish":true,"ttl":0,"round_robin":false,"proxy_requests":null,"long_value":"` + strings.Repeat("word ", 20) + `","metadata":{"name":"cpu","namespace":"default","labels":{"team":"ops"}},"env_vars":[],"subdue":{"days":{}}}`)
	var buf bytes.Buffer
	if err := writeKeyValues(&buf, raw, 80); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"Name:        cpu",
		"Namespace:   default",
		"Labels:      team=ops",
		"Command:     check-cpu.sh -w 75 -c 90",
		"Handlers:    slack, email",
		"Interval:    60",
		"Publish:     true",
		"Round Robin: false",
		"Long Value:  word word word word word word word word word word word word word",
		"             word word word word word word word",
		"",
	}, "\n")
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}
