package tui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/picketmon/picket/node/client"
)

// drive feeds msg to m and runs the commands it returns, one level deep, feeding
// their messages back (ticks excluded, so it ends), like a bubbletea program would.
func drive(t *testing.T, m *Model, msg tea.Msg) {
	t.Helper()
	queue := []tea.Msg{msg}
	for n := 0; len(queue) > 0 && n < 200; n++ {
		msg := queue[0]
		queue = queue[1:]
		_, cmd := m.Update(msg)
		queue = append(queue, run(cmd)...)
	}
}

// run executes cmd and returns its messages, skipping ticks and spinner frames (which
// would wait and re-arm forever) and blocking worker reads once the worker is done.
func run(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	done := make(chan tea.Msg, 1)
	go func() { done <- cmd() }()
	var msg tea.Msg
	select {
	case msg = <-done:
	case <-time.After(200 * time.Millisecond):
		return nil // a tick or a spinner: not needed here
	}
	switch msg := msg.(type) {
	case tea.BatchMsg:
		var out []tea.Msg
		for _, c := range msg {
			out = append(out, run(c)...)
		}
		return out
	case nil, tickMsg, spinner.TickMsg:
		return nil
	}
	return []tea.Msg{msg}
}

func newDriven(t *testing.T, cl *fakeCluster) *Model {
	m := newTestModel(t, cl)
	drive(t, m, tea.WindowSizeMsg{Width: 80, Height: 24})
	drive(t, m, m.Init()())
	return m
}

func TestTransitions(t *testing.T) {
	cl := newFakeCluster()
	m := newDriven(t, cl)
	if m.cur != screenHome || len(m.home.items) != 4 {
		t.Fatalf("start: screen %d, %d items", m.cur, len(m.home.items))
	}
	// Home → sandbox form → back.
	drive(t, m, k("down"))
	drive(t, m, k("enter"))
	if m.cur != screenBootstrap || m.boot.mode != ModeSandbox {
		t.Fatalf("want the sandbox form, got screen %d", m.cur)
	}
	drive(t, m, k("esc"))
	if m.cur != screenHome {
		t.Fatalf("esc: want home, got %d", m.cur)
	}
	// q in a text field types; on home it quits.
	drive(t, m, k("down"))
	drive(t, m, k("down"))
	drive(t, m, k("enter"))
	if m.cur != screenJoin || !m.screen().capturesInput() {
		t.Fatalf("want the join form with a focused field, got %d", m.cur)
	}
	drive(t, m, k("q"))
	if m.quitting || !strings.HasSuffix(m.join.inputs[jAPI].Value(), "q") {
		t.Fatalf("q in a field must be typed, not quit")
	}
	drive(t, m, k("esc"))
	// Home → dashboard.
	m.home.sel = 0
	drive(t, m, k("enter"))
	if m.cur != screenDashboard {
		t.Fatalf("want the dashboard, got %d", m.cur)
	}
	if !strings.Contains(m.View(), "3 healthy") {
		t.Fatalf("dashboard:\n%s", m.View())
	}
	// A member turns unhealthy: the next tick shows it.
	cl.setSick(0xb2, "dial tcp 127.0.0.2:2379: connect: connection refused")
	drive(t, m, tickMsg{gen: m.dash.gen})
	if v := m.View(); !strings.Contains(v, "UNHEALTHY: picket-2") || !strings.Contains(v, "tolerates no more failures") {
		t.Fatalf("unhealthy member not shown:\n%s", v)
	}
	// r on it → confirm; esc → dashboard; r, y → replace → done → dashboard.
	drive(t, m, k("down"))
	drive(t, m, k("r"))
	if m.cur != screenConfirm || m.confirm.member.Name != "picket-2" {
		t.Fatalf("want the confirmation for picket-2, got screen %d", m.cur)
	}
	drive(t, m, k("esc"))
	if m.cur != screenDashboard {
		t.Fatalf("esc from confirm: got %d", m.cur)
	}
	drive(t, m, k("r"))
	drive(t, m, k("y"))
	if m.cur != screenReplace {
		t.Fatalf("want the replace screen, got %d", m.cur)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.repl.running && time.Now().Before(deadline) {
		drive(t, m, run(m.repl.wk.next())[0])
	}
	if m.repl.err != nil || m.repl.res == nil || m.repl.res.NewID != 0xd4 {
		t.Fatalf("replace: err %v res %+v", m.repl.err, m.repl.res)
	}
	if !strings.Contains(m.View(), "Replaced picket-2") {
		t.Fatalf("replace done:\n%s", m.View())
	}
	drive(t, m, k("esc"))
	if m.cur != screenDashboard {
		t.Fatalf("after replace: got %d", m.cur)
	}
	drive(t, m, tickMsg{gen: m.dash.gen})
	if v := m.View(); strings.Contains(v, "UNHEALTHY") || !strings.Contains(v, "3 healthy") {
		t.Fatalf("after replace:\n%s", v)
	}
	// h goes home and stops the refresh loop: its ticks are ignored.
	gen := m.dash.gen
	drive(t, m, k("h"))
	if m.cur != screenHome || m.dash.running {
		t.Fatalf("h: screen %d running %v", m.cur, m.dash.running)
	}
	before := cl.calls["health"]
	drive(t, m, tickMsg{gen: gen})
	if cl.calls["health"] != before {
		t.Fatal("a tick of a stopped dashboard fetched")
	}
}

func TestPasswordShownOnce(t *testing.T) {
	m := newDriven(t, newFakeCluster())
	drive(t, m, k("down"))
	drive(t, m, k("enter"))
	drive(t, m, k("shift+tab"))
	drive(t, m, k("enter"))
	if m.cur != screenBootProgress {
		t.Fatalf("want the progress screen, got %d", m.cur)
	}
	for m.bootProg.running {
		drive(t, m, run(m.bootProg.wk.next())[0])
	}
	if !strings.Contains(m.View(), "s3cretPassw0rdXYZabc") {
		t.Fatalf("password not shown:\n%s", m.View())
	}
	drive(t, m, k("enter"))
	if m.cur != screenDashboard {
		t.Fatalf("enter: want the dashboard, got %d", m.cur)
	}
	if strings.Contains(m.bootProg.view(), "s3cretPassw0rdXYZabc") {
		t.Fatal("the password is shown again after leaving the screen")
	}
}

func TestFetchNotDuplicated(t *testing.T) {
	d := newDashboard(context.Background(), newFakeCluster(), time.Now, time.Second)
	if d.fetch(partHealth) == nil {
		t.Fatal("first fetch must start")
	}
	if d.fetch(partHealth) != nil {
		t.Fatal("a fetch still in flight must not start again")
	}
	d.update(fetchedMsg{gen: d.gen, part: partHealth, err: context.DeadlineExceeded})
	if d.fetch(partHealth) == nil {
		t.Fatal("after an answer (even a timeout) the next fetch must start")
	}
}

func TestSlowClusterDoesNotBlockUpdate(t *testing.T) {
	// Update returns at once even when the cluster never answers: the fetch runs in a
	// command, and the view says the data is missing instead of hanging.
	d := newDashboard(context.Background(), newFakeCluster(), time.Now, time.Second)
	d.setSize(80, 24)
	t0 := time.Now()
	d.start()
	d.update(tickMsg{gen: d.gen})
	if time.Since(t0) > 50*time.Millisecond {
		t.Fatal("Update blocked")
	}
	if !strings.Contains(d.view(), "waiting for the member list") {
		t.Fatalf("view:\n%s", d.view())
	}
	d.update(fetchedMsg{gen: d.gen, part: partHealth, err: context.DeadlineExceeded})
	if !strings.Contains(d.view(), "health: context deadline exceeded") {
		t.Fatalf("a timeout must show:\n%s", d.view())
	}
}

func TestQuorum(t *testing.T) {
	row := func(h string, learner bool) memberRow { return memberRow{Health: h, Learner: learner} }
	for _, tc := range []struct {
		rows            []memberRow
		need, tolerates int
		lost            bool
	}{
		{[]memberRow{row("healthy", false)}, 1, 0, false},
		{[]memberRow{row("healthy", false), row("healthy", false), row("healthy", false)}, 2, 1, false},
		{[]memberRow{row("healthy", false), row("unhealthy", false), row("healthy", false)}, 2, 0, false},
		{[]memberRow{row("healthy", false), row("unhealthy", false), row("unknown", false)}, 2, -1, true},
		{[]memberRow{row("healthy", false), row("healthy", false), row("healthy", false), row("healthy", true)}, 2, 1, false},
		{[]memberRow{row("healthy", false), row("healthy", false), row("healthy", false), row("healthy", false), row("healthy", false)}, 3, 2, false},
	} {
		q := quorumOf(tc.rows)
		if q.need != tc.need || q.tolerates != tc.tolerates || q.lost != tc.lost {
			t.Errorf("%+v: got need %d tolerates %d lost %v", tc.rows, q.need, q.tolerates, q.lost)
		}
	}
}

func TestBootFormValidation(t *testing.T) {
	f := newBootForm(&Detection{DefaultSandboxDir: "/tmp/s", Token: "t"}, ModeSandbox)
	f.addrs[1].SetValue("10.0.0.2")
	f.names[2].SetValue("picket-1")
	f.ports.SetValue("8080 8081 2379")
	_, err := f.plan()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"node 2: a sandbox member needs a 127.x.y.z address", "node 3: name picket-1 is used twice", "ports: give four"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors %q lack %q", err, want)
		}
	}
	// The following addresses follow the first, unless typed.
	f = newBootForm(&Detection{DefaultSandboxDir: "/tmp/s", Token: "t"}, ModeSandbox)
	f.followFirst("127.0.9.1")
	if f.addrs[2].Value() != "127.0.9.3" {
		t.Fatalf("address 3: %s", f.addrs[2].Value())
	}
	p, err := f.plan()
	if err != nil || len(p.Nodes) != 3 || p.APIPort != 8080 || p.PeerPort != 2380 {
		t.Fatalf("plan %+v, %v", p, err)
	}
}

func TestFailover(t *testing.T) {
	var hits []string
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"Alarms":[],"ClusterHealth":[{"MemberID":1,"Name":"a","Healthy":true}],"Header":{}}`))
	}))
	defer good.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	c := &Conn{APIURLs: []string{deadURL, good.URL}, Session: client.Config{AccessToken: "x"}}
	s, err := c.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Health(context.Background(), time.Second)
	if err != nil || len(h.ClusterHealth) != 1 {
		t.Fatalf("health through the second server: %v %+v", err, h)
	}
	if s.Answering() != good.URL {
		t.Fatalf("answering %s, want %s", s.Answering(), good.URL)
	}
	// Avoiding the good server leaves only the dead one.
	restore := s.tr.avoid(good.URL)
	if _, err := s.Health(context.Background(), time.Second); err == nil {
		t.Fatal("want an error with the only live server avoided")
	}
	restore()
	if _, err := s.Health(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
}
