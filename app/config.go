package app

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	envprov "github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/picketmon/picket/etcdx"
)

// DefaultBackendConfigFile is read when no -c/--config-file is given; its absence is fine.
const DefaultBackendConfigFile = "/etc/picket/backend.yml"

// BackendConfig is the configuration of `picket server` and `picket init`. The koanf
// tags are the key names of backend.yml, the flags and (upper-cased, '-' → '_', with the
// PICKET_BACKEND_ prefix) the environment variables.
type BackendConfig struct {
	StateDir              string `koanf:"state-dir"`
	CacheDir              string `koanf:"cache-dir"`
	LogLevel              string `koanf:"log-level"`
	APIListenAddress      string `koanf:"api-listen-address"`
	APIURL                string `koanf:"api-url"`
	AgentHost             string `koanf:"agent-host"`
	AgentPort             int    `koanf:"agent-port"`
	CertFile              string `koanf:"cert-file"`
	KeyFile               string `koanf:"key-file"`
	TrustedCAFile         string `koanf:"trusted-ca-file"`
	InsecureSkipTLSVerify bool   `koanf:"insecure-skip-tls-verify"`

	EtcdName                     string   `koanf:"etcd-name"`
	EtcdListenClientURLs         []string `koanf:"etcd-listen-client-urls"`
	EtcdAdvertiseClientURLs      []string `koanf:"etcd-advertise-client-urls"`
	EtcdListenPeerURLs           []string `koanf:"etcd-listen-peer-urls"`
	EtcdInitialAdvertisePeerURLs []string `koanf:"etcd-initial-advertise-peer-urls"`
	EtcdInitialCluster           string   `koanf:"etcd-initial-cluster"`
	EtcdInitialClusterState      string   `koanf:"etcd-initial-cluster-state"`
	EtcdInitialClusterToken      string   `koanf:"etcd-initial-cluster-token"`
	EtcdClientURLs               []string `koanf:"etcd-client-urls"`
	NoEmbedEtcd                  bool     `koanf:"no-embed-etcd"`
	EtcdCertFile                 string   `koanf:"etcd-cert-file"`
	EtcdKeyFile                  string   `koanf:"etcd-key-file"`
	EtcdTrustedCAFile            string   `koanf:"etcd-trusted-ca-file"`
	EtcdClientCertAuth           bool     `koanf:"etcd-client-cert-auth"`
	EtcdPeerCertFile             string   `koanf:"etcd-peer-cert-file"`
	EtcdPeerKeyFile              string   `koanf:"etcd-peer-key-file"`
	EtcdPeerTrustedCAFile        string   `koanf:"etcd-peer-trusted-ca-file"`
	EtcdPeerClientCertAuth       bool     `koanf:"etcd-peer-client-cert-auth"`
	EtcdQuotaBackendBytes        int64    `koanf:"etcd-quota-backend-bytes"`
	EtcdHeartbeatInterval        int      `koanf:"etcd-heartbeat-interval"`
	EtcdElectionTimeout          int      `koanf:"etcd-election-timeout"`
	EtcdAutoCompactionMode       string   `koanf:"etcd-auto-compaction-mode"`
	EtcdAutoCompactionRetention  string   `koanf:"etcd-auto-compaction-retention"`
	EtcdCompactionSleepInterval  int      `koanf:"etcd-compaction-sleep-interval"`
	EtcdPinDatabase              bool     `koanf:"etcd-pin-database"`

	// EtcdClientUsername and EtcdClientPassword come only from the environment
	// (PICKET_BACKEND_ETCD_CLIENT_USERNAME / _PASSWORD), never from a file or flag.
	EtcdClientUsername string `koanf:"-"`
	EtcdClientPassword string `koanf:"-"`

	// ConfigFile is the file the configuration was read from, "" when none.
	ConfigFile string `koanf:"-"`
}

// etcdClientConfig is the configuration of a client of the cluster's etcd: the
// etcd-client-urls, else the etcd-advertise-client-urls, with the etcd TLS files and
// the credentials from the environment.
func (c *BackendConfig) etcdClientConfig() etcdx.ClientConfig {
	endpoints := c.EtcdClientURLs
	if len(endpoints) == 0 {
		endpoints = c.EtcdAdvertiseClientURLs
	}
	return etcdx.ClientConfig{
		Endpoints: endpoints, CertFile: c.EtcdCertFile, KeyFile: c.EtcdKeyFile, TrustedCAFile: c.EtcdTrustedCAFile,
		InsecureSkipVerify: c.InsecureSkipTLSVerify, Username: c.EtcdClientUsername, Password: c.EtcdClientPassword,
	}
}

// configKey describes one configuration key: its default, its help text, and whether it
// holds a list (YAML array or space-delimited string).
type configKey struct {
	name string
	def  any
	help string
}

// backendKeys is the one place backend defaults live; flags, --help and the defaults
// layer are all generated from it.
var backendKeys = []configKey{
	{"state-dir", "/var/lib/picket", "directory for the embedded etcd data and other state"},
	{"cache-dir", "/var/cache/picket", "directory for caches that can be rebuilt"},
	{"log-level", "info", "log level: debug, info, warn or error"},
	{"api-listen-address", "[::]:8080", "address the REST API listens on (host:port)"},
	{"api-url", "http://localhost:8080", "URL clients use to reach this server's API"},
	{"agent-host", "[::]", "address the agent gateway listens on"},
	{"agent-port", 8081, "port the agent gateway listens on"},
	{"cert-file", "", "TLS certificate for the API and agent gateway (enables TLS with key-file)"},
	{"key-file", "", "TLS private key for the API and agent gateway"},
	{"trusted-ca-file", "", "CA bundle used to verify clients and other servers"},
	{"insecure-skip-tls-verify", false, "skip TLS verification when this server connects out (testing only)"},
	{"etcd-name", "default", "name of this etcd member, unique in the cluster"},
	{"etcd-listen-client-urls", []string{"http://127.0.0.1:2379"}, "URLs etcd listens on for clients"},
	{"etcd-advertise-client-urls", []string{"http://localhost:2379"}, "client URLs advertised to the rest of the cluster"},
	{"etcd-listen-peer-urls", []string{"http://127.0.0.1:2380"}, "URLs etcd listens on for peers"},
	{"etcd-initial-advertise-peer-urls", []string{"http://127.0.0.1:2380"}, "peer URLs advertised to the rest of the cluster"},
	{"etcd-initial-cluster", "default=http://127.0.0.1:2380", "initial cluster members as name=peer-url,… (read only on first start)"},
	{"etcd-initial-cluster-state", "new", "new to bootstrap a cluster, existing to join one (read only on first start)"},
	{"etcd-initial-cluster-token", "", "token unique to this cluster (read only on first start)"},
	{"etcd-client-urls", []string{}, "etcd URLs to use instead of the embedded member (with no-embed-etcd) and for picket init"},
	{"no-embed-etcd", false, "do not run an embedded etcd member; use etcd-client-urls"},
	{"etcd-cert-file", "", "etcd client-port certificate (and client certificate for external etcd)"},
	{"etcd-key-file", "", "etcd client-port private key"},
	{"etcd-trusted-ca-file", "", "CA that signs etcd client-port and client certificates"},
	{"etcd-client-cert-auth", false, "require client certificates on etcd's client port"},
	{"etcd-peer-cert-file", "", "etcd peer certificate"},
	{"etcd-peer-key-file", "", "etcd peer private key"},
	{"etcd-peer-trusted-ca-file", "", "CA that signs etcd peer certificates"},
	{"etcd-peer-client-cert-auth", false, "require peer client certificates"},
	{"etcd-quota-backend-bytes", int64(4 << 30), "etcd backend size limit in bytes before it raises NOSPACE"},
	{"etcd-heartbeat-interval", 100, "etcd heartbeat interval in milliseconds"},
	{"etcd-election-timeout", 1000, "etcd election timeout in milliseconds"},
	{"etcd-auto-compaction-mode", "periodic", "etcd auto compaction mode: periodic or revision"},
	{"etcd-auto-compaction-retention", "1h", "etcd auto compaction retention (duration for periodic, count for revision)"},
	{"etcd-compaction-sleep-interval", 100, "milliseconds etcd rests between compaction batches of 4,000 revisions, which bounds compaction at 4,000 revisions per interval (40,000/s at 100); lower it if the cluster stores more events per second than about half that"},
	{"etcd-pin-database", true, "keep the embedded etcd database in memory (locked, up to half of the machine's memory and at most the quota), so that compacting old history never waits on the disk; needs a locked-memory limit that large (the packaged unit sets LimitMEMLOCK=infinity), else a warning and it runs without"},
}

// addBackendFlags declares one flag per backend key on fs.
func addBackendFlags(fs *pflag.FlagSet) { addKeyFlags(fs, backendKeys) }

// addKeyFlags declares one flag per key, with its default shown in --help. Flag
// defaults are never merged: the defaults layer owns them.
func addKeyFlags(fs *pflag.FlagSet, keys []configKey) {
	for _, k := range keys {
		switch d := k.def.(type) {
		case bool:
			fs.Bool(k.name, d, k.help)
		case []string:
			fs.String(k.name, strings.Join(d, " "), k.help+" (space- or comma-separated list)")
		case map[string]string:
			fs.String(k.name, "", k.help)
		default:
			fs.String(k.name, fmt.Sprint(d), k.help)
		}
	}
}

// layers describes one mode's configuration for loadLayers.
type layers struct {
	keys        []configKey
	defaults    map[string]any // overrides of the keys' defaults, e.g. the host name
	defaultFile string
	envPrefix   string
	// extraFileKeys are file keys that are not flags (the agent's checks list).
	extraFileKeys []string
	mode          string // for messages: "server", "agent"
}

// loadLayers layers defaults < config file < environment < flags that were set on the
// command line into one koanf instance, the one place this order is implemented.
// configFile "" means the mode's default file, which may be absent; a file named
// explicitly must exist. It returns the file actually read ("" when none).
func loadLayers(env *Env, flags *pflag.FlagSet, configFile string, l layers) (*koanf.Koanf, string, error) {
	// A delimiter no key holds: agent label keys such as app.kubernetes.io/name have dots.
	k := koanf.New("\x00")
	isKey := func(name string) bool {
		for _, key := range l.keys {
			if key.name == name {
				return true
			}
		}
		return false
	}
	defaults := map[string]any{}
	for _, key := range l.keys {
		defaults[key.name] = key.def
	}
	for name, v := range l.defaults {
		defaults[name] = v
	}
	if err := k.Load(confmap.Provider(defaults, "\x00"), nil); err != nil {
		return nil, "", err
	}

	path := configFile
	if path == "" {
		path = l.defaultFile
	}
	if _, err := os.Stat(path); err == nil {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, "", fmt.Errorf("config file %s: %w; fix the YAML syntax", path, err)
		}
	} else if configFile != "" || !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("config file %s: %w", path, err)
	} else {
		path = ""
	}
	if path != "" {
		var unknown []string
		for key := range k.Raw() {
			if !isKey(key) && !slices.Contains(l.extraFileKeys, key) {
				unknown = append(unknown, key)
			}
		}
		slices.Sort(unknown)
		if len(unknown) > 0 {
			return nil, "", fmt.Errorf("config file %s: unknown key(s) %s; see 'picket %s --help' for the valid keys", path, strings.Join(unknown, ", "), l.mode)
		}
	}

	environ := os.Environ
	if env != nil && env.Environ != nil {
		environ = env.Environ
	}
	err := k.Load(envprov.Provider("\x00", envprov.Opt{
		Prefix:      l.envPrefix,
		EnvironFunc: environ,
		TransformFunc: func(key, val string) (string, any) {
			name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(key, l.envPrefix)), "_", "-")
			if !isKey(name) {
				return "", nil // secrets (ETCD_CLIENT_*, CLUSTER_ADMIN_PASSWORD) are read separately
			}
			return name, val
		},
	}), nil)
	if err != nil {
		return nil, "", err
	}

	if flags != nil {
		flags.Visit(func(f *pflag.Flag) {
			if isKey(f.Name) {
				_ = k.Set(f.Name, f.Value.String())
			}
		})
	}
	return k, path, nil
}

// loadBackendConfig loads the backend configuration through loadLayers and decodes it.
func loadBackendConfig(env *Env, flags *pflag.FlagSet, configFile string) (*BackendConfig, error) {
	k, path, err := loadLayers(env, flags, configFile, layers{
		keys: backendKeys, defaultFile: DefaultBackendConfigFile, envPrefix: "PICKET_BACKEND_", mode: "server",
	})
	if err != nil {
		return nil, err
	}
	cfg := &BackendConfig{ConfigFile: path}
	if problems := decodeKeys(k, cfg); len(problems) > 0 {
		return nil, &ConfigError{Problems: problems}
	}
	getenv := os.Getenv
	if env != nil && env.Getenv != nil {
		getenv = env.Getenv
	}
	cfg.EtcdClientUsername = getenv("PICKET_BACKEND_ETCD_CLIENT_USERNAME")
	cfg.EtcdClientPassword = getenv("PICKET_BACKEND_ETCD_CLIENT_PASSWORD")
	return cfg, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// decodeKeys copies every key into the struct field with the matching koanf tag,
// converting strings from the environment and flags to the field's type. Conversion
// problems are collected and returned together, each naming the key and the value.
func decodeKeys(k *koanf.Koanf, dst any) []string {
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	var problems []string
	bad := func(tag string, raw any, what string) {
		problems = append(problems, fmt.Sprintf("%s: %q is not %s", tag, scalarString(raw), what))
	}
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("koanf")
		if tag == "" || tag == "-" || !k.Exists(tag) {
			continue
		}
		raw := k.Get(tag)
		f := v.Field(i)
		switch {
		case f.Type() == durationType:
			d, err := parseSeconds(raw)
			if err != nil {
				bad(tag, raw, "a duration such as 30s or 2m")
				continue
			}
			f.SetInt(int64(d))
		case f.Kind() == reflect.String:
			f.SetString(scalarString(raw))
		case f.Kind() == reflect.Bool:
			b, err := toBool(raw)
			if err != nil {
				bad(tag, raw, "true or false")
				continue
			}
			f.SetBool(b)
		case f.Kind() == reflect.Int, f.Kind() == reflect.Int64:
			n, err := strconv.ParseInt(strings.TrimSpace(scalarString(raw)), 10, 64)
			if err != nil {
				bad(tag, raw, "a whole number")
				continue
			}
			f.SetInt(n)
		case f.Kind() == reflect.Float64:
			x, err := strconv.ParseFloat(strings.TrimSpace(scalarString(raw)), 64)
			if err != nil {
				bad(tag, raw, "a number")
				continue
			}
			f.SetFloat(x)
		case f.Kind() == reflect.Slice:
			f.Set(reflect.ValueOf(toList(raw)))
		case f.Kind() == reflect.Map:
			m, err := toStringMap(raw)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", tag, err))
				continue
			}
			f.Set(reflect.ValueOf(m))
		}
	}
	return problems
}

func scalarString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fmt.Sprint(p)
		}
		return strings.Join(parts, " ")
	default:
		return fmt.Sprint(x)
	}
}

func toBool(v any) (bool, error) {
	if b, ok := v.(bool); ok {
		return b, nil
	}
	return strconv.ParseBool(strings.TrimSpace(scalarString(v)))
}

// toList accepts a YAML array, or a string of values separated by spaces or commas.
func toList(v any) []string {
	out := []string{}
	switch x := v.(type) {
	case []string:
		for _, s := range x {
			out = append(out, splitList(s)...)
		}
	case []any:
		for _, s := range x {
			out = append(out, splitList(fmt.Sprint(s))...)
		}
	case nil:
	default:
		out = append(out, splitList(fmt.Sprint(x))...)
	}
	return out
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' })
}

// ConfigError lists every configuration problem found at once.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid configuration: " + e.Problems[0]
	}
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Validate reports every problem with the configuration at once, each naming the key,
// the bad value and how to fix it.
func (c *BackendConfig) Validate() error {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }

	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log-level: %q is not a level; use debug, info, warn or error", c.LogLevel)
	}
	if c.StateDir == "" {
		add("state-dir: must not be empty; set it to a writable directory such as /var/lib/picket")
	}
	if _, _, err := net.SplitHostPort(c.APIListenAddress); err != nil {
		add("api-listen-address: %q is not host:port (%v); for example [::]:8080", c.APIListenAddress, err)
	}
	if c.APIURL != "" {
		if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("api-url: %q is not an http(s) URL; for example http://localhost:8080", c.APIURL)
		}
	}
	if c.AgentPort < 1 || c.AgentPort > 65535 {
		add("agent-port: %d is not a port; use 1-65535 (default 8081)", c.AgentPort)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		add("cert-file/key-file: set both to enable TLS, or neither (cert-file=%q, key-file=%q)", c.CertFile, c.KeyFile)
	}
	for _, f := range []struct{ key, path string }{
		{"cert-file", c.CertFile}, {"key-file", c.KeyFile}, {"trusted-ca-file", c.TrustedCAFile},
		{"etcd-cert-file", c.EtcdCertFile}, {"etcd-key-file", c.EtcdKeyFile}, {"etcd-trusted-ca-file", c.EtcdTrustedCAFile},
		{"etcd-peer-cert-file", c.EtcdPeerCertFile}, {"etcd-peer-key-file", c.EtcdPeerKeyFile}, {"etcd-peer-trusted-ca-file", c.EtcdPeerTrustedCAFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			add("%s: %q cannot be read (%v); check the path", f.key, f.path, err)
		}
	}
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		add("etcd-cert-file/etcd-key-file: set both or neither (etcd-cert-file=%q, etcd-key-file=%q)", c.EtcdCertFile, c.EtcdKeyFile)
	}
	if (c.EtcdPeerCertFile == "") != (c.EtcdPeerKeyFile == "") {
		add("etcd-peer-cert-file/etcd-peer-key-file: set both or neither")
	}
	if c.EtcdName == "" {
		add("etcd-name: must not be empty; give each member a unique name")
	}
	urlLists := []struct {
		key  string
		urls []string
	}{
		{"etcd-listen-client-urls", c.EtcdListenClientURLs},
		{"etcd-advertise-client-urls", c.EtcdAdvertiseClientURLs},
		{"etcd-listen-peer-urls", c.EtcdListenPeerURLs},
		{"etcd-initial-advertise-peer-urls", c.EtcdInitialAdvertisePeerURLs},
		{"etcd-client-urls", c.EtcdClientURLs},
	}
	for _, l := range urlLists {
		for _, raw := range l.urls {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" {
				add("%s: %q is not a URL like http://127.0.0.1:2379; give scheme, host and port", l.key, raw)
			}
		}
	}
	if !c.NoEmbedEtcd {
		for _, l := range urlLists[:4] {
			if len(l.urls) == 0 {
				add("%s: must list at least one URL for the embedded etcd member", l.key)
			}
		}
		if c.EtcdInitialCluster != "" {
			for _, m := range strings.Split(c.EtcdInitialCluster, ",") {
				name, peer, ok := strings.Cut(strings.TrimSpace(m), "=")
				if !ok || name == "" || peer == "" {
					add("etcd-initial-cluster: %q is not name=peer-url; for example default=http://127.0.0.1:2380", m)
				}
			}
		}
	}
	switch c.EtcdInitialClusterState {
	case "new", "existing":
	default:
		add("etcd-initial-cluster-state: %q must be new or existing", c.EtcdInitialClusterState)
	}
	if c.NoEmbedEtcd && len(c.EtcdClientURLs) == 0 {
		add("etcd-client-urls: no-embed-etcd is set, so list the external etcd URLs here")
	}
	if c.EtcdQuotaBackendBytes <= 0 {
		add("etcd-quota-backend-bytes: %d must be positive (default %d)", c.EtcdQuotaBackendBytes, int64(4<<30))
	}
	if c.EtcdHeartbeatInterval <= 0 {
		add("etcd-heartbeat-interval: %d must be a positive number of milliseconds (default 100)", c.EtcdHeartbeatInterval)
	}
	if c.EtcdElectionTimeout < 5*c.EtcdHeartbeatInterval {
		add("etcd-election-timeout: %d must be at least 5 × etcd-heartbeat-interval (%d ms)", c.EtcdElectionTimeout, 5*c.EtcdHeartbeatInterval)
	}
	switch c.EtcdAutoCompactionMode {
	case "periodic", "revision":
	default:
		add("etcd-auto-compaction-mode: %q must be periodic or revision", c.EtcdAutoCompactionMode)
	}
	if c.EtcdCompactionSleepInterval < 1 || c.EtcdCompactionSleepInterval > 1000 {
		add("etcd-compaction-sleep-interval: %d must be 1 to 1000 milliseconds (default 100)", c.EtcdCompactionSleepInterval)
	}
	if c.EtcdAutoCompactionRetention == "" || c.EtcdAutoCompactionRetention == "0" {
		add("etcd-auto-compaction-retention: %q turns compaction off and lets the database fill up; use a duration such as 1h", c.EtcdAutoCompactionRetention)
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}
