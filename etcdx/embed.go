package etcdx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
)

// Defaults applied by StartEmbedded to zero fields of EmbedConfig.
const (
	DefaultName                    = "default"
	DefaultListenClientURL         = "http://127.0.0.1:2379"
	DefaultListenPeerURL           = "http://127.0.0.1:2380"
	DefaultQuotaBackendBytes       = 4 << 30
	DefaultHeartbeatInterval       = 100 * time.Millisecond
	DefaultElectionTimeout         = time.Second
	DefaultAutoCompactionMode      = "periodic"
	DefaultAutoCompactionRetention = "1h"
	// DefaultMaxTxnOps is higher than etcd's 128 so that one transaction can carry a
	// whole `create -f` file or a batch of events.
	DefaultMaxTxnOps = 1024
	// DefaultStartTimeout bounds StartEmbedded when the context has no earlier deadline.
	DefaultStartTimeout = 60 * time.Second
)

// The member's raft snapshot cadence: a snapshot every SnapshotCount applied entries,
// keeping SnapshotCatchUpEntries behind it for a follower that lags (one further behind
// is sent a snapshot of the whole store instead). At a few hundred grouped writes per
// second this keeps several seconds of catch-up and bounds the in-memory raft log to
// about 3,000 entries.
const (
	SnapshotCount          = 2000
	SnapshotCatchUpEntries = 1000
)

// The member's pacing of its disk writes, for grouped event writes on a disk where an
// fsync costs a millisecond or more. Each backend commit, and each batch of a
// compaction, writes and syncs the database while holding the lock the apply loop
// needs. With etcd's defaults (a commit every 100 ms; compaction batches of 1,000
// revisions 10 ms apart), at 20,000 events/s apply waited on commits 10–30 % of the
// time, and on a compaction's batches half of the time for the 30 s it ran, fsyncs
// being half of that. Commits every 500 ms (or every 10,000 writes, etcd's limit) and
// batches of 4,000 revisions 100 ms apart do the same work with a quarter of the syncs
// and leave apply three quarters of the time during a compaction. Writes not yet
// committed to the backend are in the WAL and replayed after a crash, as before.
// Compaction then deletes at most 40,000 revisions/s, and about 27,000/s while 20,000
// events/s are stored (here, about what one server sustains); the guard's compactions
// then run three quarters of the time and keep up. etcd-compaction-sleep-interval
// lowers the rest for clusters that write more. (BENCHMARKS.md, seventh session.)
const (
	BackendBatchInterval           = 500 * time.Millisecond
	CompactionBatchLimit           = 4000
	DefaultCompactionSleepInterval = 100 * time.Millisecond
)

// ErrAddrInUse reports that a listen address of the embedded member is taken.
var ErrAddrInUse = errors.New("address already in use")

// TLSFiles names the PEM files of one side (client or peer) of an etcd member.
type TLSFiles struct {
	CertFile, KeyFile, TrustedCAFile string
	// ClientCertAuth requires connecting clients (or peers) to present a certificate
	// signed by TrustedCAFile.
	ClientCertAuth bool
}

func (t TLSFiles) empty() bool { return t.CertFile == "" && t.KeyFile == "" }

func (t TLSFiles) info() transport.TLSInfo {
	return transport.TLSInfo{
		CertFile:       t.CertFile,
		KeyFile:        t.KeyFile,
		TrustedCAFile:  t.TrustedCAFile,
		ClientCertAuth: t.ClientCertAuth,
	}
}

// EmbedConfig configures the embedded etcd member. Zero fields take the defaults listed
// on each; the membership fields (InitialCluster*) are read by etcd only when Dir holds
// no data yet and are ignored on later starts.
type EmbedConfig struct {
	// Name is the etcd member name, "default" when empty.
	Name string
	// Dir is etcd's data dir (the caller passes <state-dir>/etcd). Its lock file is
	// Dir+".lock".
	Dir string

	// ListenClientURLs defaults to http://127.0.0.1:2379 and ListenPeerURLs to
	// http://127.0.0.1:2380. The advertised URLs default to the listen URLs, with an
	// unspecified host (0.0.0.0, ::) replaced by 127.0.0.1.
	ListenClientURLs, AdvertiseClientURLs, ListenPeerURLs, InitialAdvertisePeerURLs []string

	// InitialCluster defaults to Name=<URL> for each advertised peer URL (a single-node
	// cluster), InitialClusterState to "new" and InitialClusterToken to a random token
	// unique to this cluster.
	InitialCluster, InitialClusterState, InitialClusterToken string

	// QuotaBackendBytes is the backend size at which etcd raises NOSPACE and refuses
	// writes; 4 GiB when 0.
	QuotaBackendBytes int64
	// MaxTxnOps is the most operations in one transaction; DefaultMaxTxnOps when 0.
	MaxTxnOps uint
	// HeartbeatInterval and ElectionTimeout default to 100ms and 1s.
	HeartbeatInterval, ElectionTimeout time.Duration
	// AutoCompactionMode ("periodic" or "revision") and AutoCompactionRetention default
	// to "periodic" and "1h": compaction is on unless set explicitly to retention "0".
	AutoCompactionMode, AutoCompactionRetention string
	// CompactionSleepInterval is the rest between compaction batches of
	// CompactionBatchLimit revisions (DefaultCompactionSleepInterval when 0). It bounds
	// how many revisions a compaction deletes per second, which must stay above the
	// cluster's write rate or the history outgrows the quota.
	CompactionSleepInterval time.Duration
	// PinDatabase keeps the member's database file in memory (locked, up to half of
	// the machine's memory and at most the quota), so that compaction never waits on
	// the disk for old pages while it holds the lock writes need. See dbPin.
	PinDatabase bool

	// ClientTLS is used for https client URLs, PeerTLS for https peer URLs.
	ClientTLS, PeerTLS TLSFiles

	// Logger receives etcd's logs one level quieter (etcd info becomes slog debug;
	// warnings and errors keep their level); nil discards them.
	Logger *slog.Logger

	// StartTimeout bounds StartEmbedded; DefaultStartTimeout when 0.
	StartTimeout time.Duration

	// JoinCheckWait is how long a member with an empty data dir waits for one of the
	// peers named in InitialCluster to answer before it starts (DefaultJoinCheckWait when
	// 0, negative to skip the check). See StartEmbedded.
	JoinCheckWait time.Duration
}

// DefaultJoinCheckWait is how long StartEmbedded asks the peers of a member with an empty
// data dir about their cluster; etcd itself gives up after about a second.
const DefaultJoinCheckWait = 3 * time.Second

// Embedded is a running embedded etcd member.
type Embedded struct {
	etcd       *embed.Etcd
	lock       *dirLock
	clientURLs []string
	localURLs  []string
	log        *slog.Logger
	quiet      *atomic.Bool // set when closing: demotes etcd's shutdown noise

	// stopStreams ends every open gRPC stream (watches, lease keep-alives) when Close
	// starts, so that etcd's graceful stop does not wait for clients to hang up.
	stopStreams context.CancelFunc

	// stopPin ends the pinning of the database (PinDatabase); pinned is closed once it
	// released what it locked.
	stopPin context.CancelFunc
	pinned  chan struct{}

	errc      chan error
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// StartEmbedded starts an etcd member and returns once it is ready to serve clients, or
// fails when ctx ends or cfg.StartTimeout passes first. It locks the data dir first, so a
// second server on the same dir fails at once with an error wrapping ErrLocked, and checks
// the listen addresses, failing with an error wrapping ErrAddrInUse when one is taken.
// Starting again on a dir that holds data keeps the data.
//
// Because etcd reads the membership settings only on the first start, StartEmbedded
// checks them around it. With an empty data dir and peers in InitialCluster it first
// asks those peers about their cluster and refuses (ErrClusterTooOld, ErrNotAMember,
// ErrAlreadyBootstrapped) to join a cluster older than MinClusterVersion, to join one
// that was not told about this member, or to start a wiped member the cluster knows as
// started. With a data dir that holds a one-member cluster while InitialCluster names
// peers, it stops the member again and fails with ErrStaleMember, saying what to do.
func StartEmbedded(ctx context.Context, cfg EmbedConfig) (*Embedded, error) {
	quiet := new(atomic.Bool)
	ecfg, err := cfg.etcdConfig(quiet)
	if err != nil {
		return nil, err
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := checkListeners(ecfg); err != nil {
		lock.unlock()
		return nil, err
	}
	hadData := HasData(cfg.Dir)
	if !hadData && cfg.JoinCheckWait >= 0 {
		wait := cfg.JoinCheckWait
		if wait == 0 {
			wait = DefaultJoinCheckWait
		}
		if err := checkJoin(ctx, ecfg, wait); err != nil {
			lock.unlock()
			return nil, fmt.Errorf("start etcd member %s: %w", ecfg.Name, err)
		}
	}

	streamCtx, stopStreams := context.WithCancel(context.Background())
	ecfg.GRPCAdditionalServerOptions = append(ecfg.GRPCAdditionalServerOptions,
		grpc.ChainStreamInterceptor(stopStreamsInterceptor(streamCtx)))

	start := time.Now()
	ee, err := embed.StartEtcd(ecfg)
	if err != nil {
		stopStreams()
		lock.unlock()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("start etcd: %w; stop the other process or set etcd-listen-client-urls and etcd-listen-peer-urls: %w", err, ErrAddrInUse)
		}
		return nil, fmt.Errorf("start etcd: %w", err)
	}

	e := &Embedded{
		etcd:        ee,
		lock:        lock,
		clientURLs:  urlStrings(ecfg.AdvertiseClientUrls),
		localURLs:   urlStrings(advertiseFrom(ecfg.ListenClientUrls)),
		log:         cfg.Logger,
		quiet:       quiet,
		stopStreams: stopStreams,
		errc:        make(chan error, 1),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}

	campaign := time.NewTicker(20 * time.Millisecond)
	defer campaign.Stop()
	campaigns := 0
wait:
	for {
		select {
		case <-ee.Server.ReadyNotify():
			break wait
		case <-campaign.C:
			if campaigns < 10 && ee.Server.Leader() == 0 && ee.Server.AppliedIndex() > 0 && soleVoter(ee) {
				campaigns++
				startElection(ctx, ee)
			}
			continue
		case err := <-ee.Err():
			e.shutdown()
			return nil, fmt.Errorf("start etcd: %w", err)
		case <-ee.Server.StopNotify():
			e.shutdown()
			return nil, fmt.Errorf("start etcd: server stopped before it was ready (see the etcd log)")
		case <-ctx.Done():
			e.shutdown()
			return nil, fmt.Errorf("start etcd: not ready after %s (a member of a multi-node cluster waits for a quorum of its peers): %w",
				time.Since(start).Round(time.Millisecond), context.Cause(ctx))
		}
	}
	if hadData {
		if err := checkStale(ee, ecfg); err != nil {
			e.shutdown()
			return nil, fmt.Errorf("start etcd member %s: %w", ecfg.Name, err)
		}
	}
	if e.log != nil {
		e.log.Debug("etcd ready", "name", ecfg.Name, "dir", ecfg.Dir,
			"client_urls", e.clientURLs, "took", time.Since(start).Round(time.Millisecond))
	}
	go e.watchErrors()
	if cfg.PinDatabase {
		pinCtx, stopPin := context.WithCancel(context.Background())
		e.stopPin, e.pinned = stopPin, make(chan struct{})
		go func() {
			defer close(e.pinned)
			pinDatabase(pinCtx, ecfg.Dir, pinnable(ecfg.QuotaBackendBytes), e.log)
		}()
	}
	return e, nil
}

// soleVoter reports whether the member is the only voter of its cluster.
func soleVoter(ee *embed.Etcd) bool {
	ms := ee.Server.Cluster().Members()
	return len(ms) == 1 && ms[0].ID == ee.Server.MemberID() && !ms[0].IsLearner
}

// startElection makes a sole voter campaign now instead of after its randomized election
// timeout (up to one election timeout even with etcd's tick advance), which cuts the
// start of a single-node member to a few tens of milliseconds. It sends the member the
// message a leader sends to hand over leadership (MsgTimeoutNow), on which raft campaigns
// at once; for a sole voter that is the election it would hold anyway. Raft refuses while
// the bootstrap configuration is not yet applied, hence the retries by the caller.
func startElection(ctx context.Context, ee *embed.Etcd) {
	// Persist the applied index and its term first: etcd writes them only on its periodic
	// backend commit, and the storage version update that follows the election fails
	// ("missing term information") until they are on disk.
	ee.Server.Backend().ForceCommit()
	id := uint64(ee.Server.MemberID())
	m := &raftpb.Message{Type: raftpb.MsgTimeoutNow.Enum(), To: &id, From: &id}
	_ = ee.Server.Process(ctx, m)
}

// watchErrors reports the first error of the running member on errc. It ends when the
// member fails or Close is called.
func (e *Embedded) watchErrors() {
	defer close(e.done)
	var err error
	select {
	case <-e.stop:
		return
	case rerr, ok := <-e.etcd.Err():
		if !ok {
			rerr = errors.New("etcd stopped")
		}
		err = rerr
	case <-e.etcd.Server.StopNotify():
		err = errors.New("etcd server stopped (see the etcd log)")
	}
	select {
	case <-e.stop:
	default:
		e.errc <- fmt.Errorf("embedded etcd: %w", err)
	}
}

// ClientURLs returns the URLs clients should use to reach this member (its advertised
// client URLs).
func (e *Embedded) ClientURLs() []string {
	return append([]string(nil), e.clientURLs...)
}

// LocalClientURLs are the member's listen client URLs with wildcard hosts made
// loopback: what a client in the same process should dial. Advertised URLs may name
// hosts this machine cannot resolve or reach.
func (e *Embedded) LocalClientURLs() []string {
	return append([]string(nil), e.localURLs...)
}

// Err reports a fatal error of the running member (at most one); it is closed by Close.
func (e *Embedded) Err() <-chan error {
	return e.errc
}

// Close stops the member and releases the data dir. Open client streams are ended
// first, so Close returns within a few seconds. It is safe to call more than once.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		close(e.stop)
		<-e.done
		e.closeErr = e.shutdown()
		close(e.errc)
	})
	return e.closeErr
}

// shutdown stops etcd and releases the lock, in the reverse order of StartEmbedded.
func (e *Embedded) shutdown() error {
	start := time.Now()
	if e.stopPin != nil {
		e.stopPin()
		<-e.pinned
	}
	e.quiet.Store(true)
	e.stopStreams()
	e.etcd.Close()
	err := e.lock.unlock()
	if e.log != nil {
		e.log.Debug("etcd stopped", "took", time.Since(start).Round(time.Millisecond))
	}
	return err
}

// stopStreamsInterceptor gives each gRPC stream a context that also ends with ctx.
func stopStreamsInterceptor(ctx context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		sctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		return handler(srv, &stoppableStream{ServerStream: ss, ctx: sctx})
	}
}

type stoppableStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stoppableStream) Context() context.Context { return s.ctx }

// etcdConfig applies defaults, validates cfg and builds etcd's configuration. It returns
// every problem at once.
func (cfg EmbedConfig) etcdConfig(quiet *atomic.Bool) (*embed.Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	if ec.Name == "" {
		ec.Name = DefaultName
	}
	ec.Dir = cfg.Dir
	if cfg.Dir == "" {
		bad("etcd data dir is empty")
	}

	listenClient := parseURLs("etcd-listen-client-urls", cfg.ListenClientURLs, DefaultListenClientURL, bad)
	listenPeer := parseURLs("etcd-listen-peer-urls", cfg.ListenPeerURLs, DefaultListenPeerURL, bad)
	advClient := parseURLs("etcd-advertise-client-urls", cfg.AdvertiseClientURLs, "", bad)
	advPeer := parseURLs("etcd-initial-advertise-peer-urls", cfg.InitialAdvertisePeerURLs, "", bad)
	if len(advClient) == 0 {
		advClient = advertiseFrom(listenClient)
	}
	if len(advPeer) == 0 {
		advPeer = advertiseFrom(listenPeer)
	}
	for _, u := range append(append([]url.URL(nil), listenClient...), advClient...) {
		if u.Scheme == "https" && cfg.ClientTLS.empty() {
			bad("etcd client URL %s is https but etcd-cert-file and etcd-key-file are not set", u.String())
		}
	}
	for _, u := range append(append([]url.URL(nil), listenPeer...), advPeer...) {
		if u.Scheme == "https" && cfg.PeerTLS.empty() {
			bad("etcd peer URL %s is https but etcd-peer-cert-file and etcd-peer-key-file are not set", u.String())
		}
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = listenClient, advClient
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = listenPeer, advPeer
	ec.ClientTLSInfo = cfg.ClientTLS.info()
	ec.PeerTLSInfo = cfg.PeerTLS.info()

	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	}
	switch cfg.InitialClusterState {
	case "":
		ec.ClusterState = embed.ClusterStateFlagNew
	case embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting:
		ec.ClusterState = cfg.InitialClusterState
	default:
		bad("etcd-initial-cluster-state %q is neither %q nor %q", cfg.InitialClusterState,
			embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting)
	}
	ec.InitialClusterToken = cfg.InitialClusterToken
	if ec.InitialClusterToken == "" {
		ec.InitialClusterToken = randomToken()
	}
	ec.StrictReconfigCheck = true

	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	if ec.QuotaBackendBytes == 0 {
		ec.QuotaBackendBytes = DefaultQuotaBackendBytes
	} else if ec.QuotaBackendBytes < 0 {
		bad("etcd-quota-backend-bytes %d is negative", cfg.QuotaBackendBytes)
	}
	// Grouped event writes make large transactions normal; etcd's 100 ms warning would
	// log (and format) every one of them in full.
	ec.WarningApplyDuration = 2 * time.Second
	ec.WarningUnaryRequestDuration = 2 * time.Second
	ec.MaxTxnOps = cfg.MaxTxnOps
	if ec.MaxTxnOps == 0 {
		ec.MaxTxnOps = DefaultMaxTxnOps
	}
	// etcd keeps the raft log in memory back to its last snapshot plus the catch-up
	// entries (10,000 + 5,000 by default), sized for small puts. A grouped event write
	// is one entry of tens to hundreds of KB, so those defaults hold gigabytes under
	// load: snapshot and trim far more often.
	ec.SnapshotCount = SnapshotCount
	ec.SnapshotCatchUpEntries = SnapshotCatchUpEntries
	ec.BackendBatchInterval = BackendBatchInterval
	ec.CompactionBatchLimit, ec.CompactionSleepInterval = CompactionBatchLimit, cfg.CompactionSleepInterval
	switch {
	case ec.CompactionSleepInterval == 0:
		ec.CompactionSleepInterval = DefaultCompactionSleepInterval
	case ec.CompactionSleepInterval < time.Millisecond || ec.CompactionSleepInterval > time.Second:
		bad("etcd-compaction-sleep-interval %s is not between 1ms and 1s", cfg.CompactionSleepInterval)
	}

	hb, el := cfg.HeartbeatInterval, cfg.ElectionTimeout
	if hb == 0 {
		hb = DefaultHeartbeatInterval
	}
	if el == 0 {
		el = DefaultElectionTimeout
	}
	switch {
	case hb < time.Millisecond:
		bad("etcd-heartbeat-interval %s is below 1ms", hb)
	case el < 5*hb:
		bad("etcd-election-timeout %s should be at least 5 times etcd-heartbeat-interval %s", el, hb)
	}
	ec.TickMs, ec.ElectionMs = uint(hb.Milliseconds()), uint(el.Milliseconds())

	ec.AutoCompactionMode = cfg.AutoCompactionMode
	if ec.AutoCompactionMode == "" {
		ec.AutoCompactionMode = DefaultAutoCompactionMode
	}
	if ec.AutoCompactionMode != embed.CompactorModePeriodic && ec.AutoCompactionMode != embed.CompactorModeRevision {
		bad("etcd-auto-compaction-mode %q is neither %q nor %q", cfg.AutoCompactionMode,
			embed.CompactorModePeriodic, embed.CompactorModeRevision)
	}
	ec.AutoCompactionRetention = cfg.AutoCompactionRetention
	if ec.AutoCompactionRetention == "" {
		ec.AutoCompactionRetention = DefaultAutoCompactionRetention
	}

	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(cfg.Logger, quiet))

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ec, nil
}

// parseURLs parses a list of http(s) URLs for the config key key, using def when the list
// is empty and def is not.
func parseURLs(key string, raw []string, def string, bad func(string, ...any)) []url.URL {
	if len(raw) == 0 && def != "" {
		raw = []string{def}
	}
	var out []url.URL
	for _, s := range raw {
		u, err := url.Parse(s)
		switch {
		case err != nil:
			bad("%s: %v", key, err)
			continue
		case u.Scheme != "http" && u.Scheme != "https":
			bad("%s: %q must be an http:// or https:// URL", key, s)
			continue
		case u.Port() == "" || (u.Path != "" && u.Path != "/"):
			bad("%s: %q must be scheme://host:port", key, s)
			continue
		}
		u.Path = ""
		out = append(out, *u)
	}
	return out
}

// advertiseFrom derives advertised URLs from listen URLs: a listener on all interfaces is
// advertised as loopback, which is right for a single node and must be set explicitly
// for a cluster.
func advertiseFrom(listen []url.URL) []url.URL {
	out := make([]url.URL, len(listen))
	for i, u := range listen {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
			u.Host = net.JoinHostPort("127.0.0.1", u.Port())
		}
		out[i] = u
	}
	return out
}

// checkListeners binds each listen address once, so that a busy port is reported clearly
// (naming the setting to change) before etcd starts.
func checkListeners(ec *embed.Config) error {
	check := func(kind, key string, urls []url.URL) error {
		for _, u := range urls {
			l, err := net.Listen("tcp", u.Host)
			if err == nil {
				l.Close()
				continue
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("etcd %s listener %s: %w; stop the other process or set %s", kind, u.Host, ErrAddrInUse, key)
			}
			return fmt.Errorf("etcd %s listener %s: %w", kind, u.Host, err)
		}
		return nil
	}
	if err := check("client", "etcd-listen-client-urls", ec.ListenClientUrls); err != nil {
		return err
	}
	return check("peer", "etcd-listen-peer-urls", ec.ListenPeerUrls)
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].String()
	}
	return out
}

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return "picket-" + hex.EncodeToString(b)
}

// MemberID is this member's ID in its cluster.
func (e *Embedded) MemberID() uint64 { return uint64(e.etcd.Server.MemberID()) }

// IsLearner reports whether this member is a learner, which serves no client requests.
func (e *Embedded) IsLearner() bool { return e.etcd.Server.IsLearner() }

// WaitPromoted returns once this member is a voter (at once when it is one), or with
// ctx's error. A member added back as a learner by `picket cluster replace` is promoted
// once it has caught up with the leader; until then it cannot serve the node.
func (e *Embedded) WaitPromoted(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for e.IsLearner() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for this learner to be promoted: %w", context.Cause(ctx))
		case <-e.etcd.Server.StopNotify():
			return errors.New("etcd stopped while this member was a learner")
		case <-t.C:
		}
	}
	return nil
}

// InProcessClient returns a client that calls this member's server directly instead of
// through gRPC on a socket: no serialization and no network stack per request. It
// honours neither TLS nor etcd auth (there is no connection to secure); the caller
// closes it before Close.
func (e *Embedded) InProcessClient() *clientv3.Client {
	return v3client.New(e.etcd.Server)
}

// ServerTxn commits transactions on this member by direct calls, through the same
// checks an etcd client's request passes (operation limit, duplicate keys, quota):
// what InProcessClient does for a transaction, without clientv3's conversion of every
// operation. Like InProcessClient it bypasses TLS and etcd auth.
func (e *Embedded) ServerTxn() TxnFunc {
	return v3rpc.NewQuotaKVServer(e.etcd.Server).Txn
}
