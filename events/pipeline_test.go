package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMutators(t *testing.T) {
	ev := testEvent(2)
	js := func(eval string) *mutatorDef {
		return newMutatorDef(&Mutator{Metadata: ObjectMeta{Name: "m"}, Type: MutatorJavaScript, Eval: eval})
	}
	pipe := func(cmd string, timeout int64) *mutatorDef {
		return newMutatorDef(&Mutator{Metadata: ObjectMeta{Name: "m"}, Command: cmd, Timeout: timeout, EnvVars: []string{"GREETING=hi"}})
	}
	cases := []struct {
		name  string
		md    *mutatorDef
		mname string
		want  string
		err   string
	}{
		{"json default", nil, "", "", ""},
		{"json named", nil, "json", "", ""},
		{"only_check_output", nil, "only_check_output", "disk output", ""},
		{"missing", nil, "nope", "", "does not exist"},
		{"javascript string", js(`return event.entity.name + ":" + event.check.status`), "m", "web1:2", ""},
		{"javascript object", js(`return {host: event.entity.name}`), "m", `{"host":"web1"}`, ""},
		{"javascript changes the event", js(`event.check.output = "changed"`), "m", "", ""},
		{"javascript throws", js(`throw new Error("boom")`), "m", "", "boom"},
		{"javascript does not compile", js(`return (`), "m", "", "does not compile"},
		{"pipe stdout only", pipe(`read -r line; echo "$GREETING ${#line}"; echo noise >&2`, 5), "m", "", ""},
		{"pipe fails", pipe(`echo bad >&2; exit 3`, 5), "m", "", "exit status 3: bad"},
		{"pipe times out", pipe(`sleep 10`, 1), "m", "", "timed out"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := c.md.mutate(context.Background(), c.mname, ev, ev.MarshalJSON)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch c.name {
			case "json default", "json named":
				var back Event
				if err := json.Unmarshal(out, &back); err != nil || back.Check.Output != "disk output" {
					t.Fatalf("json mutator: %v %s", err, out)
				}
			case "javascript changes the event":
				var back map[string]any
				if err := json.Unmarshal(out, &back); err != nil || back["check"].(map[string]any)["output"] != "changed" {
					t.Fatalf("mutated event: %v %s", err, out)
				}
				if ev.Check.Output != "disk output" {
					t.Fatal("the script changed the stored event")
				}
			case "pipe stdout only":
				if !strings.HasPrefix(string(out), "hi ") || strings.Contains(string(out), "noise") {
					t.Fatalf("pipe mutator output %q", out)
				}
			default:
				if string(out) != c.want {
					t.Fatalf("output %q, want %q", out, c.want)
				}
			}
		})
	}
}

func TestMutatorValidateCompiles(t *testing.T) {
	m := &Mutator{Metadata: ObjectMeta{Name: "m"}, Type: MutatorJavaScript, Eval: "return ("}
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "eval") {
		t.Fatalf("a script that does not compile passed validation: %v", err)
	}
}

// recorder collects what the pipeline reports.
type recorder struct {
	mu       sync.Mutex
	dropped  map[string]int
	filtered map[string]int
	handled  map[string]int
	ferrs    int
}

func newRecorder() *recorder {
	return &recorder{dropped: map[string]int{}, filtered: map[string]int{}, handled: map[string]int{}}
}

func (r *recorder) observer() Observer {
	return Observer{
		Dropped:     func(reason string) { r.mu.Lock(); r.dropped[reason]++; r.mu.Unlock() },
		Filtered:    func(f string) { r.mu.Lock(); r.filtered[f]++; r.mu.Unlock() },
		FilterError: func(string) { r.mu.Lock(); r.ferrs++; r.mu.Unlock() },
		Handled: func(typ, outcome string, _ time.Duration) {
			r.mu.Lock()
			r.handled[typ+"/"+outcome]++
			r.mu.Unlock()
		},
	}
}

func (r *recorder) get(m map[string]int, k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[k]
}

func handler(name, typ string, mod func(h *Handler)) *Handler {
	h := &Handler{Type: typ}
	h.Metadata = ObjectMeta{Name: name, Namespace: "default"}
	if mod != nil {
		mod(h)
	}
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readLines(path string) []string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestPipelineHandlers(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")

	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	tcpGot := make(chan string, 10)
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			b, _ := bufio.NewReader(c).ReadString(0)
			c.Close()
			tcpGot <- b
		}
	}()
	udpConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udpConn.Close()
	udpGot := make(chan string, 10)
	go func() {
		buf := make([]byte, 64*1024)
		for {
			n, _, err := udpConn.ReadFrom(buf)
			if err != nil {
				return
			}
			udpGot <- string(buf[:n])
		}
	}()
	port := func(a net.Addr) uint32 {
		switch x := a.(type) {
		case *net.TCPAddr:
			return uint32(x.Port)
		case *net.UDPAddr:
			return uint32(x.Port)
		}
		return 0
	}

	defs := NewDefinitions()
	rec := newRecorder()
	for _, r := range []Resource{
		handler("pipe", "pipe", func(h *Handler) {
			h.Command = `printf '%s %s\n' "$LABEL" "$(cat | wc -c)" >> ` + out
			h.EnvVars = []string{"LABEL=seen"}
		}),
		handler("tcp", "tcp", func(h *Handler) {
			h.Socket = &Socket{Host: "127.0.0.1", Port: port(tcpLn.Addr())}
			h.Mutator = MutatorOnlyCheckOutput
		}),
		handler("udp", "udp", func(h *Handler) { h.Socket = &Socket{Host: "127.0.0.1", Port: port(udpConn.LocalAddr())} }),
		handler("set", "set", func(h *Handler) { h.Handlers = []string{"tcp", "inner", "missing"} }),
		handler("inner", "set", func(h *Handler) { h.Handlers = []string{"udp", "tcp"} }),
		handler("loop-a", "set", func(h *Handler) { h.Handlers = []string{"loop-b"} }),
		handler("loop-b", "set", func(h *Handler) { h.Handlers = []string{"loop-a", "pipe"} }),
		handler("incidents", "pipe", func(h *Handler) {
			// Handlers run side by side: build each line apart and append it in one write.
			h.Command = `f=$(mktemp); cat > "$f"; echo >> "$f"; cat "$f" >> ` + out + `.incidents; rm -f "$f"`
			h.Filters = []string{FilterIsIncident, "occ1", "broken"}
		}),
	} {
		if err := defs.Put(r, 1); err != nil {
			t.Fatal(err)
		}
	}
	occ := &EventFilter{Action: FilterAllow, Expressions: []string{"event.check.occurrences == 1"}}
	occ.Metadata = ObjectMeta{Name: "occ1", Namespace: "default"}
	_ = defs.Put(occ, 1)
	broken := &EventFilter{Action: FilterDeny, Expressions: []string{"event.no.such.field"}}
	broken.Metadata = ObjectMeta{Name: "broken", Namespace: "default"}
	_ = defs.Put(broken, 1)

	p := NewPipeline(PipelineConfig{Definitions: defs, Observer: rec.observer()})
	defer p.Close(context.Background())

	t.Run("pipe with env", func(t *testing.T) {
		ev := testEvent(2)
		ev.Check.Handlers = []string{"pipe"}
		p.Submit(ev)
		waitFor(t, "pipe handler", func() bool { return len(readLines(out)) == 1 })
		if l := readLines(out)[0]; !strings.HasPrefix(l, "seen ") || l == "seen 0" {
			t.Fatalf("pipe handler wrote %q", l)
		}
	})
	t.Run("set expands once each, skips missing", func(t *testing.T) {
		ev := testEvent(2)
		ev.Check.Handlers = []string{"set"}
		p.Submit(ev)
		select {
		case got := <-tcpGot:
			if got != "disk output" {
				t.Fatalf("tcp got %q (only_check_output mutator)", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("tcp handler got nothing")
		}
		select {
		case got := <-udpGot:
			var back Event
			if err := json.Unmarshal([]byte(got), &back); err != nil || back.Entity.Metadata.Name != "web1" {
				t.Fatalf("udp got %q: %v", got, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("udp handler got nothing")
		}
		select {
		case got := <-tcpGot:
			t.Fatalf("tcp handler ran twice: %q", got)
		case <-time.After(200 * time.Millisecond):
		}
	})
	t.Run("set loop rejected", func(t *testing.T) {
		hs, err := p.ExpandHandlers("default", []string{"loop-a"})
		if err == nil || !strings.Contains(err.Error(), "loop") {
			t.Fatalf("loop not reported: %v", err)
		}
		if len(hs) != 1 || hs[0].Metadata.Name != "pipe" {
			t.Fatalf("expanded %v", hs)
		}
	})
	t.Run("filters", func(t *testing.T) {
		send := func(status uint32, occurrences int64) {
			ev := testEvent(status, 2)
			ev.Check.Occurrences = occurrences
			ev.Check.Handlers = []string{"incidents"}
			p.Submit(ev)
		}
		send(2, 1) // incident, first occurrence: handled
		send(2, 2) // removed by occ1
		send(0, 5) // resolution, but not occurrence 1: removed by occ1
		send(0, 1) // resolution: handled
		ev := testEvent(0, 0)
		ev.Check.Handlers = []string{"incidents"}
		p.Submit(ev) // OK after OK: removed by is_incident
		waitFor(t, "filtered handling", func() bool {
			return rec.get(rec.filtered, "occ1") == 2 && rec.get(rec.filtered, FilterIsIncident) == 1 && len(readLines(out+".incidents")) == 2
		})
		if rec.ferrs == 0 {
			t.Fatal("the failing deny filter was not reported")
		}
	})
}

func TestPipelineBoundsProcessesAndDrops(t *testing.T) {
	dir := t.TempDir()
	defs := NewDefinitions()
	// Each run leaves a file while it sleeps, so the test can count concurrent runs.
	_ = defs.Put(handler("slow", "pipe", func(h *Handler) {
		h.Command = `f=$(mktemp -p ` + dir + ` running.XXXXXX); sleep 30; rm -f "$f"`
		h.Timeout = 60
	}), 1)
	rec := newRecorder()
	p := NewPipeline(PipelineConfig{Definitions: defs, Workers: 1, QueueSize: 4, MaxProcesses: 2, ProcessQueueSize: 3, Observer: rec.observer()})
	accepted := 0
	for i := 0; i < 50; i++ {
		ev := testEvent(2)
		ev.Check.Handlers = []string{"slow"}
		if p.Submit(ev) {
			accepted++
		}
	}
	count := func() int { m, _ := filepath.Glob(filepath.Join(dir, "running.*")); return len(m) }
	waitFor(t, "two processes", func() bool { return count() == 2 })
	time.Sleep(300 * time.Millisecond)
	if n := count(); n != 2 {
		t.Fatalf("%d processes run at once, want the bound of 2", n)
	}
	waitFor(t, "drops", func() bool {
		return rec.get(rec.dropped, DropQueueFull)+rec.get(rec.dropped, DropPipeQueueFull) > 0
	})
	if accepted == 50 {
		t.Fatal("every event was accepted despite full queues")
	}
	// Submit never blocks, whatever the handlers do.
	start := time.Now()
	for i := 0; i < 1000; i++ {
		p.Submit(testEvent(2))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Submit blocked: 1000 submits took %s", d)
	}
	if p.Stats().Dropped == 0 {
		t.Fatal("Stats does not count drops")
	}
	// Close kills the hung processes when its deadline passes.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close: %v", err)
	}
	waitFor(t, "processes killed", func() bool { return p.Stats().Processes == 0 })
	if p.Submit(testEvent(1)) {
		t.Fatal("a closed pipeline took an event")
	}
}

func TestPipelineTimeoutOutcome(t *testing.T) {
	defs := NewDefinitions()
	_ = defs.Put(handler("hang", "pipe", func(h *Handler) { h.Command = "sleep 20"; h.Timeout = 1 }), 1)
	var timeouts atomic.Int64
	p := NewPipeline(PipelineConfig{Definitions: defs, Observer: Observer{Handled: func(_, o string, d time.Duration) {
		if o == OutcomeTimeout && d < 5*time.Second {
			timeouts.Add(1)
		}
	}}})
	defer p.Close(context.Background())
	ev := testEvent(2)
	ev.Check.Handlers = []string{"hang"}
	p.Submit(ev)
	waitFor(t, "handler timeout", func() bool { return timeouts.Load() == 1 })
}

func TestHandlerNamesMetrics(t *testing.T) {
	ev := testEvent(0)
	ev.Check.Handlers = []string{"a", "b"}
	ev.Metrics = &Metrics{Handlers: []string{"b", "m"}}
	if got := fmt.Sprint(HandlerNames(ev)); got != "[a b m]" {
		t.Fatalf("handler names %s", got)
	}
}

// TestHandlerProblemsWarned: a set loop or a missing handler is logged as a warning, once
// a minute per namespace and problem (every event of the check meets it); a missing
// "keepalive" handler, every agent's default, is not.
func TestHandlerProblemsWarned(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := NewPipeline(PipelineConfig{Definitions: NewDefinitions(), Logger: log})
	defer p.Close(context.Background())
	ev := testEvent(2)
	loop := errors.New("handler set loop: a → b → a; the set is skipped")
	p.warnHandlers("default", ev, loop)
	p.warnHandlers("default", ev, loop)
	p.warnHandlers("default", ev, errors.New("handler mail does not exist in namespace default"))
	p.warnHandlers("prod", ev, loop)
	p.warnHandlers("default", ev, errors.New("handler keepalive does not exist in namespace default"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 warnings (loop, missing mail, loop in prod), got %d:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "level=WARN") || strings.Contains(l, "keepalive") {
			t.Fatalf("unexpected line %q", l)
		}
	}
}
