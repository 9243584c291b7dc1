package app

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/picketmon/picket/events"
)

func loadAgent(t *testing.T, env *Env, file string, args ...string) (*AgentConfig, error) {
	t.Helper()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	addAgentFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if file == "" {
		// Never read the host's own /etc/picket/agent.yml in tests.
		file = writeConfigFile(t, "empty.yml", "{}\n")
	}
	return loadAgentConfig(env, fs, file)
}

func TestAgentConfigDefaults(t *testing.T) {
	c, err := loadAgent(t, testEnv(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name == "" || c.Namespace != "default" || c.User != "agent" || c.Password != "P@ssw0rd!" ||
		!reflect.DeepEqual(c.BackendURLs, []string{"ws://127.0.0.1:8081"}) ||
		c.KeepaliveInterval != 20 || c.KeepaliveWarningTimeout != 120 || c.KeepaliveCriticalTimeout != 0 ||
		c.BackendHeartbeatInterval != 30 || c.BackendHeartbeatTimeout != 45 || c.BackendHandshakeTimeout != 15 ||
		c.RetryMin != time.Second || c.RetryMax != 120*time.Second || c.RetryMultiplier != 2 || c.MaxSessionLength != 0 ||
		c.APIHost != "127.0.0.1" || c.APIPort != 3031 || c.CacheDir != "/var/cache/picket/agent" || c.LogLevel != "info" ||
		!reflect.DeepEqual(c.Redact, events.DefaultRedact()) || len(c.Subscriptions) != 0 || len(c.Labels) != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestAgentConfigLayering(t *testing.T) {
	file := writeConfigFile(t, "agent.yml", `
name: web-1
namespace: prod
subscriptions: [linux, web]
labels:
  region: eu
  app.kubernetes.io/name: shop
annotations:
  runbook: https://wiki/web
backend-url:
  - ws://b1:8081
  - ws://b2:8081
retry-max: 2m
retry-multiplier: 1.5
keepalive-interval: 10
deregister: true
checks:
  - name: load
    command: check_load -w 4 -c 8
    interval: 10
    timeout: 5
    env_vars: [LANG=C]
  - metadata: {name: nightly}
    command: backup-check
    cron: "30 2 * * *"
`)
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c *AgentConfig)
	}{
		{"file over defaults", nil, nil, func(t *testing.T, c *AgentConfig) {
			if c.Name != "web-1" || c.Namespace != "prod" || !reflect.DeepEqual(c.Subscriptions, []string{"linux", "web"}) ||
				!reflect.DeepEqual(c.Labels, map[string]string{"region": "eu", "app.kubernetes.io/name": "shop"}) ||
				c.Annotations["runbook"] != "https://wiki/web" || !reflect.DeepEqual(c.BackendURLs, []string{"ws://b1:8081", "ws://b2:8081"}) ||
				c.RetryMax != 2*time.Minute || c.RetryMultiplier != 1.5 || c.KeepaliveInterval != 10 || !c.Deregister ||
				c.RetryMin != time.Second || c.APIPort != 3031 {
				t.Fatalf("%+v", c)
			}
			if len(c.Checks) != 2 || c.Checks[0].Metadata.Name != "load" || c.Checks[0].Interval != 10 || c.Checks[0].Timeout != 5 ||
				!reflect.DeepEqual(c.Checks[0].EnvVars, []string{"LANG=C"}) || c.Checks[1].Metadata.Name != "nightly" || c.Checks[1].Cron != "30 2 * * *" {
				t.Fatalf("checks: %+v", c.Checks)
			}
		}},
		{"env over file", map[string]string{
			"PICKET_AGENT_NAMESPACE":   "staging",
			"PICKET_AGENT_BACKEND_URL": "wss://e1:8081 wss://e2:8081",
			"PICKET_AGENT_LABELS":      "team=ops,tier=1",
			"PICKET_AGENT_RETRY_MIN":   "3",
			"PICKET_AGENT_API_PORT":    "4000",
			"PICKET_AGENT_CHECKS":      "ignored",
			"PICKET_BACKEND_STATE_DIR": "/not/ours",
		}, nil, func(t *testing.T, c *AgentConfig) {
			if c.Namespace != "staging" || !reflect.DeepEqual(c.BackendURLs, []string{"wss://e1:8081", "wss://e2:8081"}) ||
				!reflect.DeepEqual(c.Labels, map[string]string{"team": "ops", "tier": "1"}) || c.RetryMin != 3*time.Second ||
				c.APIPort != 4000 || c.Name != "web-1" || len(c.Checks) != 2 {
				t.Fatalf("%+v", c)
			}
		}},
		{"flags over env", map[string]string{"PICKET_AGENT_NAMESPACE": "staging", "PICKET_AGENT_API_PORT": "4000"},
			[]string{"--namespace", "flagged", "--subscriptions", "a,b c", "--disable-api", "--max-session-length", "1h", "--annotations", "x=1"},
			func(t *testing.T, c *AgentConfig) {
				if c.Namespace != "flagged" || !reflect.DeepEqual(c.Subscriptions, []string{"a", "b", "c"}) || !c.DisableAPI ||
					c.MaxSessionLength != time.Hour || c.APIPort != 4000 || !reflect.DeepEqual(c.Annotations, map[string]string{"x": "1"}) {
					t.Fatalf("%+v", c)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadAgent(t, testEnv(tt.env), file, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
			if err := c.Validate(); err != nil {
				t.Fatalf("valid config rejected: %v", err)
			}
		})
	}
}

func TestAgentConfigLoadErrors(t *testing.T) {
	tests := []struct {
		name, file string
		env        map[string]string
		want       []string
	}{
		{"unknown key", "nmae: x\nbackend-urls: ws://a\n", nil, []string{"unknown key(s) backend-urls, nmae"}},
		{"bad values", "keepalive-interval: often\nretry-min: soon\nretry-multiplier: lots\nderegister: maybe\nlabels: region\n", nil, []string{
			`keepalive-interval: "often" is not a whole number`, `retry-min: "soon" is not a duration`,
			`retry-multiplier: "lots" is not a number`, `deregister: "maybe" is not true or false`, `labels: "region" is not key=value`}},
		{"checks not a list", "checks: {load: {}}\n", nil, []string{"checks: must be a list"}},
		{"bad check item", "checks: [load]\n", nil, []string{"checks[0]: must be a mapping"}},
		{"env too", "{}\n", map[string]string{"PICKET_AGENT_API_PORT": "http"}, []string{`api-port: "http" is not a whole number`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadAgent(t, testEnv(tt.env), writeConfigFile(t, "agent.yml", tt.file))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestAgentValidateReportsEverything(t *testing.T) {
	c, err := loadAgent(t, testEnv(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	c.Name = "bad name"
	c.Namespace = ""
	c.User = ""
	c.BackendURLs = []string{"http://b:8081", "ws://", "wss://ok:8081"}
	c.KeepaliveWarningTimeout = 3
	c.KeepaliveCriticalTimeout = -1
	c.BackendHeartbeatInterval = 0
	c.RetryMin = 0
	c.RetryMax = -time.Second
	c.RetryMultiplier = 0.5
	c.MaxSessionLength = time.Second
	c.CertFile = "/nonexistent/cert.pem"
	c.APIPort = 70000
	c.CacheDir = ""
	c.LogLevel = "loud"
	c.DeregistrationHandler = "dereg"
	c.Subscriptions = []string{"a b"}
	c.Checks = []events.CheckConfig{
		{Command: "x", Interval: 10},
		{Metadata: events.ObjectMeta{Name: "c"}, Interval: 0},
		{Metadata: events.ObjectMeta{Name: "c"}, Command: "x", Cron: "61 * * * *"},
		{Metadata: events.ObjectMeta{Name: "both"}, Command: "x", Cron: "* * * * *", Interval: 5},
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`name: "bad name" is not a valid entity name`,
		`namespace: "" is not a valid namespace`,
		"user: must not be empty",
		`backend-url: "http://b:8081" is not a ws:// or wss:// URL`,
		`backend-url: "ws://" is not a ws:// or wss:// URL`,
		"keepalive-warning-timeout: 3 must be at least 5 seconds (default 120)",
		"keepalive-critical-timeout: -1 must be 0 (off)",
		"backend-heartbeat-interval: 0 must be at least 1",
		"retry-min: 0s must be positive",
		"retry-max: -1s must not be shorter than retry-min",
		"retry-multiplier: 0.5 must be at least 1",
		"max-session-length: 1s is too short",
		"cert-file/key-file: set both",
		`cert-file: "/nonexistent/cert.pem" cannot be read`,
		"api-port: 70000 is not a port",
		"cache-dir: must not be empty",
		`log-level: "loud" is not a level`,
		`deregistration-handler: "dereg" is set but deregister is false`,
		`subscriptions: "a b" may not contain`,
		"checks[0]: name is missing",
		"checks[1] (c): command is missing",
		"checks[1] (c): interval 0 must be a positive number",
		`checks[2] (c): name "c" is used twice`,
		"checks[2] (c): cron:",
		"checks[3] (both): set either interval or cron, not both",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not say %q", want)
		}
	}
	if t.Failed() {
		t.Log(err)
	}
	if strings.Contains(err.Error(), "wss://ok:8081") {
		t.Error("a good URL was reported")
	}
}

func TestAgentHelpListsEveryKey(t *testing.T) {
	var out bytes.Buffer
	env := testEnv(nil)
	env.Stdout = &out
	if code := Run(t.Context(), env, []string{"agent", "--help"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := out.String()
	for _, k := range agentKeys {
		if !strings.Contains(help, "--"+k.name+" ") {
			t.Errorf("--help does not list --%s", k.name)
		}
	}
	for _, want := range []string{"PICKET_AGENT_", "/etc/picket/agent.yml", "checks:", `(default "P@ssw0rd!")`, `(default "ws://127.0.0.1:8081")`, `(default "120s")`} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

func TestAgentUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"agent", "extra"}, {"agent", "--no-such-flag"}} {
		r := runCLI(t, nil, "", args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %s)", args, r.code, r.stderr)
		}
	}
	file := writeConfigFile(t, "agent.yml", "backend-url: http://x\n")
	r := runCLI(t, nil, "", "agent", "-c", file)
	if r.code != 1 || !strings.Contains(r.stderr, `backend-url: "http://x" is not a ws:// or wss:// URL`) {
		t.Errorf("invalid config: exit %d, stderr %s", r.code, r.stderr)
	}
}
