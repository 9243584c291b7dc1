package app

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func testEnv(vars map[string]string) *Env {
	var environ []string
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	return &Env{
		Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
		Getenv:  func(k string) string { return vars[k] },
		Environ: func() []string { return environ },
	}
}

func writeConfigFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, env *Env, file string, args ...string) (*BackendConfig, error) {
	t.Helper()
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	addBackendFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return loadBackendConfig(env, fs, file)
}

func TestConfigLayering(t *testing.T) {
	file := writeConfigFile(t, "backend.yml", `
state-dir: /from/file
log-level: warn
agent-port: 9000
etcd-name: file-name
etcd-listen-client-urls:
  - http://127.0.0.1:3379
  - http://127.0.0.2:3379
etcd-advertise-client-urls: "http://a:1 http://b:2"
`)

	// defaults only
	c, err := load(t, testEnv(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/picket" || c.AgentPort != 8081 || c.APIListenAddress != "[::]:8080" ||
		!reflect.DeepEqual(c.EtcdListenClientURLs, []string{"http://127.0.0.1:2379"}) || c.EtcdAutoCompactionMode != "periodic" {
		t.Fatalf("defaults: %+v", c)
	}

	// file over defaults; YAML arrays and space-delimited strings both make lists
	c, err = load(t, testEnv(nil), file)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/from/file" || c.LogLevel != "warn" || c.AgentPort != 9000 || c.EtcdName != "file-name" || c.APIListenAddress != "[::]:8080" {
		t.Fatalf("file layer: %+v", c)
	}
	if !reflect.DeepEqual(c.EtcdListenClientURLs, []string{"http://127.0.0.1:3379", "http://127.0.0.2:3379"}) ||
		!reflect.DeepEqual(c.EtcdAdvertiseClientURLs, []string{"http://a:1", "http://b:2"}) {
		t.Fatalf("lists: %q %q", c.EtcdListenClientURLs, c.EtcdAdvertiseClientURLs)
	}

	// env over file
	env := testEnv(map[string]string{
		"PICKET_BACKEND_STATE_DIR":                  "/from/env",
		"PICKET_BACKEND_AGENT_PORT":                 "9100",
		"PICKET_BACKEND_ETCD_LISTEN_CLIENT_URLS":    "http://127.0.0.9:1 http://127.0.0.9:2",
		"PICKET_BACKEND_ETCD_CLIENT_USERNAME":       "root",
		"PICKET_BACKEND_ETCD_CLIENT_PASSWORD":       "s3cret",
		"PICKET_BACKEND_CLUSTER_ADMIN_PASSWORD":     "ignored-here",
		"PICKET_BACKEND_NO_EMBED_ETCD":              "false",
		"PICKET_BACKEND_ETCD_CLIENT_CERT_AUTH":      "true",
		"PICKET_BACKEND_ETCD_QUOTA_BACKEND_BYTES":   "1048576",
		"PICKET_BACKEND_ETCD_AUTO_COMPACTION_MODE":  "revision",
		"PICKET_BACKEND_ETCD_INITIAL_CLUSTER_STATE": "existing",
	})
	c, err = load(t, env, file)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/from/env" || c.AgentPort != 9100 || c.LogLevel != "warn" || !c.EtcdClientCertAuth ||
		c.EtcdQuotaBackendBytes != 1<<20 || c.EtcdAutoCompactionMode != "revision" || c.EtcdInitialClusterState != "existing" {
		t.Fatalf("env layer: %+v", c)
	}
	if !reflect.DeepEqual(c.EtcdListenClientURLs, []string{"http://127.0.0.9:1", "http://127.0.0.9:2"}) {
		t.Fatalf("env list: %q", c.EtcdListenClientURLs)
	}
	if c.EtcdClientUsername != "root" || c.EtcdClientPassword != "s3cret" {
		t.Fatalf("etcd credentials from env: %q %q", c.EtcdClientUsername, c.EtcdClientPassword)
	}

	// flag over env; an unset flag does not override with its default
	c, err = load(t, env, file, "--state-dir", "/from/flag", "--etcd-listen-client-urls", "http://127.0.0.7:1,http://127.0.0.7:2")
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/from/flag" || c.AgentPort != 9100 || c.LogLevel != "warn" {
		t.Fatalf("flag layer: %+v", c)
	}
	if !reflect.DeepEqual(c.EtcdListenClientURLs, []string{"http://127.0.0.7:1", "http://127.0.0.7:2"}) {
		t.Fatalf("flag list: %q", c.EtcdListenClientURLs)
	}
}

func TestConfigFileErrors(t *testing.T) {
	if _, err := load(t, testEnv(nil), "/nonexistent/backend.yml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/backend.yml") {
		t.Fatalf("missing explicit file: %v", err)
	}
	bad := writeConfigFile(t, "bad.yml", "state-dir: [unclosed\n")
	if _, err := load(t, testEnv(nil), bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad YAML: %v", err)
	}
	unknown := writeConfigFile(t, "unknown.yml", "state-dri: /x\n")
	if _, err := load(t, testEnv(nil), unknown); err == nil || !strings.Contains(err.Error(), "state-dri") {
		t.Fatalf("unknown key: %v", err)
	}
	typed := writeConfigFile(t, "typed.yml", "agent-port: lots\nno-embed-etcd: maybe\n")
	_, err := load(t, testEnv(nil), typed)
	if err == nil || !strings.Contains(err.Error(), "agent-port") || !strings.Contains(err.Error(), "no-embed-etcd") {
		t.Fatalf("type errors should name both keys: %v", err)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c, err := load(t, testEnv(nil), "",
		"--log-level", "loud",
		"--api-listen-address", "8080",
		"--agent-port", "70000",
		"--cert-file", "/nope/cert.pem",
		"--etcd-listen-client-urls", "127.0.0.1:2379",
		"--etcd-initial-cluster-state", "joining",
		"--etcd-auto-compaction-retention", "0",
		"--etcd-election-timeout", "200",
		"--etcd-compaction-sleep-interval", "0",
	)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken config")
	}
	msg := err.Error()
	for _, want := range []string{
		`log-level: "loud"`, `api-listen-address: "8080"`, "agent-port: 70000", "cert-file/key-file: set both",
		`cert-file: "/nope/cert.pem" cannot be read`, `etcd-listen-client-urls: "127.0.0.1:2379" is not a URL`,
		`etcd-initial-cluster-state: "joining"`, "etcd-auto-compaction-retention", "etcd-election-timeout: 200",
		"etcd-compaction-sleep-interval: 0 must be 1 to 1000 milliseconds",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Validate message lacks %q:\n%s", want, msg)
		}
	}
	if n := len(err.(*ConfigError).Problems); n != 10 {
		t.Errorf("want 10 problems, got %d:\n%s", n, msg)
	}

	ok, err := load(t, testEnv(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	ext, _ := load(t, testEnv(nil), "", "--no-embed-etcd")
	if err := ext.Validate(); err == nil || !strings.Contains(err.Error(), "etcd-client-urls") {
		t.Fatalf("no-embed-etcd without etcd-client-urls: %v", err)
	}
}

func TestServerHelpListsEveryKey(t *testing.T) {
	env := testEnv(nil)
	if code := Run(t.Context(), env, []string{"server", "--help"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	out := env.Stdout.(*bytes.Buffer).String()
	for _, k := range backendKeys {
		if !strings.Contains(out, "--"+k.name) {
			t.Errorf("--help lacks --%s", k.name)
		}
	}
	if !strings.Contains(out, "PICKET_BACKEND_") || !strings.Contains(out, "--dev") {
		t.Error("--help does not explain the environment or --dev")
	}
	for _, v := range []string{"PICKET_AGENT_ACK_DELAY", "PICKET_TASK_TTL", "PICKET_ACCESS_TOKEN_TTL", "GOGC"} {
		if !strings.Contains(out, v) {
			t.Errorf("--help does not name the tuning variable %s", v)
		}
	}
}

// TestAgentAckDelayFromEnvironment: PICKET_AGENT_ACK_DELAY sets the node's ack delay, 0
// turns it off, and a bad value is refused naming the variable and what it takes.
func TestAgentAckDelayFromEnvironment(t *testing.T) {
	cfg := &BackendConfig{EtcdName: "t", AgentHost: "127.0.0.1", AgentPort: 8081, NoEmbedEtcd: true}
	for _, c := range []struct {
		val  string
		want time.Duration
		bad  bool
	}{{"", 0, false}, {"100ms", 100 * time.Millisecond, false}, {"0", -1, false}, {"10s", 10 * time.Second, false},
		{"abc", 0, true}, {"-1s", 0, true}, {"11s", 0, true}} {
		t.Setenv("PICKET_AGENT_ACK_DELAY", c.val)
		nc, err := nodeConfig(cfg, nil)
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), "PICKET_AGENT_ACK_DELAY") || !strings.Contains(err.Error(), "250ms") {
				t.Errorf("%q: error %v, want one naming PICKET_AGENT_ACK_DELAY and an example", c.val, err)
			}
			continue
		}
		if err != nil || nc.AgentAckDelay != c.want {
			t.Errorf("%q: AgentAckDelay %v (%v), want %v", c.val, nc.AgentAckDelay, err, c.want)
		}
	}
}
