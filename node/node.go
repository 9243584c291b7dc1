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

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node/api"
)

// Config is a validated node configuration; app builds it from backend.yml and flags.
type Config struct {
	// Name is this server's name (its etcd member name).
	Name     string
	StateDir string
	// APIListenAddress is host:port for the REST API; port 0 picks a free port.
	APIListenAddress string
	// CertFile and KeyFile enable TLS on the API when both are set.
	CertFile, KeyFile string
	// Embed configures the embedded etcd member; nil means use the external etcd of Client.
	Embed *etcdx.EmbedConfig
	// Client configures the connection to an external etcd (when Embed is nil).
	Client  etcdx.ClientConfig
	Version string
	Logger  *slog.Logger
	// AccessTokenTTL and RefreshTokenTTL default to 5 minutes and 12 hours.
	AccessTokenTTL, RefreshTokenTTL time.Duration
}

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
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = 12 * time.Hour
	}
	return &Node{cfg: cfg, log: cfg.Logger, errc: make(chan error, 4), stop: make(chan struct{})}
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
	ln, err := net.Listen("tcp", n.cfg.APIListenAddress)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("api-listen-address %s: %w; stop the other process or set api-listen-address", n.cfg.APIListenAddress, ErrPortInUse)
		}
		return fmt.Errorf("api-listen-address %s: %w", n.cfg.APIListenAddress, err)
	}
	scheme := "http"
	if n.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(n.cfg.CertFile, n.cfg.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("load API certificate %s: %w", n.cfg.CertFile, err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	n.apiURL = scheme + "://" + ln.Addr().String()

	clientCfg := n.cfg.Client
	if n.cfg.Embed != nil {
		start := time.Now()
		n.etcd, err = etcdx.StartEmbedded(ctx, *n.cfg.Embed)
		if err != nil {
			ln.Close()
			return err
		}
		n.log.Info("etcd member ready", "name", n.cfg.Embed.Name, "dir", n.cfg.Embed.Dir, "client_urls", n.etcd.ClientURLs(), "took", time.Since(start).Round(time.Millisecond).String())
		if len(clientCfg.Endpoints) == 0 {
			clientCfg.Endpoints = n.etcd.ClientURLs()
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
		ln.Close()
		return fmt.Errorf("connect to etcd %v: %w", clientCfg.Endpoints, err)
	}
	n.store = etcdx.NewStore(n.client)

	auth, err := api.NewAuth(ctx, n.store, n.cfg.AccessTokenTTL, n.cfg.RefreshTokenTTL)
	if err != nil {
		ln.Close()
		return fmt.Errorf("etcd at %v is not usable: %w", clientCfg.Endpoints, err)
	}
	n.api = api.New(api.Config{Name: n.cfg.Name, Version: n.cfg.Version, Store: n.store, EtcdClient: clientCfg, Auth: auth, Logger: n.log.With("component", "api")})
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
	n.api.SetReady(true)
	return nil
}

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
