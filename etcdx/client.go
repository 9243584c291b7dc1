package etcdx

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	serverrors "go.etcd.io/etcd/server/v3/etcdserver/errors"
)

// IsTimeout reports whether err is etcd's "request timed out": the member did not apply
// a write within its request timeout, as happens when it is overloaded. The write may
// still be applied later. Both forms count: through a client, and from an embedded
// member's own KV server.
func IsTimeout(err error) bool {
	return errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, serverrors.ErrTimeout)
}

// DefaultDialTimeout is the dial timeout of NewClient when ClientConfig.DialTimeout is 0.
const DefaultDialTimeout = 5 * time.Second

// ClientConfig configures a client of the embedded member or of an external etcd.
type ClientConfig struct {
	// Endpoints are etcd client URLs (http://host:port, https://host:port or host:port).
	Endpoints []string
	// CertFile and KeyFile are the client certificate for mutual TLS; TrustedCAFile
	// verifies the server. InsecureSkipVerify disables server verification when TLS is
	// used; it does not turn TLS on by itself.
	CertFile, KeyFile, TrustedCAFile string
	InsecureSkipVerify               bool
	// Username and Password authenticate against etcd's auth, when it is enabled.
	Username, Password string
	// DialTimeout is DefaultDialTimeout when 0.
	DialTimeout time.Duration
	// Logger receives the client's logs one level quieter; nil discards them.
	Logger *slog.Logger
}

// NewClient returns an etcd client. It uses TLS when any TLS file is set or an endpoint is
// https. Like clientv3.New it does not wait for a connection: the first request does, up
// to its context's deadline.
func NewClient(cfg ClientConfig) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd client: no endpoints")
	}
	useTLS := cfg.CertFile != "" || cfg.KeyFile != "" || cfg.TrustedCAFile != ""
	for _, ep := range cfg.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			useTLS = true
		} else if strings.Contains(ep, "://") && !strings.HasPrefix(ep, "http://") {
			return nil, fmt.Errorf("etcd client: endpoint %q must be http://host:port, https://host:port or host:port", ep)
		}
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("etcd client: set both the certificate file and the key file, or neither")
	}
	cc := clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		Username:             cfg.Username,
		Password:             cfg.Password,
		Logger:               zapToSlog(cfg.Logger, nil),
	}
	if cc.DialTimeout <= 0 {
		cc.DialTimeout = DefaultDialTimeout
	}
	if useTLS {
		var tc *tls.Config
		if cfg.CertFile != "" || cfg.TrustedCAFile != "" {
			info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.TrustedCAFile}
			var err error
			if tc, err = info.ClientConfig(); err != nil {
				return nil, fmt.Errorf("etcd client TLS: %w", err)
			}
		} else {
			// No files: verify the server against the system roots.
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tc.InsecureSkipVerify = cfg.InsecureSkipVerify
		cc.TLS = tc
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return c, nil
}
