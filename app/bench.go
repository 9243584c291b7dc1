package app

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/events"
)

const benchDescription = `Simulates agents speaking the real agent protocol from one process, to measure a
backend: how fast agents connect, how many events per second it accepts (acknowledged,
so persisted), the latency from send to acknowledgement and, from the server's
/metrics, its own latency from reading an event to committing it, its CPU per event,
and its memory per connected agent (read before and after connecting). While it holds
the agents it prints the rates every --progress; at the end, how busy this machine's
CPUs were and how much of their time the hypervisor gave other guests (steal): on a
shared virtual machine that time is missing from every figure.

A Picket server writes the acks to one agent together, at most every 250 ms
(PICKET_AGENT_ACK_DELAY on the server): send→ack includes that wait, and an event sent
in the hold's last quarter-second may be acknowledged only after the hold, uncounted.
The server's own read→commit latency does not include it.

Modes:
  agents   N simulated agents with keepalives and an optional event rate
  etcd     the embedded etcd member alone: one put per event, raw grouped puts and
           Picket's grouped writer (see 'picket bench etcd --help')

Examples:
  picket bench agents --agents 1000 --password "$AGENT_PASSWORD"
  picket bench agents --agents 20000 --duration 60s --event-rate 2000 \
    --backend-url ws://127.0.0.1:8081 --api-url http://127.0.0.1:8080`

type benchConfig struct {
	backendURL, apiURL, user, password, namespace, prefix string
	agents, connectRate                                   int
	eventRate                                             float64
	keepalive, duration, progress                         time.Duration
	sources, totalAgents, procs                           int
	// checks > 0 creates that many interval checks for checkAgents agents and measures
	// how late their requests arrive against the cadence grid.
	checks, checkAgents      int
	checkInterval            time.Duration
	adminUser, adminPassword string
	sched                    *schedLatency
	// handlers are named in every check result, to measure intake with the pipeline busy.
	handlers []string
	// checksPerAgent is how many checks each agent's results rotate through (0: enough
	// that each check reports at most once a second, as Sensu's shortest interval allows).
	checksPerAgent int
	// cpuProfile, when set, is where the bench's own CPU profile goes.
	cpuProfile string
}

// schedLatency measures check requests' arrival against their grid time.
type schedLatency struct {
	interval time.Duration
	lat      latencies
	early    atomic.Int64
}

func (s *schedLatency) record(payload []byte, recv time.Time) {
	var req agentgw.CheckRequest
	if json.Unmarshal(payload, &req) != nil || req.Config == nil || !strings.HasPrefix(req.Config.Metadata.Name, "bench-sched-") {
		return
	}
	// The grid point this request belongs to is the latest one at or before arrival.
	grid := events.NextRun(req.Config.Metadata.Name, s.interval, recv.Add(-s.interval+time.Nanosecond))
	if grid.After(recv) {
		s.early.Add(1)
		return
	}
	s.lat.add(recv.Sub(grid))
}

func runBench(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && args[0] == "etcd" {
		return runBenchEtcd(ctx, env, args[1:])
	}
	if len(args) == 0 || args[0] != "agents" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintf(env.Stdout, "Usage: picket bench agents|etcd [flags]\n\n%s\n", benchDescription)
			return nil
		}
		return usageErrorf("say what to bench: 'picket bench agents' or 'picket bench etcd' (see 'picket bench --help')")
	}
	fs := newModeFlags("bench agents", "bench agents [flags]", benchDescription, env)
	var c benchConfig
	fs.StringVar(&c.backendURL, "backend-url", "ws://127.0.0.1:8081", "agent gateway URL")
	fs.StringVar(&c.apiURL, "api-url", "http://127.0.0.1:8080", "API URL, for the server's memory from /metrics (empty to skip)")
	fs.StringVar(&c.user, "user", "agent", "agent user")
	fs.StringVar(&c.password, "password", "", "agent password (default: $PICKET_AGENT_PASSWORD)")
	fs.StringVar(&c.namespace, "namespace", "default", "namespace of the simulated agents")
	fs.StringVar(&c.prefix, "name-prefix", "bench-", "prefix of the simulated agents' names")
	fs.IntVar(&c.agents, "agents", 100, "how many agents to simulate")
	fs.IntVar(&c.connectRate, "connect-rate", 2000, "new connections per second")
	fs.Float64Var(&c.eventRate, "event-rate", 0, "check results per second across all agents, each acknowledged (0: keepalives only)")
	fs.DurationVar(&c.keepalive, "keepalive-interval", 20*time.Second, "keepalive interval of each agent")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to hold the agents after they connected")
	fs.DurationVar(&c.progress, "progress", 10*time.Second, "print the send and acknowledge rates this often while holding (0: only the summary)")
	fs.IntVar(&c.totalAgents, "total-agents", 0, "agents connected by all bench processes together, for memory per agent when several run (default --agents)")
	fs.IntVar(&c.checks, "checks", 0, "interval checks to create for the schedule measurement (needs --admin-password)")
	fs.IntVar(&c.checkAgents, "check-agents", 5, "how many of the agents subscribe to the measured checks")
	fs.DurationVar(&c.checkInterval, "check-interval", 10*time.Second, "interval of the measured checks")
	fs.StringVar(&c.adminUser, "admin-user", "admin", "API user that creates and deletes the measured checks")
	fs.StringVar(&c.adminPassword, "admin-password", "", "its password (default: $PICKET_ADMIN_PASSWORD)")
	fs.IntVar(&c.checksPerAgent, "checks-per-agent", 0, "checks each agent's results rotate through (0: enough that each check reports at most once a second)")
	fs.StringSliceVar(&c.handlers, "handlers", nil, "handlers every check result names, e.g. --handlers slow-pipe (default: none)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of this bench process to this file, for 'go tool pprof'")
	fs.IntVar(&c.sources, "source-addresses", 8, "loopback source addresses to spread connections over (127.0.0.10…), for more than ~28,000 ports")
	fs.IntVar(&c.procs, "procs", 0, "processors (GOMAXPROCS) this bench uses (0: one per core, Go's default); fewer leave more of a shared machine to the server")
	if err := parseModeFlags(fs, args[1:]); err != nil {
		return err
	}
	if c.procs < 0 {
		return usageErrorf("--procs must be 0 (one per core) or more (got %d)", c.procs)
	}
	if c.progress < 0 {
		return usageErrorf("--progress must be 0 (off) or a duration such as 10s (got %s)", c.progress)
	}
	if c.procs > 0 {
		// Restored on return: the bench may run inside a test binary.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(c.procs))
	}
	if c.password == "" {
		c.password = env.Getenv("PICKET_AGENT_PASSWORD")
	}
	if c.password == "" {
		return usageErrorf("--password is required (or set PICKET_AGENT_PASSWORD)")
	}
	if c.adminPassword == "" {
		c.adminPassword = env.Getenv("PICKET_ADMIN_PASSWORD")
	}
	if c.checks > 0 && (c.adminPassword == "" || c.apiURL == "") {
		return usageErrorf("--checks needs --api-url and --admin-password (or PICKET_ADMIN_PASSWORD) to create the checks")
	}
	if c.agents < 1 || c.connectRate < 1 {
		return usageErrorf("--agents and --connect-rate must be at least 1")
	}
	if c.checksPerAgent < 0 {
		return usageErrorf("--checks-per-agent must be 0 (automatic) or more (got %d)", c.checksPerAgent)
	}
	if c.checksPerAgent == 0 {
		c.checksPerAgent = autoChecksPerAgent(c.eventRate, c.agents)
	}
	raiseFileLimit()
	stopProfile, err := startCPUProfile(c.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	return benchAgents(ctx, env, c)
}

// raiseFileLimit lifts the soft (and, for root, the hard) open-file limit, since every
// simulated agent holds a socket.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	want := uint64(1 << 20)
	if l.Max < want {
		nl := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl) == nil {
			return
		}
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// latencies collects durations for percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	return l.d[int(float64(len(l.d)-1)*p)]
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// benchSendQueue is how many events a simulated agent holds while its socket is busy;
// beyond that it skips events (counted) instead of queueing without bound.
const benchSendQueue = 64

type benchAgent struct {
	name         string
	entityJSON   []byte
	handlersJSON []byte
	conn         *benchConn
	// ready is set once conn and sendq are: the generator and the closing at the end
	// read them only then (a dial may still be under way when the bench gives up waiting).
	ready atomic.Bool
	// gone is set when the connection ended before the bench did: the generator then
	// sends this agent nothing more.
	gone    atomic.Bool
	sendq   chan []byte
	mu      sync.Mutex
	pending map[string]time.Time
}

func benchAgents(ctx context.Context, env *Env, c benchConfig) error {
	if c.checks > 0 {
		c.sched = &schedLatency{interval: c.checkInterval}
	}
	memBefore, memErr := serverMemory(c.apiURL)
	fmt.Fprintf(env.Stdout, "picket bench agents: %d agents → %s, connect rate %d/s, keepalive %s, event rate %.0f/s, hold %s, %d processor(s)\n",
		c.agents, c.backendURL, c.connectRate, c.keepalive, c.eventRate, c.duration, runtime.GOMAXPROCS(0))
	if c.eventRate > 0 {
		fmt.Fprintf(env.Stdout, "each agent's results rotate through %d check(s): each check reports every %s\n",
			c.checksPerAgent, checkPeriod(c).Round(time.Millisecond))
	}

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.password))
	var handshake, ackLat latencies
	var connected, failed, lost, acked, sent, backlog atomic.Int64
	var firstErr atomic.Value
	agents := make([]*benchAgent, c.agents)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup

	dialers := make([]*net.Dialer, c.sources)
	for i := range dialers {
		dialers[i] = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}, Timeout: 15 * time.Second}
	}

	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(c.connectRate))
	lastReport := time.Now()
	for i := 0; i < c.agents; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		a := &benchAgent{name: fmt.Sprintf("%s%05d", c.prefix, i), pending: map[string]time.Time{}}
		agents[i] = a
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			h := http.Header{}
			h.Set(agentgw.HeaderAgentName, a.name)
			h.Set(agentgw.HeaderNamespace, c.namespace)
			subs := "bench"
			if i < c.checkAgents {
				subs += ",bench-sched"
			}
			h.Set(agentgw.HeaderSubscriptions, subs)
			h.Set(agentgw.HeaderUser, c.user)
			h.Set("Authorization", auth)
			h.Set(agentgw.AckHeader, "1")
			dctx, cancel := context.WithTimeout(runCtx, 30*time.Second)
			t0 := time.Now()
			conn, err := benchDial(dctx, c.backendURL, h, dialers[i%len(dialers)])
			cancel()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			handshake.add(time.Since(t0))
			a.conn = conn
			a.sendq = make(chan []byte, benchSendQueue)
			a.ready.Store(true)
			connected.Add(1)
			benchSession(runCtx, a, c, &acked, &lost, &ackLat)
		}(i)
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			fmt.Fprintf(env.Stdout, "  … %d connected, %d failed after %s\n", connected.Load(), failed.Load(), time.Since(start).Round(time.Second))
		}
	}
	tick.Stop()
	for connected.Load()+failed.Load() < int64(c.agents) && time.Since(start) < 5*time.Minute {
		time.Sleep(50 * time.Millisecond)
	}
	connectTime := time.Since(start)
	fmt.Fprintf(env.Stdout, "connected %d of %d agents in %s (handshake p50 %s, p99 %s); %d failed\n",
		connected.Load(), c.agents, connectTime.Round(time.Millisecond), handshake.pct(0.5).Round(time.Microsecond), handshake.pct(0.99).Round(time.Microsecond), failed.Load())
	if e, ok := firstErr.Load().(string); ok {
		fmt.Fprintf(env.Stdout, "first connect error: %s\n", e)
	}

	if c.checks > 0 {
		if err := benchCreateChecks(ctx, c); err != nil {
			return err
		}
		defer benchDeleteChecks(c)
		fmt.Fprintf(env.Stdout, "created %d checks every %s for %d agents\n", c.checks, c.checkInterval, min(c.checkAgents, c.agents))
	}
	// Hold: keepalives run in each session; check results at the event rate.
	holdStart := time.Now()
	ackedBefore := acked.Load()
	// One scrape at each end of the hold: CPU and the commit histogram from the same instant.
	scrape0, cpuErr := serverMetrics(c.apiURL, serverCPUMetric)
	benchCPU0 := processCPU()
	host0, _ := readHostCPU() // zero where unreadable: hostCPUShare then gives no figure
	if c.eventRate > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			benchEvents(runCtx, agents, c, &sent, &backlog)
		}()
	}
	hold := time.NewTimer(c.duration)
	// A line every --progress, so a long hold shows whether the server keeps up all
	// along or falls behind after a while (when etcd starts compacting its history, say).
	var progressC <-chan time.Time
	if c.progress > 0 {
		progress := time.NewTicker(c.progress)
		defer progress.Stop()
		progressC = progress.C
	}
	lastAcked, lastSent, lastAt := ackedBefore, sent.Load(), holdStart
holding:
	for {
		select {
		case <-ctx.Done():
			break holding
		case <-hold.C:
			break holding
		case now := <-progressC:
			line := fmt.Sprintf("  … %s: %d agents connected", now.Sub(holdStart).Round(time.Second), connected.Load()-lost.Load())
			if c.eventRate > 0 {
				a, sn, span := acked.Load(), sent.Load(), now.Sub(lastAt)
				line += fmt.Sprintf("; last %s: sent %.0f/s, acknowledged %.0f/s",
					span.Round(100*time.Millisecond), float64(sn-lastSent)/span.Seconds(), float64(a-lastAcked)/span.Seconds())
				lastAcked, lastSent, lastAt = a, sn, now
			}
			fmt.Fprintln(env.Stdout, line)
		}
	}
	held := time.Since(holdStart)
	ackedN := acked.Load() - ackedBefore
	scrape1, cpuErr2 := serverMetrics(c.apiURL, serverCPUMetric)
	benchCPU1 := processCPU()
	host1, _ := readHostCPU()
	memAfter, memErr2 := serverMemory(c.apiURL)
	stop()
	// In parallel: a close waits up to 5 s for the server's answer, or for a write
	// blocked on a server that stopped reading.
	var closing sync.WaitGroup
	for _, a := range agents {
		if a != nil && a.ready.Load() {
			closing.Add(1)
			go func() {
				defer closing.Done()
				_ = a.conn.Close("bench done")
			}()
		}
	}
	closing.Wait()
	wg.Wait()

	fmt.Fprintf(env.Stdout, "held %d agents for %s\n", connected.Load()-lost.Load(), held.Round(time.Millisecond))
	if n := lost.Load(); n > 0 {
		fmt.Fprintf(env.Stdout, "connections lost before the end: %d of %d (closed by the server or the network; see the server's log); their agents sent nothing more\n", n, connected.Load())
	}
	if c.eventRate > 0 {
		if n := backlog.Load(); n > 0 {
			fmt.Fprintf(env.Stdout, "events not sent: %d (%.0f/s), their agent already had %d waiting to be written: the server did not keep up\n",
				n, float64(n)/held.Seconds(), benchSendQueue)
		}
		fmt.Fprintf(env.Stdout, "events: sent %d, acknowledged %d = %.0f/s; send→ack latency p50 %s, p99 %s, max %s\n",
			sent.Load(), ackedN, float64(ackedN)/held.Seconds(),
			ackLat.pct(0.5).Round(time.Microsecond), ackLat.pct(0.99).Round(time.Microsecond), ackLat.pct(1).Round(time.Microsecond))
		if commit0, commit1 := histogramBuckets(scrape0, commitHistogram), histogramBuckets(scrape1, commitHistogram); commit0 != nil && commit1 != nil {
			fmt.Fprintf(env.Stdout, "server, frame read to commit (%s while holding): p50 %s, p99 %s\n", commitHistogram,
				fmtQuantile(commit0, commit1, 0.5), fmtQuantile(commit0, commit1, 0.99))
		}
	}
	if cpuErr == nil && cpuErr2 == nil {
		used := scrape1[serverCPUMetric] - scrape0[serverCPUMetric]
		perEvent := ""
		if ackedN > 0 {
			perEvent = fmt.Sprintf(" (%.0f µs per acknowledged event)", used/float64(ackedN)*1e6)
		}
		fmt.Fprintf(env.Stdout, "CPU while holding: server %.2f cores%s, this bench %.2f cores\n",
			used/held.Seconds(), perEvent, (benchCPU1-benchCPU0).Seconds()/held.Seconds())
	}
	if busy, steal, ok := hostCPUShare(host0, host1); ok {
		fmt.Fprintf(env.Stdout, "this machine while holding: CPUs %.0f %% busy, and %.1f %% of their time taken by the hypervisor for other guests (steal)\n",
			busy, steal)
	}
	if c.sched != nil {
		fmt.Fprintf(env.Stdout, "check requests: %d received; delay after grid time p50 %s, p99 %s, max %s\n",
			c.sched.lat.count(), c.sched.lat.pct(0.5).Round(time.Microsecond), c.sched.lat.pct(0.99).Round(time.Microsecond), c.sched.lat.pct(1).Round(time.Microsecond))
	}
	if memErr == nil && memErr2 == nil && connected.Load() > 0 {
		n := float64(connected.Load())
		if c.totalAgents > 0 {
			n = float64(c.totalAgents)
		}
		fmt.Fprintf(env.Stdout, "server memory for %.0f agents: RSS %.1f → %.1f MiB (%.1f KB per agent); Go heap+stacks in use %.1f → %.1f MiB (%.1f KB per agent; live after a GC when the server runs with PICKET_PPROF=1)\n",
			n, float64(memBefore.rss)/(1<<20), float64(memAfter.rss)/(1<<20), float64(memAfter.rss-memBefore.rss)/n/1024,
			float64(memBefore.heap+memBefore.stack)/(1<<20), float64(memAfter.heap+memAfter.stack)/(1<<20),
			float64(memAfter.heap+memAfter.stack-memBefore.heap-memBefore.stack)/n/1024)
	} else if c.apiURL != "" {
		fmt.Fprintf(env.Stdout, "server memory: not measured (%v)\n", errors.Join(memErr, memErr2))
	}
	if connected.Load() == 0 {
		return errors.New("no agent connected")
	}
	return nil
}

// benchSession keeps one agent alive until ctx ends: it reads (acks, requests), answers
// pings and sends keepalives on the interval, with a random phase so they spread evenly.
// It counts the agent's acknowledged events in acked, and in lost its connection if
// that ends first.
func benchSession(ctx context.Context, a *benchAgent, c benchConfig, acked, lost *atomic.Int64, lat *latencies) {
	a.conn.SetReadLimit(agentgw.MaxFrameSize)
	// Reads and writes go without a context (a cancellable one costs a registration per
	// frame, CPU the server should have); closing the connection at the end stops them.
	go func() {
		for {
			b, err := a.conn.Read()
			if err != nil {
				if ctx.Err() == nil {
					a.gone.Store(true)
					lost.Add(1)
				}
				return
			}
			recv := time.Now()
			typ, payload, err := agentgw.Decode(b)
			if err != nil {
				continue
			}
			if typ == agentgw.TypeCheckRequest && c.sched != nil {
				c.sched.record(payload, recv)
				continue
			}
			if typ != agentgw.TypeAck {
				continue
			}
			id, ok := ackID(payload)
			if !ok {
				continue
			}
			a.mu.Lock()
			t0, ok := a.pending[string(id)]
			delete(a.pending, string(id))
			a.mu.Unlock()
			if ok {
				lat.add(time.Since(t0))
				acked.Add(1)
			}
		}
	}()
	// The agent's sender: one frame at a time, as an agent writes its socket.
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case frame := <-a.sendq:
				if a.conn.Write(frame) != nil {
					return
				}
			}
		}
	}()
	ka := benchKeepalive(a.name, c)
	payload, _ := json.Marshal(ka)
	frame := agentgw.Encode(agentgw.TypeKeepalive, payload)
	_ = a.conn.Write(frame)
	phase := time.Duration(randUint64() % uint64(c.keepalive))
	t := time.NewTimer(phase)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.conn.Write(frame); err != nil {
				return
			}
			t.Reset(c.keepalive)
		}
	}
}

// ackID returns the ID of an ack payload as the server writes it, {"id":"…"}, without a
// JSON decoder (the IDs the bench makes are hex); anything else goes through encoding/json.
func ackID(payload []byte) ([]byte, bool) {
	const pre, post = `{"id":"`, `"}`
	if bytes.HasPrefix(payload, []byte(pre)) && bytes.HasSuffix(payload, []byte(post)) {
		if id := payload[len(pre) : len(payload)-len(post)]; !bytes.ContainsAny(id, `"\`) {
			return id, true
		}
	}
	var ack agentgw.Ack
	if json.Unmarshal(payload, &ack) != nil {
		return nil, false
	}
	return []byte(ack.ID), true
}

// autoChecksPerAgent is how many checks an agent needs so that none reports more often
// than once a second at rate results per second across agents. One check reporting many
// times a second is no real workload: Sensu's shortest interval is a second, and a
// server stores one check's results one after the other, each after the last committed.
func autoChecksPerAgent(rate float64, agents int) int {
	return max(1, int(math.Ceil(rate/float64(agents))))
}

// benchTarget is the agent and check of the i-th result: round robin over the agents,
// and for each agent over its checks, so every check of every agent reports equally
// often. status cycles 0, 1, 2 over each check's own results, whatever the counts: each
// result changes its check's state, and a filter on occurrences (the bench's
// "occurrences >= 3") passes none, so the pipeline's work per event is the same at every
// rate and number of agents and checks.
func benchTarget(i, agents, checks int) (agent, check, status int) {
	agent, check = i%agents, (i/agents)%checks
	seq := i / (agents * checks) // how many results this check sent before
	return agent, check, (seq + agent) % 3
}

// checkPeriod is how often each simulated check reports.
func checkPeriod(c benchConfig) time.Duration {
	if c.eventRate <= 0 {
		return 0
	}
	return time.Duration(float64(c.checksPerAgent*c.agents) / c.eventRate * float64(time.Second))
}

func benchKeepalive(name string, c benchConfig) *events.Event {
	ent := &events.Entity{EntityClass: "agent", Subscriptions: []string{"bench", "entity:" + name}}
	ent.Metadata = events.ObjectMeta{Name: name, Namespace: c.namespace}
	ent.System.Hostname, ent.System.OS, ent.System.Arch = name, "linux", "amd64"
	chk := &events.Check{}
	chk.Metadata.Name = "keepalive"
	chk.Interval, chk.Timeout = int64(c.keepalive/time.Second), 120
	return &events.Event{Entity: ent, Check: chk}
}

// benchEvents sends check results round-robin across the agents at the event rate.
func benchEvents(ctx context.Context, agents []*benchAgent, c benchConfig, sent, backlog *atomic.Int64) {
	var live []*benchAgent
	for _, a := range agents {
		if a != nil && a.ready.Load() {
			live = append(live, a)
		}
	}
	if len(live) == 0 {
		return
	}
	// Send in batches every 10 ms so high rates need no per-event timer. What is due is
	// counted from the start, not added per tick: a ticker drops the ticks of a loop
	// that falls behind (a busy machine), and the rate offered would fall short of
	// --event-rate unseen.
	const step = 10 * time.Millisecond
	t := time.NewTicker(step)
	defer t.Stop()
	start := time.Now()
	var done int64 // results due so far, sent or skipped
	// The interval each result declares: the period its check reports at, in whole
	// seconds as Sensu's are.
	interval := max(1, int64(checkPeriod(c).Round(time.Second)/time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := int64(c.eventRate * time.Since(start).Seconds())
		for ; done < due; done++ {
			ai, check, status := benchTarget(int(done), len(live), c.checksPerAgent)
			a := live[ai]
			if a.gone.Load() {
				continue // a real agent without its connection sends nothing either
			}
			// The bench must cost far less CPU than the server it measures: the event
			// is the agent's entity (encoded once) plus a hand-built check.
			if a.entityJSON == nil {
				a.entityJSON, _ = json.Marshal(benchKeepalive(a.name, c).Entity)
				a.handlersJSON, _ = json.Marshal(c.handlers)
			}
			id := hex.EncodeToString(randBytes(16))
			payload := make([]byte, 0, len(a.entityJSON)+256)
			payload = append(payload, `{"entity":`...)
			payload = append(payload, a.entityJSON...)
			// Appended by hand: fmt was a tenth of the bench's CPU.
			payload = append(payload, `,"check":{"metadata":{"name":"bench-check-`...)
			payload = strconv.AppendInt(payload, int64(check), 10)
			payload = append(payload, `"},"command":"bench","interval":`...)
			payload = strconv.AppendInt(payload, interval, 10)
			payload = append(payload, `,"status":`...)
			payload = strconv.AppendInt(payload, int64(status), 10)
			payload = append(payload, `,"output":"bench output `...)
			payload = strconv.AppendInt(payload, done+1, 10)
			payload = append(payload, `","executed":`...)
			payload = strconv.AppendInt(payload, time.Now().Unix(), 10)
			payload = append(payload, `,"handlers":`...)
			payload = append(payload, a.handlersJSON...)
			payload = append(payload, `},"id":"`...)
			payload = append(payload, id...)
			payload = append(payload, `"}`...)
			a.mu.Lock()
			a.pending[id] = time.Now()
			a.mu.Unlock()
			select {
			case a.sendq <- agentgw.Encode(agentgw.TypeEvent, payload):
				sent.Add(1)
			default:
				// The agent's queue is full: the server is not keeping up. Counted, not
				// piled up in goroutines that would take the server's CPU.
				a.mu.Lock()
				delete(a.pending, id)
				a.mu.Unlock()
				backlog.Add(1)
			}
		}
	}
}

// serverMem is what the bench reads of the server's memory.
type serverMem struct {
	rss, heap, stack int64
}

// serverMetrics reads every sample of the server's /metrics, keyed by series as written
// (name, and labels if any), failing when one of names is missing.
func serverMetrics(apiURL string, names ...string) (map[string]float64, error) {
	if apiURL == "" {
		return nil, errors.New("no --api-url")
	}
	resp, err := http.Get(strings.TrimRight(apiURL, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if f, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = f
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return out, fmt.Errorf("%s missing from %s/metrics", n, apiURL)
		}
	}
	return out, nil
}

// serverCPUMetric is the server's CPU seconds used.
const serverCPUMetric = "process_cpu_seconds_total"

// commitHistogram is the server's histogram of read-to-commit times of agent events.
const commitHistogram = "picket_agent_event_commit_seconds"

// histogramBuckets picks the cumulative buckets of histogram name out of a scrape: upper
// bound (+Inf included) → count; nil when the scrape has none.
func histogramBuckets(m map[string]float64, name string) map[float64]float64 {
	prefix := name + `_bucket{le="`
	var out map[float64]float64
	for series, n := range m {
		le, ok := strings.CutPrefix(series, prefix)
		if !ok {
			continue
		}
		if bound, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64); err == nil {
			if out == nil {
				out = map[float64]float64{}
			}
			out[bound] = n
		}
	}
	return out
}

// histQuantile estimates quantile q of the observations between two readings of a
// histogram, interpolating within the bucket as Prometheus's histogram_quantile does.
// It returns the bucket's bounds too; ok is false without observations.
func histQuantile(before, after map[float64]float64, q float64) (est, lo, hi float64, ok bool) {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return 0, 0, 0, false
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range bounds {
		n := after[b] - before[b]
		if n >= rank {
			if math.IsInf(b, 1) {
				return prevBound, prevBound, b, true
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/math.Max(n-prevCount, 1), prevBound, b, true
		}
		prevBound, prevCount = b, n
	}
	return prevBound, prevBound, math.Inf(1), true
}

// fmtQuantile formats histQuantile's estimate with its bucket.
func fmtQuantile(before, after map[float64]float64, q float64) string {
	est, lo, hi, ok := histQuantile(before, after, q)
	if !ok {
		return "no events"
	}
	ms := func(s float64) string { return strconv.FormatFloat(s*1000, 'f', -1, 64) + " ms" }
	if math.IsInf(hi, 1) {
		return "over " + ms(lo)
	}
	return fmt.Sprintf("~%.0f ms (bucket %s–%s)", est*1000, strings.TrimSuffix(ms(lo), " ms"), ms(hi))
}

// hostCPUTimes are this machine's CPU times summed over its CPUs, in clock ticks: all of
// them, idle (with waiting for I/O), and stolen by the hypervisor for other guests.
type hostCPUTimes struct{ total, idle, steal uint64 }

// readHostCPU reads /proc/stat; false where there is none (not Linux) or it is not
// as expected.
func readHostCPU() (hostCPUTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPUTimes{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseHostCPU(line)
}

// parseHostCPU parses /proc/stat's first line: "cpu user nice system idle iowait irq
// softirq steal guest guest_nice" (guest time is counted in user already).
func parseHostCPU(line string) (hostCPUTimes, bool) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return hostCPUTimes{}, false
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return hostCPUTimes{}, false
		}
		v[i] = n
	}
	t := hostCPUTimes{idle: v[3] + v[4], steal: v[7]}
	for _, n := range v {
		t.total += n
	}
	return t, true
}

// hostCPUShare is how busy the CPUs were between two readings, in percent of their time,
// and the share the hypervisor stole; steal does not count as busy. false when a reading
// is missing (zero), no time passed or a counter went backwards (some hypervisors reset
// steal).
func hostCPUShare(a, b hostCPUTimes) (busy, steal float64, ok bool) {
	if a.total == 0 || b.total <= a.total || b.idle < a.idle || b.steal < a.steal {
		return 0, 0, false
	}
	d := float64(b.total - a.total)
	idle, st := float64(b.idle-a.idle), float64(b.steal-a.steal)
	return 100 * max(d-idle-st, 0) / d, 100 * st / d, true
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverMemory reads the resident set size and the Go heap and stack in use from the
// server's /metrics.
func serverMemory(apiURL string) (serverMem, error) {
	if apiURL == "" {
		return serverMem{}, errors.New("no --api-url")
	}
	// A server started with PICKET_PPROF=1 collects garbage on this request, so the
	// heap figure below is the live heap; elsewhere the request fails harmlessly.
	if r, err := http.Get(strings.TrimRight(apiURL, "/") + "/debug/pprof/heap?gc=1"); err == nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	m, err := serverMetrics(apiURL, "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes")
	if err != nil {
		return serverMem{}, err
	}
	return serverMem{rss: int64(m["process_resident_memory_bytes"]), heap: int64(m["go_memstats_heap_inuse_bytes"]),
		stack: int64(m["go_memstats_stack_inuse_bytes"])}, nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randUint64() uint64 {
	b := randBytes(8)
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// benchToken logs the admin in and returns an access token.
func benchToken(c benchConfig) (string, error) {
	req, _ := http.NewRequest("GET", strings.TrimRight(c.apiURL, "/")+"/auth", nil)
	req.SetBasicAuth(c.adminUser, c.adminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&tok) != nil {
		return "", fmt.Errorf("log in as %s at %s: status %d", c.adminUser, c.apiURL, resp.StatusCode)
	}
	return tok.AccessToken, nil
}

func benchCheckURL(c benchConfig, i int) string {
	return fmt.Sprintf("%s/api/core/v2/namespaces/%s/checks/bench-sched-%04d", strings.TrimRight(c.apiURL, "/"), c.namespace, i)
}

func benchCreateChecks(ctx context.Context, c benchConfig) error {
	tok, err := benchToken(c)
	if err != nil {
		return err
	}
	for i := 0; i < c.checks; i++ {
		body := fmt.Sprintf(`{"metadata":{"name":"bench-sched-%04d","namespace":%q},"command":"true","interval":%d,"publish":true,"subscriptions":["bench-sched"]}`,
			i, c.namespace, int(c.checkInterval/time.Second))
		req, _ := http.NewRequestWithContext(ctx, "PUT", benchCheckURL(c, i), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			return fmt.Errorf("create check bench-sched-%04d: status %d", i, resp.StatusCode)
		}
	}
	return nil
}

func benchDeleteChecks(c benchConfig) {
	tok, err := benchToken(c)
	if err != nil {
		return
	}
	for i := 0; i < c.checks; i++ {
		req, _ := http.NewRequest("DELETE", benchCheckURL(c, i), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}
