// Package agent is the client side of the agent protocol, the heart of `picket agent`:
// it holds a WebSocket to one backend (failing over between several with jittered
// exponential backoff), sends keepalives, runs the checks the backend requests and the
// standalone checks of its own configuration, keeps every outgoing event in a durable
// on-disk queue until it is delivered (acknowledged, with Picket backends), and serves
// the local agent API on 127.0.0.1:3031.
//
// # Entity configuration from the backend
//
// The agent's own entity carries the label sensu.io/managed_by: sensu-agent, as Sensu's
// does. An entity_config frame whose entity still carries that label, or that holds no
// system facts (the backend has nothing stored beyond what the agent told it), changes
// nothing. Otherwise the entity is backend-managed (an operator edited it through the
// API, which drops the label) and the agent adopts its subscriptions (plus
// entity:<name>), labels and annotations, and stops reporting the managed_by label. Every
// other field (name, namespace, system facts, user, redact, deregistration, keepalive
// handlers) stays what the agent's configuration says.
//
// # Durable queue
//
// Every event the agent emits except keepalives (check results, standalone check results,
// events posted to the local API) gets a fresh random id and is written to the queue
// directory <cache-dir>/queue before it is sent. See Queue for the file format and the
// fsync policy. A backend that grants acknowledgements (response header Picket-Ack: 1)
// sends an ack frame per event once it has persisted it; only then is the event deleted.
// A plain Sensu backend never acks: the event is deleted once it has been written to the
// socket. Unacknowledged events are sent again, oldest first, after every reconnect and
// after a restart of the agent.
package agent

import (
	"log/slog"
	"time"

	"github.com/picketmon/picket/events"
)

// Defaults of the configuration, the same as Sensu Go's agent.
const (
	DefaultNamespace                = "default"
	DefaultBackendURL               = "ws://127.0.0.1:8081"
	DefaultUser                     = "agent"
	DefaultPassword                 = "P@ssw0rd!"
	DefaultHandshakeTimeout         = 15 * time.Second
	DefaultHeartbeatInterval        = 30 * time.Second
	DefaultHeartbeatTimeout         = 45 * time.Second
	DefaultRetryMin                 = time.Second
	DefaultRetryMax                 = 120 * time.Second
	DefaultRetryMultiplier          = 2.0
	DefaultKeepaliveInterval        = 20 * time.Second
	DefaultKeepaliveWarningTimeout  = 120 * time.Second
	DefaultKeepaliveCriticalTimeout = 0
	DefaultAPIHost                  = "127.0.0.1"
	DefaultAPIPort                  = 3031
	DefaultCacheDir                 = "/var/cache/picket/agent"
	// DefaultQueueMaxEvents bounds the on-disk queue by count.
	DefaultQueueMaxEvents = 10000
	// DefaultQueueMaxBytes bounds the on-disk queue by size.
	DefaultQueueMaxBytes = 256 << 20
)

// ManagedByLabel marks an entity as managed by its agent's configuration.
const (
	ManagedByLabel = "sensu.io/managed_by"
	ManagedByAgent = "sensu-agent"
)

// Config is the configuration of one agent. Zero durations and numbers take the
// defaults above; New does not validate (app's AgentConfig.Validate does).
type Config struct {
	// Name is the agent's entity name; Namespace the namespace it lives in.
	Name      string
	Namespace string
	// Subscriptions are the subscriptions the agent reports; entity:<Name> is always added.
	Subscriptions []string
	Labels        map[string]string
	Annotations   map[string]string

	// User and Password authenticate the agent to the backend.
	User     string
	Password string

	// BackendURLs are ws:// or wss:// URLs, tried in a shuffled order, one per attempt.
	BackendURLs []string

	HandshakeTimeout  time.Duration
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration

	// RetryMin, RetryMax and RetryMultiplier shape the reconnect backoff.
	RetryMin        time.Duration
	RetryMax        time.Duration
	RetryMultiplier float64
	// MaxSessionLength, when positive, ends each session after a random time in
	// [MaxSessionLength/2, MaxSessionLength] so agents spread over all backends.
	MaxSessionLength time.Duration

	KeepaliveInterval        time.Duration
	KeepaliveWarningTimeout  time.Duration
	KeepaliveCriticalTimeout time.Duration
	KeepaliveHandlers        []string

	// TrustedCAFile, InsecureSkipTLSVerify, CertFile and KeyFile configure TLS for wss://.
	TrustedCAFile         string
	InsecureSkipTLSVerify bool
	CertFile              string
	KeyFile               string

	// APIHost and APIPort are where the local agent API listens unless DisableAPI.
	APIHost    string
	APIPort    int
	DisableAPI bool

	// CacheDir holds the durable event queue (CacheDir/queue).
	CacheDir string
	// QueueMaxEvents and QueueMaxBytes bound the queue (defaults DefaultQueueMax*).
	QueueMaxEvents int
	QueueMaxBytes  int64

	// Redact lists label and annotation keys whose values the entity reports as
	// "REDACTED" (default events.DefaultRedact()).
	Redact []string
	// Deregister asks the backend to delete the entity when the agent goes away.
	Deregister            bool
	DeregistrationHandler string

	// Checks are standalone checks, run by the agent itself on their interval or cron.
	Checks []events.CheckConfig

	// System holds the host's facts reported in the entity.
	System events.System
	// Version is the agent's version, in the entity and GET /version.
	Version string
	Logger  *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if len(c.BackendURLs) == 0 {
		c.BackendURLs = []string{DefaultBackendURL}
	}
	if c.User == "" {
		c.User = DefaultUser
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.KeepaliveInterval, DefaultKeepaliveInterval)
	def(&c.KeepaliveWarningTimeout, DefaultKeepaliveWarningTimeout)
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.RetryMultiplier < 1 {
		c.RetryMultiplier = DefaultRetryMultiplier
	}
	if c.APIHost == "" {
		c.APIHost = DefaultAPIHost
	}
	if c.APIPort == 0 {
		c.APIPort = DefaultAPIPort
	}
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir
	}
	if c.QueueMaxEvents <= 0 {
		c.QueueMaxEvents = DefaultQueueMaxEvents
	}
	if c.QueueMaxBytes <= 0 {
		c.QueueMaxBytes = DefaultQueueMaxBytes
	}
	if c.Redact == nil {
		c.Redact = events.DefaultRedact()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
