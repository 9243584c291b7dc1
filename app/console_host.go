package app

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node/client"
	"github.com/picketmon/picket/node/cluster"
	"github.com/picketmon/picket/tui"
)

// serverLogPath is where a server the console or 'picket cluster replace' starts writes
// its log: server.log in its state directory.
func serverLogPath(stateDir string) string { return filepath.Join(stateDir, "server.log") }

// sandboxFile is the manifest of a console-made cluster in its directory: which nodes it
// has and where their configurations are, so a later console finds it again.
const sandboxFile = "sandbox.json"

type manifest struct {
	Mode    string         `json:"mode"`
	Created time.Time      `json:"created"`
	CA      string         `json:"ca,omitempty"`
	Nodes   []manifestNode `json:"nodes"`
}

type manifestNode struct {
	Name   string `json:"name"`
	APIURL string `json:"api_url"`
	Config string `json:"config,omitempty"` // "" when the node runs on another host
}

// consoleHost implements tui.Host on this machine.
type consoleHost struct {
	env        *Env
	configFile string
	configDir  string
	sandboxDir string
}

func newConsoleHost(env *Env, configFile, configDir, sandboxDir string) (*consoleHost, error) {
	dir, err := configDirFor(env, configDir)
	if err != nil {
		return nil, err
	}
	if sandboxDir == "" {
		sandboxDir = defaultSandboxDir(env)
	}
	if abs, err := filepath.Abs(sandboxDir); err == nil {
		sandboxDir = abs
	}
	return &consoleHost{env: env, configFile: configFile, configDir: dir, sandboxDir: sandboxDir}, nil
}

func readManifest(dir string) (*manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, sandboxFile))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, sandboxFile), err)
	}
	return &m, nil
}

func writeManifest(dir string, m *manifest) error {
	data, _ := json.MarshalIndent(m, "", "  ")
	return writeFileAtomic(filepath.Join(dir, sandboxFile), append(data, '\n'), 0o600)
}

// Detect implements tui.Host.
func (h *consoleHost) Detect(ctx context.Context) tui.Detection {
	d := tui.Detection{
		DefaultSandboxDir: h.sandboxDir,
		Token:             randomToken("picket-"),
	}
	d.HostName, _ = os.Hostname()
	d.HostAddress = hostAddress()
	if home, err := os.UserHomeDir(); err == nil {
		d.DefaultDir = filepath.Join(home, "picket-cluster")
	}
	path := h.configFile
	if path == "" {
		if _, err := os.Stat(DefaultBackendConfigFile); err == nil {
			path = DefaultBackendConfigFile
		}
	}
	if path != "" {
		if cfg, err := loadBackendConfig(quietEnv(h.env, nil), nil, path); err != nil {
			d.Notes = append(d.Notes, fmt.Sprintf("%s: %v", path, err))
		} else {
			d.ConfigFile, d.NodeName, d.StateDir = path, cfg.EtcdName, cfg.StateDir
			data := filepath.Join(cfg.StateDir, "etcd")
			d.HasData = etcdx.HasData(data)
			if _, held, err := etcdx.LockHolder(data); err == nil {
				d.ServerRunning = held
			}
			if d.HasData && !d.ServerRunning {
				d.Notes = append(d.Notes, "this node holds an etcd member but its server is not running: start it (systemctl start picket)")
			}
		}
	}
	if m, err := readManifest(h.sandboxDir); err == nil {
		d.Sandbox = h.sandboxDir
		conn := &tui.Conn{APIByMember: map[string]string{}, ConfigDir: filepath.Join(h.sandboxDir, "cli")}
		for _, n := range m.Nodes {
			conn.APIURLs = append(conn.APIURLs, n.APIURL)
			conn.APIByMember[n.Name] = n.APIURL
		}
		if stored, err := client.Load(conn.ConfigDir); err == nil && stored.AccessToken != "" {
			conn.Session = *stored
			d.Conn = conn
		} else {
			d.Notes = append(d.Notes, "the sandbox's session is missing: log in with PICKET_CONFIG_DIR="+conn.ConfigDir+" picket login")
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		d.Notes = append(d.Notes, err.Error())
	}
	if d.Conn == nil {
		if stored, err := client.Load(h.configDir); err == nil && stored.AccessToken != "" && stored.APIURL != "" {
			d.Conn = &tui.Conn{APIURLs: []string{stored.APIURL}, Session: *stored, ConfigDir: h.configDir}
		}
	}
	return d
}

// hostAddress is this host's first non-loopback IPv4 address, "" when it has none.
func hostAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

// nodeFiles are where one node's files live.
type nodeFiles struct {
	config, certs, state, cache string
}

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, fmt.Sprint(port)) }

// backendYAML is the backend.yml of node n of plan.
func backendYAML(p tui.Plan, n tui.NodePlan, f nodeFiles, initialCluster, state string) string {
	scheme := "http"
	if p.TLS {
		scheme = "https"
	}
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s: %q\n", k, fmt.Sprint(v)) }
	fmt.Fprintf(&b, "# Picket backend configuration of %s, written by picket console.\n", n.Name)
	kv("etcd-name", n.Name)
	kv("state-dir", f.state)
	kv("cache-dir", f.cache)
	kv("api-listen-address", hostPort(n.Address, p.APIPort))
	kv("api-url", scheme+"://"+hostPort(n.Address, p.APIPort))
	kv("agent-host", n.Address)
	fmt.Fprintf(&b, "agent-port: %d\n", p.AgentPort)
	kv("etcd-listen-client-urls", scheme+"://"+hostPort(n.Address, p.ClientPort))
	kv("etcd-advertise-client-urls", scheme+"://"+hostPort(n.Address, p.ClientPort))
	kv("etcd-listen-peer-urls", scheme+"://"+hostPort(n.Address, p.PeerPort))
	kv("etcd-initial-advertise-peer-urls", scheme+"://"+hostPort(n.Address, p.PeerPort))
	kv("etcd-initial-cluster", initialCluster)
	kv("etcd-initial-cluster-state", state)
	kv("etcd-initial-cluster-token", p.Token)
	if p.TLS {
		cert, key, ca := filepath.Join(f.certs, n.Name+".pem"), filepath.Join(f.certs, n.Name+"-key.pem"), filepath.Join(f.certs, "ca.pem")
		kv("cert-file", cert)
		kv("key-file", key)
		kv("trusted-ca-file", ca)
		kv("etcd-cert-file", cert)
		kv("etcd-key-file", key)
		kv("etcd-trusted-ca-file", ca)
		b.WriteString("etcd-client-cert-auth: true\n")
		kv("etcd-peer-cert-file", cert)
		kv("etcd-peer-key-file", key)
		kv("etcd-peer-trusted-ca-file", ca)
		b.WriteString("etcd-peer-client-cert-auth: true\n")
	}
	return b.String()
}

// issueNodeCert signs a certificate for name, valid for address, with the CA in dir.
// A loopback address also gets 127.0.0.1 and localhost: Linux sends from 127.0.0.1 to
// any 127/8 address, and etcd checks a peer's client certificate against the address
// the connection comes from.
func issueNodeCert(dir, name, address string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, caKey, _, err := loadOrCreateCA(dir, 3650)
	if err != nil {
		return err
	}
	hosts := address
	if ip := net.ParseIP(address); ip != nil && ip.IsLoopback() && address != "127.0.0.1" {
		hosts += ",127.0.0.1,localhost"
	}
	n, err := parseCertNode(name + "=" + hosts)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"Picket"}},
		DNSNames:    n.dns,
		IPAddresses: n.ips,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	_, _, err = issue(dir, name, tmpl, ca, caKey, 825*24*time.Hour, false)
	return err
}

// isContextErr reports whether err is a context's own error: cancelled or past its
// deadline.
func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// startBackground starts `picket server -c config` detached from the console (its own
// session, so it outlives it), logging to <state>/server.log.
func startBackground(config, state string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return 0, err
	}
	logPath := serverLogPath(state)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(self, "server", "--config-file", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start picket server -c %s: %w", config, err)
	}
	pid := cmd.Process.Pid
	return pid, cmd.Process.Release()
}

// step reports a step's beginning and end around fn.
func step(progress func(tui.Progress), name, node, detail string, fn func() (string, error)) error {
	progress(tui.Progress{Step: name, Node: node, Detail: detail})
	t := time.Now()
	d, err := fn()
	progress(tui.Progress{Step: name, Node: node, Detail: d, Done: true, Err: err, Took: time.Since(t)})
	return err
}

// Bootstrap implements tui.Host.
func (h *consoleHost) Bootstrap(ctx context.Context, p tui.Plan, progress func(tui.Progress)) (*tui.Bootstrapped, error) {
	dir, err := filepath.Abs(p.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, sandboxFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a cluster (%s): open its dashboard, or choose another directory (or delete it after stopping its servers)", dir, sandboxFile)
	}
	scheme := "http"
	if p.TLS {
		scheme = "https"
	}
	var ic []string
	for _, n := range p.Nodes {
		ic = append(ic, n.Name+"="+scheme+"://"+hostPort(n.Address, p.PeerPort))
	}
	initialCluster := strings.Join(ic, ",")
	certs := filepath.Join(dir, "certs")
	res := &tui.Bootstrapped{AdminUser: "admin", Commands: map[string]string{}}
	man := &manifest{Mode: p.Mode.String(), Created: time.Now().UTC()}
	if p.TLS {
		man.CA = filepath.Join(certs, "ca.pem")
	}

	// Which nodes run here: all of a sandbox, the first of a multi-host cluster.
	local := p.Nodes
	if p.Mode == tui.ModeHosts {
		local = p.Nodes[:1]
	}
	if p.TLS {
		err = step(progress, "certificates", "", "", func() (string, error) {
			for _, n := range p.Nodes {
				if err := issueNodeCert(certs, n.Name, n.Address); err != nil {
					return "", fmt.Errorf("certificate of %s: %w", n.Name, err)
				}
			}
			return fmt.Sprintf("a new CA and %d node certificates in %s", len(p.Nodes), certs), nil
		})
		if err != nil {
			return nil, err
		}
	}
	files := map[string]nodeFiles{}
	err = step(progress, "configurations", "", "", func() (string, error) {
		for _, n := range p.Nodes {
			nd := filepath.Join(dir, n.Name)
			f := nodeFiles{config: filepath.Join(nd, "backend.yml"), certs: certs, state: filepath.Join(nd, "state"), cache: filepath.Join(nd, "cache")}
			isLocal := p.Mode == tui.ModeSandbox || n.Name == p.Nodes[0].Name
			if !isLocal {
				// Another host: the bundle installs under /etc/picket and /var/lib/picket.
				f = nodeFiles{config: "/etc/picket/backend.yml", certs: "/etc/picket/certs", state: "/var/lib/picket", cache: "/var/cache/picket"}
				bundle := filepath.Join(dir, n.Name+".tar.gz")
				yml := backendYAML(p, n, f, initialCluster, "new")
				if err := writeBundle(bundle, yml, certs, n.Name, p.TLS); err != nil {
					return "", fmt.Errorf("bundle of %s: %w", n.Name, err)
				}
				res.Commands[n.Name] = fmt.Sprintf("copy %s there, then: sudo tar -C / -xzf %s.tar.gz && sudo systemctl enable --now picket (or picket server -c /etc/picket/backend.yml)", bundle, n.Name)
				man.Nodes = append(man.Nodes, manifestNode{Name: n.Name, APIURL: scheme + "://" + hostPort(n.Address, p.APIPort)})
				continue
			}
			files[n.Name] = f
			if err := os.MkdirAll(nd, 0o700); err != nil {
				return "", err
			}
			if err := writeFileAtomic(f.config, []byte(backendYAML(p, n, f, initialCluster, "new")), 0o600); err != nil {
				return "", err
			}
			man.Nodes = append(man.Nodes, manifestNode{Name: n.Name, APIURL: scheme + "://" + hostPort(n.Address, p.APIPort), Config: f.config})
		}
		sort.Slice(man.Nodes, func(i, j int) bool { return man.Nodes[i].Name < man.Nodes[j].Name })
		if err := writeManifest(dir, man); err != nil {
			return "", err
		}
		if len(res.Commands) > 0 {
			return fmt.Sprintf("backend.yml for %s in %s; a bundle per other node in %s", p.Nodes[0].Name, filepath.Join(dir, p.Nodes[0].Name), dir), nil
		}
		return fmt.Sprintf("%d backend.yml files under %s", len(p.Nodes), dir), nil
	})
	if err != nil {
		return nil, err
	}
	for _, n := range local {
		f := files[n.Name]
		err := step(progress, "start", n.Name, "", func() (string, error) {
			if addr := hostPort(n.Address, p.APIPort); listening(addr) {
				return "", fmt.Errorf("something already listens on %s: choose other ports or addresses", addr)
			}
			pid, err := startBackground(f.config, f.state)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("picket server pid %d, log %s", pid, serverLogPath(f.state)), nil
		})
		if err != nil {
			return nil, err
		}
	}
	for name, cmd := range res.Commands {
		progress(tui.Progress{Step: "waiting for", Node: name, Detail: cmd})
	}

	var apiURLs []string
	apiByMember := map[string]string{}
	for _, n := range man.Nodes {
		apiURLs = append(apiURLs, n.APIURL)
		apiByMember[n.Name] = n.APIURL
	}
	caFile := ""
	if p.TLS {
		caFile = man.CA
	}
	wait := 90 * time.Second
	if p.Mode == tui.ModeHosts {
		wait = time.Hour
	}
	err = step(progress, "quorum", "", "waiting for every member to be healthy", func() (string, error) {
		return waitHealthy(ctx, apiURLs, caFile, len(p.Nodes), wait, func(s string) {
			progress(tui.Progress{Step: "quorum", Detail: s})
		}, files)
	})
	if err != nil {
		return nil, err
	}
	for name := range res.Commands {
		progress(tui.Progress{Step: "waiting for", Node: name, Done: true, Detail: "started"})
	}
	adminPassword, agentPassword := generatePassword(), generatePassword()
	first := files[local[0].Name]
	err = step(progress, "init", "", "admin user, agent user, default namespace", func() (string, error) {
		ienv := quietEnv(h.env, map[string]string{
			"PICKET_BACKEND_CLUSTER_ADMIN_PASSWORD": adminPassword,
			"PICKET_BACKEND_AGENT_PASSWORD":         agentPassword,
		})
		if err := runInit(ctx, ienv, []string{"--config-file", first.config}); err != nil {
			return "", err
		}
		return "admin user admin, agent user agent, namespace default", nil
	})
	if err != nil {
		return nil, err
	}
	cliDir := filepath.Join(dir, "cli")
	res.Conn = &tui.Conn{APIURLs: apiURLs, APIByMember: apiByMember, Session: client.Config{TrustedCAFile: caFile},
		ConfigDir: cliDir, Username: "admin", Password: adminPassword}
	res.AdminPassword = adminPassword
	res.Notes = append(res.Notes,
		fmt.Sprintf("Agent user agent, password %s (also shown only now).", agentPassword),
		fmt.Sprintf("Files in %s; the console keeps its session in %s.", dir, cliDir),
		fmt.Sprintf("CLI: PICKET_CONFIG_DIR=%s picket cluster health", cliDir),
	)
	return res, nil
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitHealthy polls GET /health (unauthenticated) through any of apiURLs until want
// members are all healthy. It gives up early when a local server has exited, pointing
// at its log.
func waitHealthy(ctx context.Context, apiURLs []string, caFile string, want int, wait time.Duration, report func(string), local map[string]nodeFiles) (string, error) {
	deadline := time.Now().Add(wait)
	last := ""
	// Each URL's client is made once, the first time the loop reaches it.
	clients := make([]*cluster.Client, len(apiURLs))
	for {
		for i, u := range apiURLs {
			if clients[i] == nil {
				c, err := client.New(client.Config{APIURL: u, TrustedCAFile: caFile}, client.Options{})
				if err != nil {
					return "", err
				}
				clients[i] = cluster.New(c)
			}
			hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			hl, err := clients[i].Health(hctx, time.Second)
			cancel()
			if err != nil {
				continue
			}
			healthy := 0
			var names []string
			for _, m := range hl.ClusterHealth {
				if m.Healthy {
					healthy++
					names = append(names, m.Name)
				}
			}
			sort.Strings(names)
			s := fmt.Sprintf("%d of %d members healthy (%s), quorum %d", healthy, want, strings.Join(names, ", "), want/2+1)
			if s != last {
				report(s)
				last = s
			}
			if healthy == want && len(hl.ClusterHealth) == want {
				return s, nil
			}
			break
		}
		for name, f := range local {
			if _, held, err := etcdx.LockHolder(filepath.Join(f.state, "etcd")); err == nil && !held && etcdx.HasData(filepath.Join(f.state, "etcd")) {
				return "", fmt.Errorf("the server of %s stopped: see %s", name, serverLogPath(f.state))
			}
		}
		if time.Now().After(deadline) {
			if last == "" {
				last = "no API answered"
			}
			return "", fmt.Errorf("no quorum within %s (%s): see server.log in each state dir", wait, last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// writeBundle writes a tar.gz that unpacks at / into /etc/picket/backend.yml and
// /etc/picket/certs: everything one node needs.
func writeBundle(path, yml, certs, name string, withTLS bool) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("etc/picket/backend.yml", 0o600, []byte(yml)); err != nil {
		return err
	}
	if withTLS {
		for _, c := range []struct {
			file string
			mode int64
		}{{"ca.pem", 0o644}, {name + ".pem", 0o644}, {name + "-key.pem", 0o600}} {
			data, err := os.ReadFile(filepath.Join(certs, c.file))
			if err != nil {
				return err
			}
			if err := add("etc/picket/certs/"+c.file, c.mode, data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}

// Local implements tui.Host: members of the sandbox, or this host's own node.
func (h *consoleHost) Local(name string) *cluster.Local {
	config := ""
	if m, err := readManifest(h.sandboxDir); err == nil {
		for _, n := range m.Nodes {
			if n.Name == name {
				config = n.Config
			}
		}
	}
	if config == "" && h.configFile != "" {
		config = h.configFile
	}
	if config == "" {
		if _, err := os.Stat(DefaultBackendConfigFile); err == nil {
			config = DefaultBackendConfigFile
		}
	}
	if config == "" {
		return nil
	}
	qenv := quietEnv(h.env, nil)
	cfg, err := loadBackendConfig(qenv, nil, config)
	if err != nil || cfg.EtcdName != name || cfg.NoEmbedEtcd {
		return nil
	}
	return localMember(qenv, cfg, config, "", "")
}

// ReplaceFiles implements tui.Host.
func (h *consoleHost) ReplaceFiles(name string) (string, string) {
	dir := h.configDir
	if _, err := readManifest(h.sandboxDir); err == nil {
		dir = h.sandboxDir
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	return filepath.Join(dir, "replace-"+name+".json"), filepath.Join(dir, "replace-"+name+"-"+stamp+".snapshot")
}

// Join implements tui.Host.
func (h *consoleHost) Join(ctx context.Context, r tui.JoinRequest, progress func(tui.Progress)) (*tui.Joined, error) {
	dir, err := filepath.Abs(r.Dir)
	if err != nil {
		return nil, err
	}
	cl := r.Session
	conn := &tui.Conn{APIURLs: []string{r.APIURL}, Session: client.Config{TrustedCAFile: r.TrustedCAFile}}
	if m, err := readManifest(h.sandboxDir); err == nil && strings.HasPrefix(dir, h.sandboxDir+string(filepath.Separator)) {
		conn.APIURLs, conn.APIByMember = nil, map[string]string{}
		for _, n := range m.Nodes {
			conn.APIURLs = append(conn.APIURLs, n.APIURL)
			conn.APIByMember[n.Name] = n.APIURL
		}
		conn.ConfigDir = filepath.Join(h.sandboxDir, "cli")
		if stored, err := client.Load(conn.ConfigDir); err == nil {
			stored.TrustedCAFile = r.TrustedCAFile
			conn.Session = *stored
		}
	}
	err = step(progress, "connect", "", r.APIURL, func() (string, error) {
		if cl != nil {
			return "with the console's session", nil
		}
		c, err := client.New(client.Config{APIURL: r.APIURL, TrustedCAFile: r.TrustedCAFile}, client.Options{})
		if err != nil {
			return "", err
		}
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := c.Login(lctx, r.Username, r.Password); err != nil {
			return "", err
		}
		cl = cluster.New(c)
		conn.Username, conn.Password = r.Username, r.Password
		return "logged in as " + r.Username, nil
	})
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if strings.HasPrefix(r.APIURL, "https://") {
		scheme = "https"
	}
	peer := scheme + "://" + hostPort(r.Address, r.PeerPort)
	err = step(progress, "cluster", "", "", func() (string, error) {
		ml, err := cl.Members(ctx)
		if err != nil {
			return "", err
		}
		hl, err := cl.Health(ctx, 2*time.Second)
		if err != nil {
			return "", err
		}
		var lines []string
		healthy := 0
		for _, m := range ml.Members {
			state := "unhealthy"
			if mh := hl.Of(m.ID); mh != nil && mh.Healthy {
				state = "healthy"
				healthy++
			}
			if m.IsLearner {
				state += ", learner"
			}
			if m.Name == r.Name {
				return "", fmt.Errorf("the cluster already has a member called %s: choose another name, or replace it from the dashboard", r.Name)
			}
			lines = append(lines, fmt.Sprintf("%s %x %s (%s)", m.Name, m.ID, strings.Join(m.PeerURLs, ","), state))
		}
		if healthy < len(ml.Members) {
			return "", fmt.Errorf("%d of %d members are unhealthy: make the cluster healthy (or replace members) before adding one", len(ml.Members)-healthy, len(ml.Members))
		}
		return fmt.Sprintf("%d members, all healthy\n%s", len(ml.Members), strings.Join(lines, "\n")), nil
	})
	if err != nil {
		return nil, err
	}
	certs := r.CertsDir
	if scheme == "https" {
		err = step(progress, "certificate", r.Name, "", func() (string, error) {
			if certs == "" {
				return "", errors.New("the cluster uses TLS: give a certificates dir with ca.pem and ca-key.pem, or NAME.pem and NAME-key.pem from picket certs")
			}
			if _, err := os.Stat(filepath.Join(certs, r.Name+".pem")); err == nil {
				return "using " + filepath.Join(certs, r.Name+".pem"), nil
			}
			if _, err := os.Stat(filepath.Join(certs, "ca-key.pem")); err != nil {
				return "", fmt.Errorf("%s has neither %s.pem nor the CA key to issue it", certs, r.Name)
			}
			if err := issueNodeCert(certs, r.Name, r.Address); err != nil {
				return "", err
			}
			return "issued " + filepath.Join(certs, r.Name+".pem"), nil
		})
		if err != nil {
			return nil, err
		}
	}
	var add *cluster.AddResult
	err = step(progress, "add learner", r.Name, peer, func() (string, error) {
		var err error
		if add, err = cl.AddMember(ctx, []string{peer}, true); err != nil {
			return "", err
		}
		return fmt.Sprintf("learner %x", add.Member.ID), nil
	})
	if err != nil {
		return nil, err
	}
	hint := func(err error) error {
		return fmt.Errorf("%w; the learner %x stays in the cluster: run the join again after fixing this, or remove it with `picket cluster member-remove %x`", err, add.Member.ID, add.Member.ID)
	}
	f := nodeFiles{config: filepath.Join(dir, "backend.yml"), certs: certs, state: filepath.Join(dir, "state"), cache: filepath.Join(dir, "cache")}
	apiURL := scheme + "://" + hostPort(r.Address, r.APIPort)
	err = step(progress, "configuration", r.Name, "", func() (string, error) {
		ic, err := add.InitialCluster(r.Name)
		if err != nil {
			return "", err
		}
		p := tui.Plan{APIPort: r.APIPort, AgentPort: r.AgentPort, ClientPort: r.ClientPort, PeerPort: r.PeerPort, TLS: scheme == "https"}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		if etcdx.HasData(filepath.Join(f.state, "etcd")) {
			return "", fmt.Errorf("%s already holds an etcd member: a joining member needs an empty data dir", f.state)
		}
		yml := backendYAML(p, tui.NodePlan{Name: r.Name, Address: r.Address}, f, ic, "existing")
		if err := writeFileAtomic(f.config, []byte(yml), 0o600); err != nil {
			return "", err
		}
		return f.config + " (etcd-initial-cluster-state: existing)", nil
	})
	if err != nil {
		return nil, hint(err)
	}
	err = step(progress, "start", r.Name, "", func() (string, error) {
		pid, err := startBackground(f.config, f.state)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("picket server pid %d, log %s", pid, serverLogPath(f.state)), nil
	})
	if err != nil {
		return nil, hint(err)
	}
	err = step(progress, "wait for start", r.Name, "", func() (string, error) {
		if err := cl.WaitStarted(ctx, add.Member.ID, 2*time.Minute, 300*time.Millisecond); err != nil {
			if isContextErr(err) {
				return "", err
			}
			return "", fmt.Errorf("not started within 2 minutes: see %s", serverLogPath(f.state))
		}
		return "started, catching up as a learner", nil
	})
	if err != nil {
		return nil, hint(err)
	}
	err = step(progress, "promote", r.Name, "", func() (string, error) {
		if err := cl.PromoteWithRetry(ctx, add.Member.ID, 2*time.Minute); err != nil {
			return "", err
		}
		return "voter", nil
	})
	if err != nil {
		return nil, hint(err)
	}
	err = step(progress, "verify", r.Name, "", func() (string, error) {
		if err := cl.WaitHealthy(ctx, add.Member.ID, 30*time.Second, 300*time.Millisecond); err != nil {
			if isContextErr(err) {
				return "", err
			}
			return "", fmt.Errorf("%s is not healthy within 30s", r.Name)
		}
		return "healthy voter", nil
	})
	if err != nil {
		return nil, err
	}
	conn.APIURLs = append(conn.APIURLs, apiURL)
	if conn.APIByMember != nil {
		conn.APIByMember[r.Name] = apiURL
	}
	if m, err := readManifest(h.sandboxDir); err == nil && conn.ConfigDir == filepath.Join(h.sandboxDir, "cli") {
		m.Nodes = append(m.Nodes, manifestNode{Name: r.Name, APIURL: apiURL, Config: f.config})
		_ = writeManifest(h.sandboxDir, m)
	}
	if r.Session != nil && conn.Password == "" && conn.ConfigDir == "" {
		// Keep using the console's session: the dashboard reconnects with it.
		conn.Session = r.Session.API().Config()
	}
	return &tui.Joined{Conn: conn, Name: r.Name, Notes: []string{"Configuration " + f.config + ", log " + serverLogPath(f.state)}}, nil
}
