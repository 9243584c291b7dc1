package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/api"
)

const benchEtcdDescription = `Measures the embedded etcd member a server runs, in four phases over the same
member and the same event-sized values:

  one put per event   every write is its own etcd request: one at a time (each
                      waits for the last), then --writers at once (etcd then
                      gathers concurrent requests into raft batches itself)
  raw grouped puts    plain etcd transactions of --group puts each, --committers at
                      once: the member's limit, with no Picket code in the path
  Picket's grouped    the server's grouped writer (conditional writes gathered into
  writer              transactions) fed by --writers at once

It prints the writes per second and latency of each, how many requests the member timed
out ("request timed out": overloaded; counted, not written, and the phase goes on), the
grouped writer's gain over one put per event, and the events/s target for one server
that follows from the raw limit (20,000/s, or 80 % of the raw grouped rate when that is
lower). The member runs in a throw-away directory (or --dir) with the server's settings,
with the server's history guard, and the history is compacted between phases; nothing
else may use it.

Examples:
  picket bench etcd
  picket bench etcd --duration 20s --client inprocess`

type etcdBench struct {
	timeouts          atomic.Int64 // requests of the running phase the member timed out
	duration          time.Duration
	valueSize         int
	keys, writers     int
	group, committers int
	client, dir       string
	cpuProfile        string
	inProcess         bool

	value    []byte
	keyNames []string
	out      io.Writer
	cleanup  []func()

	etcdClient *clientv3.Client
	// batchTxn is how the grouped writer commits: as a server does (direct calls to the
	// member) with --client inprocess, through etcdClient with --client grpc.
	batchTxn etcdx.TxnFunc
	admin    *clientv3.Client // over gRPC: for the guard and compaction
	results  []phaseResult
}

func runBenchEtcd(ctx context.Context, env *Env, args []string) error {
	fs := newModeFlags("bench etcd", "bench etcd [flags]", benchEtcdDescription, env)
	b := &etcdBench{out: env.Stdout}
	fs.DurationVar(&b.duration, "duration", 10*time.Second, "how long each phase runs")
	fs.IntVar(&b.valueSize, "value-size", 0, "bytes per value (default: the size of a stored event with a full history, compressed as the server stores it: about 430 bytes)")
	fs.IntVar(&b.keys, "keys", 10000, "distinct keys written over and over (one per entity and check)")
	fs.IntVar(&b.writers, "writers", 512, "concurrent writers in the per-event phases: events in flight (a server processes at most 512 at once)")
	fs.IntVar(&b.group, "group", 400, "puts per transaction in the raw grouped phase")
	fs.IntVar(&b.committers, "committers", 6, "concurrent transactions in the raw grouped phase")
	fs.StringVar(&b.client, "client", "grpc", "how the bench reaches the member: grpc (a socket, as the server does) or inprocess (direct calls)")
	fs.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (bench and member) to this file, for 'go tool pprof'")
	fs.StringVar(&b.dir, "dir", "", "etcd data dir to create (default: a temporary one, removed afterwards); must not exist")
	if err := parseModeFlags(fs, args); err != nil {
		return err
	}
	switch {
	case b.duration <= 0:
		return usageErrorf("--duration must be positive")
	case b.keys < 1 || b.writers < 1 || b.group < 1 || b.committers < 1:
		return usageErrorf("--keys, --writers, --group and --committers must be at least 1")
	case b.group > int(etcdx.DefaultMaxTxnOps):
		return usageErrorf("--group %d is over the member's limit of %d operations per transaction", b.group, etcdx.DefaultMaxTxnOps)
	case b.client != "grpc" && b.client != "inprocess":
		return usageErrorf("--client must be grpc or inprocess, not %q", b.client)
	case b.valueSize < 0:
		return usageErrorf("--value-size must not be negative")
	}
	b.inProcess = b.client == "inprocess"
	b.value = benchStoredEvent()
	if b.valueSize > 0 {
		b.value = padValue(b.value, b.valueSize)
	}
	if b.group*(len(b.value)+100) > etcdx.MaxBatchBytes {
		return usageErrorf("--group %d of %d-byte values is over the %d bytes one transaction may carry", b.group, len(b.value), etcdx.MaxBatchBytes)
	}
	b.keyNames = make([]string, b.keys)
	for i := range b.keyNames {
		b.keyNames[i] = fmt.Sprintf("/picket-bench/events/default/bench-%05d/bench-check-%d", i/10, i%10)
	}
	defer func() {
		for i := len(b.cleanup) - 1; i >= 0; i-- {
			b.cleanup[i]()
		}
	}()
	if err := b.start(ctx, env); err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(b.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	fmt.Fprintf(b.out, "picket bench etcd: embedded member in %s, %s client, %d-byte values over %d keys, %s per phase\n",
		b.dir, b.client, len(b.value), b.keys, b.duration)
	for _, ph := range []struct {
		name string
		run  func(context.Context) (phaseResult, error)
	}{
		// In this order: report reads the results by position.
		{"one put per event, one at a time", func(ctx context.Context) (phaseResult, error) { return b.single(ctx, 1) }},
		{fmt.Sprintf("one put per event, %d at once", b.writers), func(ctx context.Context) (phaseResult, error) { return b.single(ctx, b.writers) }},
		{"raw grouped puts", b.rawGrouped},
		{"Picket's grouped writer", b.picketGrouped},
	} {
		fmt.Fprintf(b.out, "  %s …\n", ph.name)
		b.timeouts.Store(0)
		r, err := ph.run(ctx)
		if err != nil {
			return fmt.Errorf("phase %q: %w", ph.name, err)
		}
		r.name, r.timeouts = ph.name, b.timeouts.Load()
		b.results = append(b.results, r)
		if err := b.compactAll(ctx); err != nil {
			return fmt.Errorf("compact after phase %q: %w", ph.name, err)
		}
	}
	b.report()
	return nil
}

// phaseResult is one phase's count and latencies.
type phaseResult struct {
	name          string
	writes, txns  int64
	took          time.Duration
	lat           *latencies
	latencyOfWhat string
	// timeouts counts requests the member timed out ("request timed out": overloaded);
	// their writes are not counted.
	timeouts int64
}

func (r phaseResult) rate() float64 { return float64(r.writes) / r.took.Seconds() }

func (b *etcdBench) start(ctx context.Context, env *Env) error {
	if b.dir == "" {
		tmp, err := os.MkdirTemp("", "picket-bench-etcd-")
		if err != nil {
			return err
		}
		b.cleanup = append(b.cleanup, func() { os.RemoveAll(tmp) })
		b.dir = tmp + "/etcd"
	} else if _, err := os.Stat(b.dir); err == nil {
		return usageErrorf("--dir %s exists; the bench writes a new member there: name a path that does not exist", b.dir)
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	emb, err := etcdx.StartEmbedded(ctx, etcdx.EmbedConfig{
		Name:             "bench",
		Dir:              b.dir,
		ListenClientURLs: []string{"http://127.0.0.1:" + strconv.Itoa(ports[0])},
		ListenPeerURLs:   []string{"http://127.0.0.1:" + strconv.Itoa(ports[1])},
	})
	if err != nil {
		return fmt.Errorf("start the embedded etcd member: %w", err)
	}
	b.cleanup = append(b.cleanup, func() { emb.Close() })
	if b.inProcess {
		b.etcdClient = emb.InProcessClient()
		b.batchTxn = emb.ServerTxn()
	} else {
		b.etcdClient, err = etcdx.NewClient(etcdx.ClientConfig{Endpoints: emb.LocalClientURLs()})
		if err != nil {
			return err
		}
		b.batchTxn = etcdx.ClientTxn(b.etcdClient)
	}
	cl := b.etcdClient
	b.cleanup = append(b.cleanup, func() { cl.Close() })
	// As in a server, a guard keeps the history from filling the quota (these phases
	// write gigabytes), and between phases the history is compacted away.
	b.admin, err = etcdx.NewClient(etcdx.ClientConfig{Endpoints: emb.LocalClientURLs()})
	if err != nil {
		return err
	}
	admin := b.admin
	b.cleanup = append(b.cleanup, func() { admin.Close() })
	gctx, stop := context.WithCancel(context.Background())
	g := &etcdx.HistoryGuard{Client: admin, Endpoint: emb.LocalClientURLs()[0], Threshold: etcdx.GuardThreshold(etcdx.DefaultQuotaBackendBytes)}
	done := make(chan struct{})
	go func() { defer close(done); g.Run(gctx) }()
	b.cleanup = append(b.cleanup, func() { stop(); <-done })
	return nil
}

// compactAll drops the history the last phase wrote.
func (b *etcdBench) compactAll(ctx context.Context) error {
	resp, err := b.admin.Get(ctx, "/picket-bench/", clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	_, err = b.admin.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	return err
}

// benchStoredEvent is a check result as the server stores it after many runs: an
// agent entity, a check with output and a full 21-entry history.
func benchStoredEvent() []byte {
	name := "bench-00042"
	var prev *events.Event
	now := time.Now()
	var ev *events.Event
	for i := 0; i < 25; i++ {
		ev = benchKeepalive(name, benchConfig{namespace: "default", keepalive: 20 * time.Second})
		ev.Check = &events.Check{Status: uint32(i % 3), Executed: now.Unix() + int64(i*10),
			Output: "LOAD OK - total load average: 0.52, 0.61, 0.66|load1=0.520;4.000;8.000;0; load5=0.610;3.000;6.000;0; load15=0.660;2.000;4.000;0;\n"}
		ev.Check.Command, ev.Check.Interval = "check-load -w 4,3,2 -c 8,6,4", 10
		ev.Check.Subscriptions, ev.Check.Handlers = []string{"linux"}, []string{"default"}
		ev.Check.Metadata.Name = "bench-check-3"
		ev.ID = fmt.Sprintf("%032x", i)
		events.UpdateEventState(prev, ev, now.Add(time.Duration(i)*10*time.Second))
		prev = ev
	}
	val, err := api.StoredEvent(ev) // as the server stores it
	if err != nil {
		panic(err) // a fixed event always encodes
	}
	return val
}

// padValue returns a value of exactly n bytes: v cut or padded with spaces.
func padValue(v []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, v)
	for i := len(v); i < n; i++ {
		out[i] = ' '
	}
	return out
}

// runFor calls work from n goroutines until the phase's duration ends, with a progress
// line every second.
func (b *etcdBench) runFor(ctx context.Context, n int, writes *atomic.Int64, work func(ctx context.Context, i int) error) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, b.duration)
	defer cancel()
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := work(ctx, i); err != nil {
					if etcdx.IsTimeout(err) && ctx.Err() == nil {
						// The member is overloaded, which is what a limit looks like:
						// counted and reported, and the phase goes on.
						b.timeouts.Add(1)
						continue
					}
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := int64(0)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			took := time.Since(start)
			if firstErr == nil && errors.Is(ctx.Err(), context.Canceled) && time.Since(start) < b.duration {
				return took, context.Canceled
			}
			return took, firstErr
		case <-tick.C:
			w := writes.Load()
			fmt.Fprintf(b.out, "    %5.1fs  %8d writes  %7d/s\n", time.Since(start).Seconds(), w, w-last)
			last = w
		}
	}
}

func (b *etcdBench) single(ctx context.Context, writers int) (phaseResult, error) {
	var writes atomic.Int64
	lat := &latencies{}
	val := string(b.value)
	took, err := b.runFor(ctx, writers, &writes, func(ctx context.Context, i int) error {
		key := b.keyNames[(i+int(writes.Load())*7)%len(b.keyNames)]
		t := time.Now()
		if _, err := b.etcdClient.Put(ctx, key, val); err != nil {
			return err
		}
		lat.add(time.Since(t))
		writes.Add(1)
		return nil
	})
	return phaseResult{writes: writes.Load(), txns: writes.Load(), took: took, lat: lat, latencyOfWhat: "put"}, err
}

func (b *etcdBench) rawGrouped(ctx context.Context) (phaseResult, error) {
	var writes, txns atomic.Int64
	lat := &latencies{}
	val := string(b.value)
	// Each committer cycles over its own slice of the keys, so no transaction names a
	// key twice.
	per := max(len(b.keyNames)/b.committers, b.group)
	took, err := b.runFor(ctx, b.committers, &writes, func(ctx context.Context, i int) error {
		ops := make([]clientv3.Op, b.group)
		base := int(txns.Load()) * b.group
		for j := range ops {
			ops[j] = clientv3.OpPut(b.keyNames[(i*per+(base+j)%per)%len(b.keyNames)], val)
		}
		t := time.Now()
		if _, err := b.etcdClient.Txn(ctx).Then(ops...).Commit(); err != nil {
			return err
		}
		lat.add(time.Since(t))
		txns.Add(1)
		writes.Add(int64(b.group))
		return nil
	})
	return phaseResult{writes: writes.Load(), txns: txns.Load(), took: took, lat: lat, latencyOfWhat: "transaction"}, err
}

func (b *etcdBench) picketGrouped(ctx context.Context) (phaseResult, error) {
	// The grouped writer with a server's settings for an embedded member.
	batch := etcdx.NewBatcher(b.batchTxn, etcdx.BatchWorkers, etcdx.EmbeddedBatchOps, etcdx.BatchDelay)
	defer batch.Close()
	var writes atomic.Int64
	lat := &latencies{}
	// Each writer owns the keys i, i+writers, …, and keeps their mod revisions as the
	// server's state cache does, so every write is a compare-and-swap that succeeds.
	revs := make([]int64, len(b.keyNames))
	var mu sync.Mutex
	next := make([]int, b.writers)
	took, err := b.runFor(ctx, b.writers, &writes, func(ctx context.Context, i int) error {
		k := i + next[i]*b.writers
		if k >= len(b.keyNames) {
			next[i], k = 0, i%len(b.keyNames)
		}
		next[i]++
		mu.Lock()
		rev := revs[k]
		mu.Unlock()
		if rev == 0 {
			rev = -1 // written by an earlier phase: take it over unconditionally
		}
		t := time.Now()
		res, err := batch.Put(ctx, etcdx.CondPut{Key: b.keyNames[k], Value: b.value, ModRev: rev})
		if err != nil {
			return err
		}
		if !res.Written {
			return fmt.Errorf("conditional write of %s failed: the bench is the only writer", b.keyNames[k])
		}
		lat.add(time.Since(t))
		mu.Lock()
		revs[k] = res.Rev
		mu.Unlock()
		writes.Add(1)
		return nil
	})
	st := batch.Stats()
	return phaseResult{writes: writes.Load(), txns: st.Commits, took: took, lat: lat, latencyOfWhat: "write"}, err
}

func (b *etcdBench) report() {
	fmt.Fprintln(b.out)
	tw := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tWRITES/S\tWRITES/TXN\tP50\tP99\tLATENCY OF\tTIMED OUT")
	for _, r := range b.results {
		perTxn := float64(r.writes) / float64(max(r.txns, 1))
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%s\t%s\tone %s\t%d\n", r.name, r.rate(), perTxn,
			r.lat.pct(0.5).Round(10*time.Microsecond), r.lat.pct(0.99).Round(10*time.Microsecond), r.latencyOfWhat, r.timeouts)
	}
	tw.Flush()
	fmt.Fprintln(b.out)
	serial, single, raw, grouped := b.results[0].rate(), b.results[1].rate(), b.results[2].rate(), b.results[3].rate()
	if serial > 0 && single > 0 {
		fmt.Fprintf(b.out, "Picket's grouped writer: %.1f× one put per event one at a time, %.1f× with %d at once (target: at least 5×)\n",
			grouped/serial, grouped/single, b.writers)
	}
	target := 20000.0
	how := "the raw grouped rate is above 20,000/s, so the target stays 20,000/s"
	if raw < 20000 {
		target = 0.8 * raw
		how = fmt.Sprintf("80 %% of the raw grouped rate of %.0f/s, which is below 20,000/s", raw)
	}
	fmt.Fprintf(b.out, "Events/s target for one server on this machine: %.0f/s (%s)\n", target, how)
}

// startCPUProfile starts a CPU profile written to path ("" for none) and returns what
// stops it.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
