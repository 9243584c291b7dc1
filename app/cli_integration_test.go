package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/node/client"
	"github.com/picketmon/picket/node/nodetest"
)

// sampleResources is the acceptance input: a check, a handler and a filter in the
// wrapped YAML format.
const sampleResources = `type: CheckConfig
api_version: core/v2
metadata:
  name: cpu
  labels:
    team: ops
spec:
  command: check-cpu.sh -w 75 -c 90
  interval: 60
  publish: true
  subscriptions:
  - linux
  handlers:
  - slack
---
type: Handler
api_version: core/v2
metadata:
  name: slack
spec:
  type: pipe
  command: slack-handler --channel '#alerts'
  filters:
  - is_incident
  - business-hours
---
type: EventFilter
api_version: core/v2
metadata:
  name: business-hours
spec:
  action: allow
  expressions:
  - hour(event.check.issued) >= 9
  - hour(event.check.issued) < 17
`

// loginTo logs in to a test node with a new configuration directory and returns the
// environment that later commands use.
func loginTo(t *testing.T, n *nodetest.Node) map[string]string {
	t.Helper()
	vars := map[string]string{"PICKET_CONFIG_DIR": t.TempDir(), "PICKET_PASSWORD": nodetest.AdminPassword}
	r := runCLI(t, vars, "", "login", "--api-url", n.URL, "--username", nodetest.AdminUser)
	if r.code != 0 {
		t.Fatalf("login: code %d, stderr %s", r.code, r.stderr)
	}
	if want := "Logged in to " + n.URL + " as admin\n"; r.stdout != want {
		t.Errorf("login printed %q, want %q", r.stdout, want)
	}
	delete(vars, "PICKET_PASSWORD")
	return vars
}

func mustRun(t *testing.T, vars map[string]string, stdin string, args ...string) string {
	t.Helper()
	r := runCLI(t, vars, stdin, args...)
	if r.code != 0 {
		t.Fatalf("picket %s: code %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func TestCLIAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real nodes")
	}
	a := nodetest.Start(t)
	vars := loginTo(t, a)
	st, err := os.Stat(filepath.Join(vars["PICKET_CONFIG_DIR"], client.FileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stored config: %v, mode %v", err, st.Mode())
	}

	in := filepath.Join(t.TempDir(), "resources.yml")
	writeFile(t, in, sampleResources)
	if out := mustRun(t, vars, "", "create", "-f", in); out != "Created 3 resources\n" {
		t.Errorf("create printed %q", out)
	}

	out := mustRun(t, vars, "", "list", "checks")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "cpu ") ||
		!strings.Contains(lines[1], "check-cpu.sh -w 75 -c 90") || !strings.Contains(lines[1], "60s") {
		t.Errorf("list checks:\n%s", out)
	}
	if out := mustRun(t, vars, "", "list", "checks", "-A"); !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, "default    cpu") {
		t.Errorf("list checks -A:\n%s", out)
	}
	if out := mustRun(t, vars, "", "list", "mutators"); out != "No mutators found in namespace default.\n" {
		t.Errorf("list mutators: %q", out)
	}
	if out := mustRun(t, vars, "", "list", "users"); !strings.Contains(out, "admin") || !strings.Contains(out, "cluster-admins") {
		t.Errorf("list users:\n%s", out)
	}
	if out := mustRun(t, vars, "", "list", "filters", "--format", "json"); !strings.Contains(out, `"business-hours"`) || !strings.HasPrefix(out, "[") {
		t.Errorf("list filters --format json:\n%s", out)
	}
	if out := mustRun(t, vars, "", "get", "handler", "slack"); !strings.Contains(out, "Name:") || !strings.Contains(out, "slack-handler --channel '#alerts'") {
		t.Errorf("get handler slack:\n%s", out)
	}
	if out := mustRun(t, vars, "", "get", "check", "cpu", "--format", "yaml"); !strings.Contains(out, "command: check-cpu.sh -w 75 -c 90") {
		t.Errorf("get check cpu --format yaml:\n%s", out)
	}
	r := runCLI(t, vars, "", "get", "check", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "check nope not found in namespace default") {
		t.Errorf("get missing check: code %d, stderr %q", r.code, r.stderr)
	}

	// A server-side refusal names the document.
	bad := filepath.Join(t.TempDir(), "bad.yml")
	writeFile(t, bad, "type: CheckConfig\nmetadata: {name: x, namespace: nowhere}\nspec: {command: 'true', interval: 10, subscriptions: [a]}\n")
	r = runCLI(t, vars, "", "create", "-f", bad)
	if r.code != 1 || !strings.Contains(r.stderr, bad+" document 1 (CheckConfig x): ") || !strings.Contains(r.stderr, "nowhere") {
		t.Errorf("create into a missing namespace: code %d, stderr %q", r.code, r.stderr)
	}
	// A missing namespace is found before anything is written, for every document in it.
	mixed := filepath.Join(t.TempDir(), "mixed.yml")
	writeFile(t, mixed, "type: CheckConfig\nmetadata: {name: first}\nspec: {command: 'true', interval: 10, subscriptions: [a]}\n---\n"+
		"type: CheckConfig\nmetadata: {name: y, namespace: nowhere}\nspec: {command: 'true', interval: 10, subscriptions: [a]}\n---\n"+
		"type: Handler\nmetadata: {name: h, namespace: nowhere}\nspec: {type: pipe, command: cat}\n")
	r = runCLI(t, vars, "", "create", "-f", mixed)
	for _, want := range []string{mixed + ` document 2 (CheckConfig y): namespace "nowhere" does not exist`,
		mixed + ` document 3 (Handler h): namespace "nowhere" does not exist`, "nothing was written: 2 problems"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("create with a missing namespace: code %d, want %q in stderr %q", r.code, want, r.stderr)
		}
	}
	if r := runCLI(t, vars, "", "get", "check", "first"); r.code != 1 {
		t.Errorf("check first was written although its file named a missing namespace: %q", r.stdout)
	}

	// A namespace declared after the resources in it is still written first.
	prod := filepath.Join(t.TempDir(), "prod.yml")
	writeFile(t, prod, "type: CheckConfig\nmetadata: {name: disk, namespace: prod}\nspec: {command: df, interval: 30, subscriptions: [linux]}\n---\ntype: Namespace\nmetadata: {name: prod}\nspec: {}\n")
	if out := mustRun(t, vars, "", "create", "-f", prod, "-v"); !strings.HasPrefix(out, "Created namespace prod\nCreated check disk in namespace prod\n") {
		t.Errorf("create with a new namespace printed:\n%s", out)
	}
	one := mustRun(t, vars, "", "dump", "--all-namespaces=false", "-n", "prod")
	if !strings.Contains(one, "name: disk") || strings.Contains(one, "name: cpu") || strings.Contains(one, "name: default") {
		t.Errorf("dump of namespace prod:\n%s", one)
	}

	// dump → create -f on a fresh server → dump gives the same bytes.
	dump1 := filepath.Join(t.TempDir(), "dump.yml")
	mustRun(t, vars, "", "dump", "--file", dump1)
	first, err := os.ReadFile(dump1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type: Namespace", "type: User", "password_hash:", "type: CheckConfig", "type: Handler", "type: EventFilter", "team: ops"} {
		if !strings.Contains(string(first), want) {
			t.Errorf("dump lacks %q:\n%s", want, first)
		}
	}
	b := nodetest.Start(t)
	varsB := loginTo(t, b)
	mustRun(t, varsB, "", "create", "-f", dump1)
	second := mustRun(t, varsB, "", "dump")
	if second != string(first) {
		t.Errorf("dump after restore differs.\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	// The JSON form round-trips too.
	j1 := mustRun(t, vars, "", "dump", "--format", "json")
	mustRun(t, varsB, j1, "create", "-f", "-")
	if j2 := mustRun(t, varsB, "", "dump", "--format", "json"); j1 != j2 {
		t.Errorf("JSON dump after restore differs.\nfirst:\n%s\nsecond:\n%s", j1, j2)
	}

	if out := mustRun(t, varsB, "", "delete", "check", "cpu"); out != "Deleted check cpu from namespace default\n" {
		t.Errorf("delete printed %q", out)
	}
	r = runCLI(t, varsB, "", "delete", "check", "cpu")
	if r.code != 1 || !strings.Contains(r.stderr, "check cpu not found in namespace default") {
		t.Errorf("second delete: code %d, stderr %q", r.code, r.stderr)
	}
}

func TestCLIRefreshesExpiredTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real node")
	}
	n := nodetest.StartWith(t, nodetest.Options{AccessTokenTTL: 2 * time.Second})
	vars := loginTo(t, n)
	before, err := client.Load(vars["PICKET_CONFIG_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	mustRun(t, vars, "", "list", "namespaces")
	after, err := client.Load(vars["PICKET_CONFIG_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	if after.AccessToken == before.AccessToken || after.ExpiresAt <= before.ExpiresAt {
		t.Error("the expired token was not refreshed and saved")
	}
	if after.RefreshToken == "" || after.Username != nodetest.AdminUser || after.APIURL != n.URL {
		t.Errorf("the refresh lost part of the session: %+v", after)
	}

	r := runCLI(t, map[string]string{"PICKET_CONFIG_DIR": t.TempDir(), "PICKET_PASSWORD": "wrong-password"}, "",
		"login", "--api-url", n.URL, "-u", "admin")
	if r.code != 1 || !strings.Contains(r.stderr, "wrong username or password") {
		t.Errorf("login with a wrong password: code %d, stderr %q", r.code, r.stderr)
	}
}
