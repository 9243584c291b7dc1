// Package node is one Picket backend node: it composes the etcd member or client, the
// resource store, the REST API and (later) the agent gateway, elected tasks and the
// event pipeline, and owns their start/stop lifecycle.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node/api"
)

// Config is a validated node configuration; app builds it from backend.yml and flags.
type Config struct {
	// Name is this server's name (its etcd member name).
	Name string
	// APIListenAddress is host:port for the REST API; port 0 picks a free port.
	APIListenAddress string
	// AgentListenAddress is host:port for the agent gateway; "" disables it.
	AgentListenAddress string
	// CertFile and KeyFile enable TLS on the API and the agent gateway when both are set.
	CertFile, KeyFile string
	// Embed configures the embedded etcd member; nil means use the external etcd of Client.
	Embed *etcdx.EmbedConfig
	// Client configures the connection to an external etcd (when Embed is nil).
	Client  etcdx.ClientConfig
	Version string
	Logger  *slog.Logger
	// TaskTTL is how many seconds a dead server keeps its elected tasks (default 2). A dead
	// server's tasks move after about this long, plus an etcd election and one election
	// timeout when it also led raft; etcd raises it to 1.5 election timeouts.
	TaskTTL int
	// AccessTokenTTL and RefreshTokenTTL default to 5 minutes and 12 hours.
	AccessTokenTTL, RefreshTokenTTL time.Duration
	// AgentAckDelay is how long after writing to an agent the gateway waits before
	// writing it more acks (agentgw.Config.AckDelay): 0 means DefaultAgentAckDelay, a
	// negative value no wait.
	AgentAckDelay time.Duration
	// PaceGC raises Go's garbage-collection target (GOGC=200) while the server stores
	// events at a high rate and restores the default when it falls (gcPacer). The
	// setting is the process's, so only the server command sets it, and not when GOGC
	// is set in the environment.
	PaceGC bool
}

// DefaultAgentAckDelay lets an agent that sends more than four events a second get its
// acks several to a write. A small write to a socket costs the server about a sixth of
// an event's CPU on loopback (and the agent a wakeup and a read); an ack only lets the
// agent forget an event it keeps on disk, which 250 ms later costs it nothing.
const DefaultAgentAckDelay = 250 * time.Millisecond

// Node is a running backend node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	etcd    *etcdx.Embedded
	client  *clientv3.Client
	store   *etcdx.Store
	api     *api.Server
	httpSrv *http.Server
	apiURL  string

	batch  *etcdx.Batcher
	states *stateCache
	// fence moves on every write of an event by anyone but the owner of its agent's
	// session; ownerPrefix starts this process's claims on agents (owners.go).
	fence       *etcdx.Fence
	ownerPrefix string
	gateway     *agentgw.Gateway
	pipe        *pipelineState
	agentSrv    *http.Server
	agentURL    string
	// bg runs the background work (elected tasks, request delivery); cancelled first on Close.
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup

	errc      chan error
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// ErrPortInUse is returned by Start when the API address is taken.
var ErrPortInUse = errors.New("address already in use")

// New returns a node that has not started yet.
func New(cfg Config) *Node {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = 5 * time.Minute
	}
	if cfg.TaskTTL == 0 {
		// Short, because every side effect is fenced: a spurious loss costs at most a
		// skipped tick, never a duplicate. `picket server` sets 1.
		cfg.TaskTTL = 2
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = 12 * time.Hour
	}
	if cfg.AgentAckDelay == 0 {
		cfg.AgentAckDelay = DefaultAgentAckDelay
	}
	return &Node{cfg: cfg, log: cfg.Logger, errc: make(chan error, 4), stop: make(chan struct{}),
		fence: etcdx.NewFence(etcdx.Key("fences", "events"), cfg.Name), ownerPrefix: newOwnerPrefix(cfg.Name)}
}

// Start brings the node up in order: the API listener (so a busy port fails at once),
// etcd, the store, then the API. It returns once the node serves, or with the first
// error, in which case everything started so far is stopped again.
func (n *Node) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = n.Close(context.Background())
		}
	}()
	var tlsCfg *tls.Config
	if n.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(n.cfg.CertFile, n.cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("load certificate %s: %w", n.cfg.CertFile, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, scheme, err := listen("api-listen-address", n.cfg.APIListenAddress, tlsCfg, "https", "http", nil)
	if err != nil {
		return err
	}
	n.apiURL = scheme + "://" + ln.Addr().String()
	var agentLn net.Listener
	if n.cfg.AgentListenAddress != "" {
		agentLn, scheme, err = listen("agent-port", n.cfg.AgentListenAddress, tlsCfg, "wss", "ws", agentgw.Listener)
		if err != nil {
			ln.Close()
			return err
		}
		n.agentURL = scheme + "://" + agentLn.Addr().String()
	}
	closeListeners := func() {
		ln.Close()
		if agentLn != nil {
			agentLn.Close()
		}
	}

	clientCfg := n.cfg.Client
	if n.cfg.Embed != nil {
		start := time.Now()
		n.etcd, err = etcdx.StartEmbedded(ctx, *n.cfg.Embed)
		if err != nil {
			closeListeners()
			return err
		}
		n.log.Info("etcd member ready", "name", n.cfg.Embed.Name, "dir", n.cfg.Embed.Dir, "client_urls", n.etcd.ClientURLs(), "took", time.Since(start).Round(time.Millisecond).String())
		if n.etcd.IsLearner() {
			n.log.Info("this member is a learner: waiting to be promoted before serving", "member_id", fmt.Sprintf("%x", n.etcd.MemberID()))
			if err := n.etcd.WaitPromoted(ctx); err != nil {
				closeListeners()
				return err
			}
			n.log.Info("promoted to a voting member")
		}
		if len(clientCfg.Endpoints) == 0 {
			clientCfg.Endpoints = n.etcd.LocalClientURLs()
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			select {
			case err, ok := <-n.etcd.Err():
				if ok && err != nil {
					n.errc <- fmt.Errorf("etcd: %w", err)
				}
			case <-n.stop:
			}
		}()
	}
	n.client, err = etcdx.NewClient(clientCfg)
	if err != nil {
		closeListeners()
		return fmt.Errorf("connect to etcd %v: %w", clientCfg.Endpoints, err)
	}
	n.store = etcdx.NewStore(n.client)
	n.store.FenceWrites(etcdx.Key("events")+"/", n.fence)
	// Grouped event writes: embedded members accept 1024 operations per transaction,
	// an external etcd keeps its default of 128.
	maxOps, txn := etcdx.ExternalBatchOps, etcdx.ClientTxn(n.client)
	if n.etcd != nil {
		// Event writes reach the local member by direct calls rather than gRPC over
		// loopback: a grouped transaction carries hundreds of events, and encoding,
		// sending and decoding it cost more CPU than etcd's apply (see 'picket bench
		// etcd --client'). Everything else keeps the socket client.
		maxOps, txn = etcdx.EmbeddedBatchOps, n.etcd.ServerTxn()
	}
	n.batch = etcdx.NewBatcher(txn, etcdx.BatchWorkers, maxOps, etcdx.BatchDelay)
	n.batch.SetFence(n.fence)
	n.states = newStateCache(200_000)

	// The first reads from etcd: bounded, so a member that never answers is reported
	// instead of hanging the start.
	actx, acancel := context.WithTimeout(ctx, 60*time.Second)
	auth, err := api.NewAuth(actx, n.store, n.cfg.AccessTokenTTL, n.cfg.RefreshTokenTTL)
	acancel()
	if err != nil {
		closeListeners()
		return fmt.Errorf("etcd at %v is not usable: %w", clientCfg.Endpoints, err)
	}
	n.api = api.New(api.Config{
		Name: n.cfg.Name, Version: n.cfg.Version, Store: n.store, EtcdClient: clientCfg, Auth: auth,
		Logger: n.log.With("component", "api"), Tasks: n.taskOwners, Execute: n.executeAdhoc, StoreEvent: n.storeAPIEvent,
	})
	if err := n.startPipeline(ctx); err != nil {
		closeListeners()
		return err
	}
	n.httpSrv = &http.Server{
		Handler:           n.api,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.errc <- fmt.Errorf("api server: %w", err)
		}
	}()
	if agentLn != nil {
		n.startGateway(agentLn)
	}
	bg, cancel := context.WithCancel(context.Background())
	n.bgCancel = cancel
	n.startBackground(bg)
	n.api.SetReady(true)
	if n.gateway != nil {
		n.gateway.SetReady(true)
	}
	return nil
}

// listen opens a listener for a configured address, with TLS when tlsCfg is set, and
// returns the URL scheme to advertise. A busy port fails at once, naming the key. wrap,
// when set, wraps the TCP listener, under TLS.
func listen(key, addr string, tlsCfg *tls.Config, secure, plain string, wrap func(net.Listener) net.Listener) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, "", fmt.Errorf("%s %s: %w; stop the other process or set %s", key, addr, ErrPortInUse, key)
		}
		return nil, "", fmt.Errorf("%s %s: %w", key, addr, err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	if tlsCfg != nil {
		return tls.NewListener(ln, tlsCfg), secure, nil
	}
	return ln, plain, nil
}

func (n *Node) startGateway(ln net.Listener) {
	auth := &agentAuth{store: n.store, ok: map[string]authEntry{}}
	commitSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "picket_agent_event_commit_seconds",
		Help: "From reading an agent's keepalive or event to its grouped commit, when its ack is queued.",
		// 1 ms to 8 s, finer from 100 to 500 ms, with 250 ms, the latency target of
		// BENCHMARKS.md, as a bound: its p99 is then read off, not interpolated across
		// a 128-256 ms bucket.
		Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2, 4, 8},
	})
	n.gateway = agentgw.New(agentgw.Config{
		Name:   n.cfg.Name,
		Logger: n.log.With("component", "agentgw"),
		Hooks: agentgw.Hooks{
			Authenticate:    auth.Authenticate,
			NamespaceExists: n.namespaceExists,
			EntityConfig:    n.entityConfig,
			Connected:       n.claimAgent,
			HandleEvent:     n.handleAgentEvent,
			Disconnected:    n.releaseAgent,
		},
		MaxSessions:   maxAgentSessions(),
		AckDelay:      n.cfg.AgentAckDelay,
		ObserveCommit: func(d time.Duration) { commitSeconds.Observe(d.Seconds()) },
	})
	n.registerGatewayMetrics(commitSeconds)
	n.agentSrv = &http.Server{
		Handler:           n.gateway,
		ConnContext:       agentgw.ConnContext,
		ReadHeaderTimeout: 15 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.agentSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.errc <- fmt.Errorf("agent gateway: %w", err)
		}
	}()
}

// startBackground starts what runs for the node's lifetime: delivery of check requests
// to local agents and the campaigns for the elected tasks.
func (n *Node) startBackground(ctx context.Context) {
	n.bgWG.Add(1)
	go func() {
		defer n.bgWG.Done()
		n.fence.Follow(ctx, n.client, func(err error) { n.log.Info("events fence watch restarts", "err", err) })
	}()
	if n.gateway != nil {
		n.bgWG.Add(1)
		go func() {
			defer n.bgWG.Done()
			n.deliverRequests(ctx)
		}()
	}
	n.startHistoryGuard(ctx)
	if n.cfg.PaceGC {
		p := newGCPacer(func() int64 { return n.batch.Stats().Writes }, func(pct int, rate float64) {
			n.log.Info("garbage collection paced for the event rate", "gogc", pct, "events_per_second", int(rate))
		})
		n.registerGCMetric(p)
		n.bgWG.Add(1)
		go func() {
			defer n.bgWG.Done()
			p.run(ctx)
		}()
	}
	tasks := map[string]func(context.Context, *etcdx.Leadership) error{
		TaskPublisher:        n.runPublisher,
		TaskKeepaliveMonitor: n.runKeepaliveMonitor,
		TaskTTLMonitor:       n.runTTLMonitor,
		TaskAggregatePruner:  n.runAggregatePruner,
	}
	for _, name := range Tasks {
		fn := tasks[name]
		name := name
		n.bgWG.Add(1)
		go func() {
			defer n.bgWG.Done()
			n.store.RunElected(ctx, name, n.cfg.Name, n.cfg.TaskTTL, func(ctx context.Context, l *etcdx.Leadership) error {
				n.log.Info("elected task started", "task", name, "revision", l.Rev)
				err := fn(ctx, l)
				n.log.Info("elected task stopped", "task", name)
				return err
			}, func(err error) { n.log.Warn("elected task", "task", name, "err", err) })
		}()
	}
}

// startHistoryGuard runs an etcdx.HistoryGuard at 40 % of the backend quota: that of the
// embedded member, or etcd's default of 2 GiB for an external cluster (whose quota a
// client cannot read).
func (n *Node) startHistoryGuard(ctx context.Context) {
	quota := int64(2 << 30)
	endpoint := ""
	if n.etcd != nil {
		quota = n.cfg.Embed.QuotaBackendBytes
		if quota <= 0 {
			quota = etcdx.DefaultQuotaBackendBytes
		}
		endpoint = n.etcd.LocalClientURLs()[0]
	} else if len(n.cfg.Client.Endpoints) > 0 {
		endpoint = n.cfg.Client.Endpoints[0]
	}
	g := &etcdx.HistoryGuard{Client: n.client, Endpoint: endpoint, Threshold: etcdx.GuardThreshold(quota),
		Logger: n.log.With("component", "history-guard")}
	n.api.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "picket_etcd_history_compactions_total",
		Help: "Compactions of etcd history by the guard, because the backend in use passed 40 % of the quota.",
	}, func() float64 { return float64(g.Compactions()) }))
	n.bgWG.Add(1)
	go func() {
		defer n.bgWG.Done()
		g.Run(ctx)
	}()
}

// taskOwners reports who owns each elected task, for /info.
func (n *Node) taskOwners() map[string]*string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := map[string]*string{}
	for _, t := range Tasks {
		owner, err := n.store.TaskOwner(ctx, t)
		if err == nil && owner != "" {
			out[t] = &owner
		} else {
			out[t] = nil
		}
	}
	return out
}

// AgentURL is the URL agents connect to ("" when the gateway is off).
func (n *Node) AgentURL() string { return n.agentURL }

// Store is the node's resource store; valid after Start.
func (n *Node) Store() *etcdx.Store { return n.store }

// APIURL is the URL the API actually listens on (useful with port 0).
func (n *Node) APIURL() string { return n.apiURL }

// Err reports fatal errors of a running node (etcd stopped, API listener failed).
func (n *Node) Err() <-chan error { return n.errc }

// Close stops the node in the reverse order of Start: the API (draining requests until
// ctx ends), the etcd client, then the embedded member. It is idempotent.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		var errs []error
		close(n.stop)
		if n.api != nil {
			n.api.SetReady(false)
		}
		// Resign elected tasks first, so another server takes them over at once.
		if n.bgCancel != nil {
			n.bgCancel()
			n.bgWG.Wait()
		}
		if n.gateway != nil {
			if err := n.gateway.Close(ctx); err != nil {
				errs = append(errs, err)
			}
			_ = n.agentSrv.Close()
		}
		if n.batch != nil {
			n.batch.Close() // commits what the closed sessions handed over
		}
		if err := n.closePipeline(ctx); err != nil {
			errs = append(errs, err)
		}
		if n.httpSrv != nil {
			if err := n.httpSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop api: %w", err))
				_ = n.httpSrv.Close()
			}
		}
		if n.client != nil {
			_ = n.client.Close()
		}
		if n.etcd != nil {
			if err := n.etcd.Close(); err != nil {
				errs = append(errs, fmt.Errorf("stop etcd: %w", err))
			}
		}
		n.wg.Wait()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// maxAgentSessions leaves room under the open-file limit for etcd, the API and clients:
// an agent session holds one socket.
func maxAgentSessions() int {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil || l.Cur > 1<<30 {
		return 0
	}
	reserve := uint64(1024)
	if l.Cur <= 2*reserve {
		return int(l.Cur / 2)
	}
	return int(l.Cur - reserve)
}
