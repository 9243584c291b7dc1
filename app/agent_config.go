package app

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/picketmon/picket/agentgw/agent"
	"github.com/picketmon/picket/events"
)

// DefaultAgentConfigFile is read when no -c/--config-file is given; its absence is fine.
const DefaultAgentConfigFile = "/etc/picket/agent.yml"

// agentEnvPrefix prefixes the environment variables of agent keys.
const agentEnvPrefix = "PICKET_AGENT_"

// AgentConfig is the configuration of `picket agent`. The koanf tags are the key names
// of agent.yml, the flags and (upper-cased, '-' → '_', with the PICKET_AGENT_ prefix)
// the environment variables. Durations given as bare numbers are seconds.
type AgentConfig struct {
	Name                     string            `koanf:"name"`
	Namespace                string            `koanf:"namespace"`
	Subscriptions            []string          `koanf:"subscriptions"`
	Labels                   map[string]string `koanf:"labels"`
	Annotations              map[string]string `koanf:"annotations"`
	User                     string            `koanf:"user"`
	Password                 string            `koanf:"password"`
	BackendURLs              []string          `koanf:"backend-url"`
	BackendHandshakeTimeout  int               `koanf:"backend-handshake-timeout"`
	BackendHeartbeatInterval int               `koanf:"backend-heartbeat-interval"`
	BackendHeartbeatTimeout  int               `koanf:"backend-heartbeat-timeout"`
	RetryMin                 time.Duration     `koanf:"retry-min"`
	RetryMax                 time.Duration     `koanf:"retry-max"`
	RetryMultiplier          float64           `koanf:"retry-multiplier"`
	MaxSessionLength         time.Duration     `koanf:"max-session-length"`
	KeepaliveInterval        int               `koanf:"keepalive-interval"`
	KeepaliveWarningTimeout  int               `koanf:"keepalive-warning-timeout"`
	KeepaliveCriticalTimeout int               `koanf:"keepalive-critical-timeout"`
	KeepaliveHandlers        []string          `koanf:"keepalive-handlers"`
	TrustedCAFile            string            `koanf:"trusted-ca-file"`
	InsecureSkipTLSVerify    bool              `koanf:"insecure-skip-tls-verify"`
	CertFile                 string            `koanf:"cert-file"`
	KeyFile                  string            `koanf:"key-file"`
	APIHost                  string            `koanf:"api-host"`
	APIPort                  int               `koanf:"api-port"`
	DisableAPI               bool              `koanf:"disable-api"`
	CacheDir                 string            `koanf:"cache-dir"`
	Redact                   []string          `koanf:"redact"`
	Deregister               bool              `koanf:"deregister"`
	DeregistrationHandler    string            `koanf:"deregistration-handler"`
	LogLevel                 string            `koanf:"log-level"`

	// Checks are the standalone checks of agent.yml's `checks:` list (file only).
	Checks []events.CheckConfig `koanf:"-"`
	// ConfigFile is the file the configuration was read from, "" when none.
	ConfigFile string `koanf:"-"`
}

// agentChecksKey is the agent.yml key of the standalone checks; not a flag.
const agentChecksKey = "checks"

// agentKeys is the one place agent defaults live; flags, --help and the defaults layer
// are generated from it. name's default, the host name, is filled in at load time.
var agentKeys = []configKey{
	{"name", "", "entity name of this agent (default: this host's name)"},
	{"namespace", agent.DefaultNamespace, "namespace the entity and its events belong to"},
	{"subscriptions", []string{}, "subscriptions the agent runs check requests for; entity:<name> is always added"},
	{"labels", map[string]string{}, "entity labels as key=value pairs (a mapping in agent.yml)"},
	{"annotations", map[string]string{}, "entity annotations as key=value pairs (a mapping in agent.yml)"},
	{"user", agent.DefaultUser, "user the agent authenticates to the backend as"},
	{"password", agent.DefaultPassword, "password of the agent user (the default is Sensu's well-known one: change it)"},
	{"backend-url", []string{agent.DefaultBackendURL}, "backend agent gateway URLs, ws:// or wss://; several are tried in a shuffled order"},
	{"backend-handshake-timeout", 15, "seconds the WebSocket handshake may take"},
	{"backend-heartbeat-interval", 30, "seconds between WebSocket pings to the backend"},
	{"backend-heartbeat-timeout", 45, "seconds to wait for a pong before the connection counts as dead"},
	{"retry-min", "1s", "first reconnect delay (a duration such as 1s)"},
	{"retry-max", "120s", "longest reconnect delay"},
	{"retry-multiplier", 2.0, "factor the reconnect delay grows by after each failed attempt"},
	{"max-session-length", "0s", "reconnect after a random time between half this and this, to rebalance agents across backends (0s: never)"},
	{"keepalive-interval", 20, "seconds between keepalives"},
	{"keepalive-warning-timeout", 120, "seconds without a keepalive before the backend raises a warning (at least 5)"},
	{"keepalive-critical-timeout", 0, "seconds without a keepalive before the backend raises a critical event (0: off)"},
	{"keepalive-handlers", []string{}, "handlers for keepalive events"},
	{"trusted-ca-file", "", "CA bundle to verify wss:// backends with (default: the system's)"},
	{"insecure-skip-tls-verify", false, "do not verify the backend's certificate (testing only)"},
	{"cert-file", "", "client certificate for mutual TLS with the backend"},
	{"key-file", "", "private key of cert-file"},
	{"api-host", agent.DefaultAPIHost, "address the local agent API listens on"},
	{"api-port", agent.DefaultAPIPort, "port of the local agent API"},
	{"disable-api", false, "do not serve the local agent API"},
	{"cache-dir", agent.DefaultCacheDir, "directory of the durable event queue (cache-dir/queue)"},
	{"redact", events.DefaultRedact(), "label and annotation keys whose values the entity reports as REDACTED"},
	{"deregister", false, "ask the backend to delete the entity when the agent disconnects for good"},
	{"deregistration-handler", "", "handler run when the entity is deregistered"},
	{"log-level", "info", "log level: debug, info, warn or error"},
}

// addAgentFlags declares one flag per agent key on fs.
func addAgentFlags(fs *pflag.FlagSet) { addKeyFlags(fs, agentKeys) }

// loadAgentConfig layers defaults < config file < PICKET_AGENT_* environment < flags
// that were set on the command line, and decodes the result. configFile "" means the
// default file, which may be absent; a file named explicitly must exist.
func loadAgentConfig(env *Env, flags *pflag.FlagSet, configFile string) (*AgentConfig, error) {
	l := layers{
		keys: agentKeys, defaults: map[string]any{}, defaultFile: DefaultAgentConfigFile,
		envPrefix: agentEnvPrefix, extraFileKeys: []string{agentChecksKey}, mode: "agent",
	}
	if host, err := os.Hostname(); err == nil {
		l.defaults["name"] = host
	}
	k, path, err := loadLayers(env, flags, configFile, l)
	if err != nil {
		return nil, err
	}

	cfg := &AgentConfig{ConfigFile: path}
	var problems []string
	problems = append(problems, decodeKeys(k, cfg)...)
	checks, cp := decodeChecks(k.Get(agentChecksKey))
	cfg.Checks = checks
	problems = append(problems, cp...)
	if len(problems) > 0 {
		return nil, &ConfigError{Problems: problems}
	}
	return cfg, nil
}

// parseSeconds reads a duration ("90s", "2m") or a bare number of seconds.
func parseSeconds(raw any) (time.Duration, error) {
	s := strings.TrimSpace(scalarString(raw))
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// toStringMap accepts a YAML mapping, or key=value pairs separated by commas or spaces
// (flags and environment).
func toStringMap(raw any) (map[string]string, error) {
	out := map[string]string{}
	switch x := raw.(type) {
	case nil:
	case map[string]string:
		for k, v := range x {
			out[k] = v
		}
	case map[string]any:
		for k, v := range x {
			if _, nested := v.(map[string]any); nested {
				return nil, fmt.Errorf("value of %q is a mapping; values must be strings", k)
			}
			out[k] = scalarString(v)
		}
	default:
		for _, pair := range splitList(scalarString(x)) {
			key, val, ok := strings.Cut(pair, "=")
			if !ok || strings.TrimSpace(key) == "" {
				return nil, fmt.Errorf("%q is not key=value; write pairs like region=eu,team=ops", pair)
			}
			out[strings.TrimSpace(key)] = val
		}
	}
	return out, nil
}

// decodeChecks reads agent.yml's `checks:` list: CheckConfig specs in their JSON/YAML
// shape (snake_case keys), where a top-level `name` may stand for metadata.name.
func decodeChecks(raw any) ([]events.CheckConfig, []string) {
	if raw == nil {
		return nil, nil
	}
	items, ok := raw.([]any)
	if !ok {
		return nil, []string{"checks: must be a list of check definitions (each with name, command and interval or cron)"}
	}
	var out []events.CheckConfig
	var problems []string
	for i, item := range items {
		m, ok := item.(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("checks[%d]: must be a mapping with name, command and interval or cron", i))
			continue
		}
		m = maps.Clone(m)
		if name, ok := m["name"]; ok {
			meta, _ := m["metadata"].(map[string]any)
			if meta == nil {
				meta = map[string]any{}
			}
			if _, has := meta["name"]; !has {
				meta["name"] = name
			}
			m["metadata"] = meta
			delete(m, "name")
		}
		b, err := json.Marshal(m)
		if err != nil {
			problems = append(problems, fmt.Sprintf("checks[%d]: %v", i, err))
			continue
		}
		var c events.CheckConfig
		if err := json.Unmarshal(b, &c); err != nil {
			problems = append(problems, fmt.Sprintf("checks[%d]: %v", i, err))
			continue
		}
		out = append(out, c)
	}
	return out, problems
}

// validName is the name rule of Sensu's resources.
var validName = regexp.MustCompile(`^[\w.\-]+$`)

// Validate reports every problem with the configuration at once, each naming the key,
// the bad value and how to fix it.
func (c *AgentConfig) Validate() error {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }

	if !validName.MatchString(c.Name) {
		add("name: %q is not a valid entity name; use letters, digits, '_', '.' and '-'", c.Name)
	}
	if !validName.MatchString(c.Namespace) {
		add("namespace: %q is not a valid namespace; use letters, digits, '_', '.' and '-' (default %q)", c.Namespace, agent.DefaultNamespace)
	}
	if c.User == "" {
		add("user: must not be empty; set the agent user created on the backend (default %q)", agent.DefaultUser)
	}
	if len(c.BackendURLs) == 0 {
		add("backend-url: list at least one backend, e.g. ws://127.0.0.1:8081")
	}
	for _, raw := range c.BackendURLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			add("backend-url: %q is not a ws:// or wss:// URL; for example ws://backend-1:8081", raw)
		}
	}
	for _, s := range c.Subscriptions {
		if strings.ContainsAny(s, ", ") {
			add("subscriptions: %q may not contain commas or spaces", s)
		}
	}
	for _, m := range []struct {
		key string
		m   map[string]string
	}{{"labels", c.Labels}, {"annotations", c.Annotations}} {
		for k := range m.m {
			if strings.TrimSpace(k) == "" {
				add("%s: a key is empty", m.key)
			}
		}
	}
	positive := []struct {
		key      string
		v, min   int
		fallback int
	}{
		{"backend-handshake-timeout", c.BackendHandshakeTimeout, 1, 15},
		{"backend-heartbeat-interval", c.BackendHeartbeatInterval, 1, 30},
		{"backend-heartbeat-timeout", c.BackendHeartbeatTimeout, 1, 45},
		{"keepalive-interval", c.KeepaliveInterval, 1, 20},
		{"keepalive-warning-timeout", c.KeepaliveWarningTimeout, 5, 120},
	}
	for _, x := range positive {
		if x.v < x.min {
			add("%s: %d must be at least %d seconds (default %d)", x.key, x.v, x.min, x.fallback)
		}
	}
	if c.KeepaliveCriticalTimeout < 0 {
		add("keepalive-critical-timeout: %d must be 0 (off) or a number of seconds", c.KeepaliveCriticalTimeout)
	} else if c.KeepaliveCriticalTimeout > 0 && c.KeepaliveCriticalTimeout <= c.KeepaliveWarningTimeout {
		add("keepalive-critical-timeout: %d must be longer than keepalive-warning-timeout (%d), or 0 for off", c.KeepaliveCriticalTimeout, c.KeepaliveWarningTimeout)
	}
	if c.KeepaliveInterval >= c.KeepaliveWarningTimeout && c.KeepaliveWarningTimeout >= 5 {
		add("keepalive-interval: %d must be shorter than keepalive-warning-timeout (%d), or every agent looks late", c.KeepaliveInterval, c.KeepaliveWarningTimeout)
	}
	if c.RetryMin <= 0 {
		add("retry-min: %s must be positive, e.g. 1s", c.RetryMin)
	}
	if c.RetryMax < c.RetryMin {
		add("retry-max: %s must not be shorter than retry-min (%s)", c.RetryMax, c.RetryMin)
	}
	if c.RetryMultiplier < 1 {
		add("retry-multiplier: %g must be at least 1 (default 2)", c.RetryMultiplier)
	}
	if c.MaxSessionLength < 0 {
		add("max-session-length: %s must be 0s (off) or positive", c.MaxSessionLength)
	} else if c.MaxSessionLength > 0 && c.MaxSessionLength < 10*time.Second {
		add("max-session-length: %s is too short to hold a session; use minutes or hours, or 0s for off", c.MaxSessionLength)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		add("cert-file/key-file: set both for a client certificate, or neither (cert-file=%q, key-file=%q)", c.CertFile, c.KeyFile)
	}
	for _, f := range []struct{ key, path string }{
		{"cert-file", c.CertFile}, {"key-file", c.KeyFile}, {"trusted-ca-file", c.TrustedCAFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			add("%s: %q cannot be read (%v); check the path", f.key, f.path, err)
		}
	}
	if !c.DisableAPI {
		if c.APIHost == "" {
			add("api-host: must not be empty; use 127.0.0.1 to keep the API local")
		}
		if c.APIPort < 1 || c.APIPort > 65535 {
			add("api-port: %d is not a port; use 1-65535 (default %d) or set disable-api", c.APIPort, agent.DefaultAPIPort)
		}
	}
	if c.CacheDir == "" {
		add("cache-dir: must not be empty; the event queue lives there (default %s)", agent.DefaultCacheDir)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log-level: %q is not a level; use debug, info, warn or error", c.LogLevel)
	}
	if c.DeregistrationHandler != "" && !c.Deregister {
		add("deregistration-handler: %q is set but deregister is false; set deregister: true or remove the handler", c.DeregistrationHandler)
	}
	seen := map[string]bool{}
	for i, chk := range c.Checks {
		name := chk.Metadata.Name
		where := fmt.Sprintf("checks[%d]", i)
		if name != "" {
			where = fmt.Sprintf("checks[%d] (%s)", i, name)
		}
		switch {
		case name == "":
			add("%s: name is missing", where)
		case !validName.MatchString(name):
			add("%s: name %q may only hold letters, digits, '_', '.' and '-'", where, name)
		case seen[name]:
			add("%s: name %q is used twice", where, name)
		}
		seen[name] = true
		if strings.TrimSpace(chk.Command) == "" {
			add("%s: command is missing", where)
		}
		switch {
		case chk.Cron != "" && chk.Interval > 0:
			add("%s: set either interval or cron, not both", where)
		case chk.Cron != "":
			if _, err := events.ParseCron(chk.Cron); err != nil {
				add("%s: %v", where, err)
			}
		case chk.Interval <= 0:
			add("%s: interval %d must be a positive number of seconds (or give a cron)", where, chk.Interval)
		}
		if chk.Timeout < 0 {
			add("%s: timeout %d must be 0 (none) or positive", where, chk.Timeout)
		}
		if chk.MaxOutputSize < 0 {
			add("%s: max_output_size %d must be 0 (no cap) or positive", where, chk.MaxOutputSize)
		}
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// agentConfig turns a validated configuration into the agent's.
func (c *AgentConfig) agentConfig() agent.Config {
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	return agent.Config{
		Name:                     c.Name,
		Namespace:                c.Namespace,
		Subscriptions:            c.Subscriptions,
		Labels:                   c.Labels,
		Annotations:              c.Annotations,
		User:                     c.User,
		Password:                 c.Password,
		BackendURLs:              c.BackendURLs,
		HandshakeTimeout:         sec(c.BackendHandshakeTimeout),
		HeartbeatInterval:        sec(c.BackendHeartbeatInterval),
		HeartbeatTimeout:         sec(c.BackendHeartbeatTimeout),
		RetryMin:                 c.RetryMin,
		RetryMax:                 c.RetryMax,
		RetryMultiplier:          c.RetryMultiplier,
		MaxSessionLength:         c.MaxSessionLength,
		KeepaliveInterval:        sec(c.KeepaliveInterval),
		KeepaliveWarningTimeout:  sec(c.KeepaliveWarningTimeout),
		KeepaliveCriticalTimeout: sec(c.KeepaliveCriticalTimeout),
		KeepaliveHandlers:        c.KeepaliveHandlers,
		TrustedCAFile:            c.TrustedCAFile,
		InsecureSkipTLSVerify:    c.InsecureSkipTLSVerify,
		CertFile:                 c.CertFile,
		KeyFile:                  c.KeyFile,
		APIHost:                  c.APIHost,
		APIPort:                  c.APIPort,
		DisableAPI:               c.DisableAPI,
		CacheDir:                 c.CacheDir,
		Redact:                   c.Redact,
		Deregister:               c.Deregister,
		DeregistrationHandler:    c.DeregistrationHandler,
		Checks:                   c.Checks,
		Version:                  Version(),
	}
}
