package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node"
	"github.com/picketmon/picket/node/cluster"
)

// shutdownTimeout bounds a graceful stop; the issue asks for "within a few seconds".
const shutdownTimeout = 10 * time.Second

func newModeFlags(name, usageLine, description string, env *Env) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(env.Stdout, "Usage: picket %s\n\n%s\n\nFlags:\n%s", usageLine, description, fs.FlagUsagesWrapped(100))
	}
	return fs
}

// parseFlags parses args, turning --help into a clean exit and other errors into usage
// errors (exit 2).
func parseModeFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return &exitError{code: 0, err: err}
		}
		return usageErrorf("%v (see 'picket %s --help')", err, fs.Name())
	}
	return nil
}

const serverDescription = `Runs a Picket backend node: an embedded etcd member (or a client of an external etcd),
the REST API and the agent gateway.

Configuration is layered: defaults < config file (/etc/picket/backend.yml or -c FILE)
< environment (PICKET_BACKEND_<KEY>, e.g. PICKET_BACKEND_STATE_DIR) < flags. Every key
below is also a backend.yml key of the same name. List values take a YAML array or a
space-separated string. The credentials of an external etcd come only from the
environment: PICKET_BACKEND_ETCD_CLIENT_USERNAME and PICKET_BACKEND_ETCD_CLIENT_PASSWORD.

Tuning, from the environment only:
  PICKET_AGENT_ACK_DELAY   acks to one agent are written together at most this often
                           (default 250ms; 0 writes each at once; at most 10s)
  PICKET_TASK_TTL          seconds a dead server keeps its elected tasks (default 1)
  PICKET_ACCESS_TOKEN_TTL  lifetime of API access tokens (default 5m)
  GOGC                     Go's garbage collection target. Unset, the server sets 200
                           while it stores 2,000 events/s or more and Go's default (100)
                           otherwise; set, it is kept as it is (README: "Garbage
                           collection follows the event rate")

Examples:
  picket server --dev                      # throw-away single node, prints admin login
  picket server -c /etc/picket/backend.yml
  picket server --state-dir /srv/picket --api-listen-address 127.0.0.1:8080`

func runServer(ctx context.Context, env *Env, args []string) error {
	fs := newModeFlags("server", "server [flags]", serverDescription, env)
	configFile := fs.StringP("config-file", "c", "", "config file to read (default /etc/picket/backend.yml when present)")
	dev := fs.Bool("dev", false, "run a throw-away single node in a temporary state dir, initialised, with a generated admin password printed once")
	addBackendFlags(fs)
	if err := parseModeFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (see 'picket server --help')", fs.Arg(0))
	}
	cfg, err := loadBackendConfig(env, fs, *configFile)
	if err != nil {
		return err
	}
	var adminPassword string
	if *dev {
		cleanup, err := applyDevDefaults(cfg, fs)
		if err != nil {
			return err
		}
		defer cleanup()
		adminPassword = generatePassword()
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(env.Stderr, cfg.LogLevel)
	raiseFileLimit() // every agent session holds a socket
	if cfg.ConfigFile != "" {
		log.Info("configuration loaded", "file", cfg.ConfigFile)
	}
	ncfg, err := nodeConfig(cfg, log)
	if err != nil {
		return err
	}
	warnPlaintext(cfg, log)
	joining, err := applyJoinFile(cfg, &ncfg, log)
	if err != nil {
		return err
	}

	start := time.Now()
	n := node.New(ncfg)
	if err := n.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return &exitError{code: 0, err: ctx.Err()}
		}
		if cfg.NoEmbedEtcd && strings.Contains(err.Error(), "authentication failed") {
			return fmt.Errorf("%w; check the user and password in PICKET_BACKEND_ETCD_CLIENT_USERNAME and PICKET_BACKEND_ETCD_CLIENT_PASSWORD (user %q)", err, cfg.EtcdClientUsername)
		}
		if cfg.NoEmbedEtcd && strings.Contains(err.Error(), "permission denied") {
			return fmt.Errorf("%w; the etcd user %q needs read and write permission on the key range /picket/ (etcdctl role grant-permission ROLE readwrite --from-key /picket/ or --prefix /picket/)", err, cfg.EtcdClientUsername)
		}
		return err
	}
	if joining {
		if err := cluster.RemoveJoin(cfg.StateDir); err != nil {
			log.Warn("remove join file", "err", err)
		}
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		t := time.Now()
		if err := n.Close(stopCtx); err != nil {
			log.Error("stop", "err", err)
		}
		log.Info("picket server stopped", "took", time.Since(t).Round(time.Millisecond).String())
	}()

	if *dev {
		agentPassword := generatePassword()
		if err := node.Initialize(ctx, n.Store(), node.InitOptions{
			AdminUsername: "admin", AdminPassword: adminPassword,
			AgentUsername: "agent", AgentPassword: agentPassword,
		}); err != nil {
			return fmt.Errorf("initialise dev cluster: %w", err)
		}
		agentCtx, stopAgent := context.WithCancel(ctx)
		agentName, agentAPI, waitAgent, err := devAgent(agentCtx, n, cfg.StateDir, agentPassword, log)
		if err != nil {
			stopAgent()
			return err
		}
		// Stop the agent before the node (defers run last-in first-out).
		defer waitAgent()
		defer stopAgent()
		printDevBanner(env.Stdout, n.APIURL(), n.AgentURL(), cfg, adminPassword, agentPassword, time.Since(start))
		fmt.Fprintf(env.Stdout, "  picket list events       # the local agent %s runs check dev-example every 10 s\n\nLocal agent API: %s\nStop with Ctrl-C.\n\n", agentName, agentAPI)
	}
	log.Info("picket server ready", "name", cfg.EtcdName, "api", n.APIURL(), "agents", n.AgentURL(), "took", time.Since(start).Round(time.Millisecond).String())
	notifySystemd("READY=1")

	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", "signal")
		notifySystemd("STOPPING=1")
		return nil
	case err := <-n.Err():
		return err
	}
}

// applyDevDefaults points the config at a temporary state dir, free loopback ports for
// etcd and the agent gateway on loopback, unless the operator gave those as flags.
func applyDevDefaults(cfg *BackendConfig, fs *pflag.FlagSet) (func(), error) {
	dir, err := os.MkdirTemp("", "picket-dev-")
	if err != nil {
		return nil, fmt.Errorf("create temporary state dir: %w", err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if !fs.Changed("state-dir") {
		cfg.StateDir = filepath.Join(dir, "state")
	}
	if !fs.Changed("cache-dir") {
		cfg.CacheDir = filepath.Join(dir, "cache")
	}
	ports, err := freePorts(2)
	if err != nil {
		cleanup()
		return nil, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	// URLs given as flags are the operator's (two dev servers side by side, a fixed port
	// to point etcdctl at): kept, each its first URL.
	if fs.Changed("etcd-listen-client-urls") && len(cfg.EtcdListenClientURLs) > 0 {
		client = cfg.EtcdListenClientURLs[0]
	}
	if fs.Changed("etcd-listen-peer-urls") && len(cfg.EtcdListenPeerURLs) > 0 {
		peer = cfg.EtcdListenPeerURLs[0]
	}
	if !fs.Changed("agent-host") {
		// A throw-away server takes agents from this machine only.
		cfg.AgentHost = "127.0.0.1"
	}
	cfg.NoEmbedEtcd = false
	cfg.EtcdName = "dev"
	cfg.EtcdListenClientURLs = []string{client}
	cfg.EtcdAdvertiseClientURLs = []string{client}
	cfg.EtcdListenPeerURLs = []string{peer}
	cfg.EtcdInitialAdvertisePeerURLs = []string{peer}
	cfg.EtcdInitialCluster = "dev=" + peer
	cfg.EtcdInitialClusterState = "new"
	cfg.EtcdInitialClusterToken = ""
	cfg.CertFile, cfg.KeyFile = "", ""
	return cleanup, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func printDevBanner(w io.Writer, apiURL, agentURL string, cfg *BackendConfig, adminPassword, agentPassword string, took time.Duration) {
	url := localURL(apiURL)
	fmt.Fprintf(w, `
Picket dev server ready in %s (throw-away: state in %s, deleted on exit)

  API         %s
  agents      %s
  admin user  admin
  password    %s   (generated; shown only now)
  agent user  agent / %s

Log in with the CLI:
  picket login --api-url %s --username admin --password '%s'
  picket list namespaces
`, took.Round(time.Millisecond), cfg.StateDir, url, localURL(agentURL), adminPassword, agentPassword, url, adminPassword)
}

// localURL names a wildcard listen address as localhost, for printing.
func localURL(u string) string {
	return strings.Replace(strings.Replace(u, "[::]", "localhost", 1), "0.0.0.0", "localhost", 1)
}

// nodeConfig turns a validated backend configuration into the node's configuration.
func nodeConfig(cfg *BackendConfig, log *slog.Logger) (node.Config, error) {
	nc := node.Config{
		Name:               cfg.EtcdName,
		APIListenAddress:   cfg.APIListenAddress,
		AgentListenAddress: net.JoinHostPort(strings.Trim(cfg.AgentHost, "[]"), strconv.Itoa(cfg.AgentPort)),
		CertFile:           cfg.CertFile,
		KeyFile:            cfg.KeyFile,
		Version:            Version(),
		Logger:             log,
		Client:             cfg.etcdClientConfig(),
	}
	// The shortest task lease etcd allows (it raises 1 s to 1.5 election timeouts), so a
	// dead server's tasks move within about 2.5 s with a 500 ms election timeout; tests
	// that start nodes in-process keep node's more relaxed default.
	nc.TaskTTL = 1
	if ttl := os.Getenv("PICKET_TASK_TTL"); ttl != "" {
		secs, err := strconv.Atoi(ttl)
		if err != nil || secs < 1 {
			return nc, fmt.Errorf("PICKET_TASK_TTL: %q is not a whole number of seconds of at least 1", ttl)
		}
		nc.TaskTTL = secs
	}
	if ttl := os.Getenv("PICKET_ACCESS_TOKEN_TTL"); ttl != "" {
		d, err := time.ParseDuration(ttl)
		if err != nil {
			return nc, fmt.Errorf("PICKET_ACCESS_TOKEN_TTL: %q is not a duration such as 5m", ttl)
		}
		nc.AccessTokenTTL = d
	}
	if v := os.Getenv("PICKET_AGENT_ACK_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 10*time.Second {
			return nc, fmt.Errorf("PICKET_AGENT_ACK_DELAY: %q is not a duration from 0 to 10s such as 250ms (0: acks go out at once)", v)
		}
		if d == 0 {
			d = -1 // node: no wait
		}
		nc.AgentAckDelay = d
	}
	// GOGC in the environment is the operator's setting; without it, the server paces
	// garbage collection for its event rate (node.Config.PaceGC).
	nc.PaceGC = os.Getenv("GOGC") == ""
	if !cfg.NoEmbedEtcd {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nc, fmt.Errorf("state-dir %s: %w", cfg.StateDir, err)
		}
		nc.Embed = &etcdx.EmbedConfig{
			Name:                     cfg.EtcdName,
			Dir:                      filepath.Join(cfg.StateDir, "etcd"),
			ListenClientURLs:         cfg.EtcdListenClientURLs,
			AdvertiseClientURLs:      cfg.EtcdAdvertiseClientURLs,
			ListenPeerURLs:           cfg.EtcdListenPeerURLs,
			InitialAdvertisePeerURLs: cfg.EtcdInitialAdvertisePeerURLs,
			InitialCluster:           cfg.EtcdInitialCluster,
			InitialClusterState:      cfg.EtcdInitialClusterState,
			InitialClusterToken:      cfg.EtcdInitialClusterToken,
			QuotaBackendBytes:        cfg.EtcdQuotaBackendBytes,
			HeartbeatInterval:        time.Duration(cfg.EtcdHeartbeatInterval) * time.Millisecond,
			ElectionTimeout:          time.Duration(cfg.EtcdElectionTimeout) * time.Millisecond,
			AutoCompactionMode:       cfg.EtcdAutoCompactionMode,
			AutoCompactionRetention:  cfg.EtcdAutoCompactionRetention,
			CompactionSleepInterval:  time.Duration(cfg.EtcdCompactionSleepInterval) * time.Millisecond,
			PinDatabase:              cfg.EtcdPinDatabase,
			ClientTLS:                etcdx.TLSFiles{CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile, TrustedCAFile: cfg.EtcdTrustedCAFile, ClientCertAuth: cfg.EtcdClientCertAuth},
			PeerTLS:                  etcdx.TLSFiles{CertFile: cfg.EtcdPeerCertFile, KeyFile: cfg.EtcdPeerKeyFile, TrustedCAFile: cfg.EtcdPeerTrustedCAFile, ClientCertAuth: cfg.EtcdPeerClientCertAuth},
			Logger:                   log.With("component", "etcd"),
		}
		if len(cfg.EtcdClientURLs) == 0 {
			nc.Client.Endpoints = nil // the embedded member's own URLs
		}
	}
	return nc, nil
}

// applyJoinFile makes an embedded member with an empty data dir join the cluster that
// `picket cluster replace` prepared for it: the join file in the state dir overrides
// etcd-initial-cluster and sets etcd-initial-cluster-state to existing. A join file
// beside a data dir is stale (the member already started) and is removed. It reports
// whether the member joins, so the caller removes the file once the member runs.
func applyJoinFile(cfg *BackendConfig, nc *node.Config, log *slog.Logger) (bool, error) {
	if nc.Embed == nil {
		return false, nil
	}
	j, err := cluster.ReadJoin(cfg.StateDir)
	if err != nil || j == nil {
		return false, err
	}
	if etcdx.HasData(nc.Embed.Dir) {
		log.Info("removing a join file left from an earlier replace: the etcd data dir already holds this member", "file", filepath.Join(cfg.StateDir, cluster.JoinFileName))
		return false, cluster.RemoveJoin(cfg.StateDir)
	}
	if j.Name != cfg.EtcdName {
		return false, fmt.Errorf("%s prepares member %s, but etcd-name is %s: fix etcd-name or delete the file",
			filepath.Join(cfg.StateDir, cluster.JoinFileName), j.Name, cfg.EtcdName)
	}
	nc.Embed.InitialCluster = j.InitialCluster
	nc.Embed.InitialClusterState = "existing"
	log.Info("joining the cluster as a replaced member", "member_id", j.MemberID, "initial_cluster", j.InitialCluster)
	return true, nil
}

// warnPlaintext logs loudly when etcd traffic would cross the network unencrypted.
func warnPlaintext(cfg *BackendConfig, log *slog.Logger) {
	urls := cfg.EtcdClientURLs
	if !cfg.NoEmbedEtcd {
		urls = append(append([]string{}, cfg.EtcdListenClientURLs...), cfg.EtcdListenPeerURLs...)
		urls = append(append(urls, cfg.EtcdAdvertiseClientURLs...), cfg.EtcdInitialAdvertisePeerURLs...)
	}
	seen := map[string]bool{}
	for _, u := range urls {
		if strings.HasPrefix(u, "http://") && !isLoopbackURL(u) && !seen[u] {
			seen[u] = true
			log.Warn("PLAINTEXT etcd URL on a non-loopback address: traffic and credentials are unencrypted; use https URLs with certificates from picket certs", "url", u)
		}
	}
}

func isLoopbackURL(u string) bool {
	host := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// newLogger logs text to a terminal or under systemd (journald adds the time), JSON
// otherwise.
func newLogger(w io.Writer, level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if os.Getenv("JOURNAL_STREAM") != "" || os.Getenv("INVOCATION_ID") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
		return slog.New(slog.NewTextHandler(w, opts))
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// notifySystemd sends a state line to systemd when run as a Type=notify service.
func notifySystemd(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
