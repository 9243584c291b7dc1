package tui

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/picketmon/picket/node/cluster"
)

// Cluster is what the dashboard and the replace screens ask of a cluster. *Session
// implements it with node/cluster, the implementation `picket cluster …` uses.
type Cluster interface {
	Health(ctx context.Context, timeout time.Duration) (*cluster.Health, error)
	Members(ctx context.Context) (*cluster.MemberList, error)
	Status(ctx context.Context) ([]cluster.MemberStatus, error)
	Info(ctx context.Context) (*cluster.Info, error)
	Counts(ctx context.Context) (Counts, error)
	Probe(ctx context.Context, clientURLs []string) (time.Duration, error)
	Replace(ctx context.Context, o cluster.ReplaceOptions) (*cluster.ReplaceResult, error)
	Answering() string
}

// The parts of the dashboard fetched independently, each with its own deadline, so that a
// slow answer for one never holds up the others.
const (
	partHealth  = "health"
	partMembers = "members"
	partStatus  = "status"
	partInfo    = "info"
	partCounts  = "counts"
	partProbe   = "probe"
)

// fetchTimeout bounds each request of the dashboard: a member that does not answer in
// time shows as a timeout, and the screen goes on refreshing.
const fetchTimeout = 2500 * time.Millisecond

// countsEvery is how many ticks pass between two counts of agents and events, which
// list every event and cost more than the health checks.
const countsEvery = 5

type tickMsg struct{ gen int }

type fetchedMsg struct {
	gen  int
	part string
	at   time.Time
	took time.Duration
	val  any
	err  error
}

type probeResult struct {
	rtt time.Duration
	err error
}

// dashboard shows the cluster's members and their health, refreshed every interval.
type dashboard struct {
	ctx      context.Context
	cl       Cluster
	now      func() time.Time
	interval time.Duration
	w, h     int
	gen      int
	ticks    int
	sel      int
	running  bool

	inflight map[string]bool
	at       map[string]time.Time
	errs     map[string]error

	members *cluster.MemberList
	health  *cluster.Health
	status  map[uint64]cluster.MemberStatus
	info    *cluster.Info
	counts  *Counts
	probes  map[uint64]probeResult
}

func newDashboard(ctx context.Context, cl Cluster, now func() time.Time, interval time.Duration) *dashboard {
	return &dashboard{
		ctx: ctx, cl: cl, now: now, interval: interval,
		inflight: map[string]bool{}, at: map[string]time.Time{}, errs: map[string]error{},
		status: map[uint64]cluster.MemberStatus{}, probes: map[uint64]probeResult{},
	}
}

func (d *dashboard) setSize(w, h int) { d.w, d.h = w, h }

// start begins (or restarts) the refresh loop; ticks of an earlier loop are ignored.
func (d *dashboard) start() tea.Cmd {
	d.gen++
	d.running = true
	return tea.Batch(d.fetchAll(), d.tick())
}

func (d *dashboard) stop() { d.gen++; d.running = false }

func (d *dashboard) tick() tea.Cmd {
	gen := d.gen
	return tea.Tick(d.interval, func(time.Time) tea.Msg { return tickMsg{gen: gen} })
}

func (d *dashboard) fetchAll() tea.Cmd {
	var cmds []tea.Cmd
	for _, p := range []string{partHealth, partMembers, partStatus, partInfo, partProbe} {
		cmds = append(cmds, d.fetch(p))
	}
	if d.ticks%countsEvery == 0 {
		cmds = append(cmds, d.fetch(partCounts))
	}
	return tea.Batch(cmds...)
}

// fetch starts one part unless it is still in flight from an earlier tick.
func (d *dashboard) fetch(part string) tea.Cmd {
	if d.inflight[part] {
		return nil
	}
	var urls map[uint64][]string
	if part == partProbe {
		if d.members == nil {
			return nil
		}
		urls = map[uint64][]string{}
		for _, m := range d.members.Members {
			if len(m.ClientURLs) > 0 {
				urls[m.ID] = m.ClientURLs
			}
		}
	}
	d.inflight[part] = true
	gen, cl, parent, now := d.gen, d.cl, d.ctx, d.now
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(parent, fetchTimeout)
		defer cancel()
		t := time.Now()
		var val any
		var err error
		switch part {
		case partHealth:
			val, err = cl.Health(ctx, time.Second)
		case partMembers:
			val, err = cl.Members(ctx)
		case partStatus:
			val, err = cl.Status(ctx)
		case partInfo:
			val, err = cl.Info(ctx)
		case partCounts:
			val, err = cl.Counts(ctx)
		case partProbe:
			val = probeAll(ctx, cl, urls)
		}
		return fetchedMsg{gen: gen, part: part, at: now(), took: time.Since(t), val: val, err: err}
	}
}

func probeAll(ctx context.Context, cl Cluster, urls map[uint64][]string) map[uint64]probeResult {
	type res struct {
		id uint64
		r  probeResult
	}
	ch := make(chan res, len(urls))
	for id, u := range urls {
		go func() {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			rtt, err := cl.Probe(pctx, u)
			ch <- res{id, probeResult{rtt, err}}
		}()
	}
	out := make(map[uint64]probeResult, len(urls))
	for range urls {
		r := <-ch
		out[r.id] = r.r
	}
	return out
}

func (d *dashboard) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tickMsg:
		if msg.gen != d.gen || !d.running {
			return nil
		}
		d.ticks++
		return tea.Batch(d.fetchAll(), d.tick())
	case fetchedMsg:
		d.inflight[msg.part] = false
		if msg.gen != d.gen {
			return nil
		}
		d.apply(msg)
		return nil
	case tea.KeyMsg:
		rows := d.rows()
		switch {
		case key.Matches(msg, keys.Up):
			if d.sel > 0 {
				d.sel--
			}
		case key.Matches(msg, keys.Down):
			if d.sel < len(rows)-1 {
				d.sel++
			}
		case key.Matches(msg, keys.Refresh):
			return d.fetchAll()
		case key.Matches(msg, keys.Replace):
			if d.sel < len(rows) && rows[d.sel].Name != "" {
				r := rows[d.sel]
				return func() tea.Msg { return openReplaceMsg{member: r} }
			}
		case key.Matches(msg, keys.Join):
			return func() tea.Msg { return gotoMsg{to: screenJoin} }
		}
	}
	return nil
}

func (d *dashboard) apply(msg fetchedMsg) {
	d.errs[msg.part] = msg.err
	if msg.err != nil {
		return
	}
	d.at[msg.part] = msg.at
	switch v := msg.val.(type) {
	case *cluster.Health:
		d.health = v
	case *cluster.MemberList:
		d.members = v
	case []cluster.MemberStatus:
		d.status = map[uint64]cluster.MemberStatus{}
		for _, s := range v {
			d.status[s.ID] = s
		}
	case *cluster.Info:
		d.info = v
	case Counts:
		d.counts = &v
	case map[uint64]probeResult:
		d.probes = v
	}
}

// memberRow is one member as the dashboard shows it: the member list, its health, its
// raft status and the probe from here, merged by member ID.
type memberRow struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
	Started    bool
	// Health is "healthy", "unhealthy" or "unknown" (no answer yet or too old).
	Health  string
	Err     string
	Leader  bool
	Term    uint64
	Index   uint64
	DBSize  int64
	Probe   *probeResult
	StatErr string
}

// stale is how old health may be before the dashboard stops trusting it.
const stale = 5 * time.Second

func (d *dashboard) rows() []memberRow {
	var rows []memberRow
	fresh := d.health != nil && d.now().Sub(d.at[partHealth]) < stale
	var leader uint64
	votes := map[uint64]int{}
	for _, s := range d.status {
		if s.Err == "" && s.Leader != 0 {
			votes[s.Leader]++
		}
	}
	for id, n := range votes {
		if n > votes[leader] {
			leader = id
		}
	}
	add := func(r memberRow) {
		if d.health != nil {
			if mh := d.health.Of(r.ID); mh != nil {
				if r.Name == "" {
					r.Name = mh.Name
				}
				r.Err = mh.Err
				switch {
				case !fresh:
					r.Health = "unknown"
				case mh.Healthy:
					r.Health = "healthy"
				default:
					r.Health = "unhealthy"
				}
			}
		}
		if r.Health == "" {
			r.Health = "unknown"
		}
		if s, ok := d.status[r.ID]; ok {
			r.Term, r.Index, r.DBSize, r.StatErr = s.RaftTerm, s.RaftIndex, s.DBSize, s.Err
		}
		r.Leader = r.ID != 0 && r.ID == leader
		if p, ok := d.probes[r.ID]; ok {
			r.Probe = &p
		}
		rows = append(rows, r)
	}
	if d.members != nil {
		for _, m := range d.members.Members {
			add(memberRow{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner, Started: m.Started()})
		}
	} else if d.health != nil {
		for _, mh := range d.health.ClusterHealth {
			if mh.MemberID != 0 {
				add(memberRow{ID: mh.MemberID, Name: mh.Name, Started: mh.Name != ""})
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Name != rows[j].Name {
			return rows[i].Name < rows[j].Name
		}
		return rows[i].ID < rows[j].ID
	})
	if d.sel >= len(rows) && len(rows) > 0 {
		d.sel = len(rows) - 1
	}
	return rows
}

// quorum summarises the voters: how many there are, how many a quorum needs, how many
// are healthy, and how many more may fail.
type quorum struct {
	voters, need, healthy, tolerates int
	lost                             bool
}

func quorumOf(rows []memberRow) quorum {
	var q quorum
	for _, r := range rows {
		if r.Learner {
			continue
		}
		q.voters++
		if r.Health == "healthy" {
			q.healthy++
		}
	}
	q.need = q.voters/2 + 1
	q.tolerates = q.healthy - q.need
	q.lost = q.voters > 0 && q.tolerates < 0
	return q
}

func (d *dashboard) keys() helpKeys {
	short := []key.Binding{keys.Up, keys.Down, keys.Replace, keys.Join, keys.Help, keys.Quit}
	return helpKeys{short: short, full: [][]key.Binding{
		{keys.Up, keys.Down, keys.Refresh},
		{keys.Replace, keys.Join, keys.Home},
		{keys.Help, keys.Quit, keys.ForceQuit},
	}}
}

func (d *dashboard) capturesInput() bool { return false }

func (d *dashboard) view() string {
	var b strings.Builder
	rows := d.rows()
	q := quorumOf(rows)

	// Title: which cluster, through which server, how fresh.
	title := "Picket · cluster dashboard"
	if d.members != nil && d.members.Header.ClusterID != 0 {
		title += fmt.Sprintf(" · cluster %x", d.members.Header.ClusterID)
	}
	b.WriteString(st.title.Render(truncate(title, d.w)) + "\n")
	via := "via " + d.cl.Answering()
	if t, ok := d.at[partHealth]; ok {
		via += fmt.Sprintf(" · updated %s ago", age(d.now().Sub(t)))
	} else {
		via += " · connecting…"
	}
	b.WriteString(st.subtle.Render(truncate(via, d.w)) + "\n")

	// Quorum line.
	if len(rows) > 0 {
		var line string
		switch {
		case q.lost:
			line = st.badBanner.Render(fmt.Sprintf(" QUORUM LOST: %d of %d voters healthy, %d needed ", q.healthy, q.voters, q.need))
		default:
			tol := fmt.Sprintf("tolerates %d more failure%s", q.tolerates, plural(q.tolerates))
			if q.tolerates == 0 {
				tol = st.warn.Render("tolerates no more failures")
			}
			line = fmt.Sprintf("Quorum %d of %d voters · %d healthy · %s", q.need, q.voters, q.healthy, tol)
		}
		b.WriteString(line + "\n")
	}
	var sick []string
	for _, r := range rows {
		if r.Health == "unhealthy" {
			sick = append(sick, r.Name)
		}
	}
	if len(sick) > 0 {
		msg := fmt.Sprintf(" ✘ UNHEALTHY: %s — select it and press r to replace ", strings.Join(sick, ", "))
		b.WriteString(st.badBanner.Render(truncate(msg, d.w)) + "\n")
	}
	b.WriteString("\n")
	b.WriteString(d.table(rows, true))

	// Details of the selected member.
	if d.sel < len(rows) {
		r := rows[d.sel]
		b.WriteString("\n")
		det := fmt.Sprintf("%s  id %x  peer %s  client %s", r.Name, r.ID, strings.Join(r.PeerURLs, ","), strings.Join(r.ClientURLs, ","))
		b.WriteString(st.subtle.Render(truncate(det, d.w)) + "\n")
		if r.Err != "" {
			b.WriteString(st.bad.Render(truncate("  error: "+r.Err, d.w)) + "\n")
		} else if r.StatErr != "" {
			b.WriteString(st.warn.Render(truncate("  status: "+r.StatErr, d.w)) + "\n")
		}
	}
	b.WriteString("\n")

	// Alarms, tasks, agents and events.
	if d.health != nil && len(d.health.Alarms) > 0 {
		var as []string
		for _, a := range d.health.Alarms {
			as = append(as, fmt.Sprintf("%s on %s", a.Alarm, d.nameOf(a.MemberID)))
		}
		b.WriteString(st.bad.Render(truncate("Alarms: "+strings.Join(as, ", "), d.w)) + "\n")
	} else {
		b.WriteString("Alarms: none\n")
	}
	if d.info != nil {
		var ts []string
		for _, t := range cluster.TaskNames {
			owner := "(none)"
			if o := d.info.Tasks[t]; o != nil {
				owner = *o
			}
			ts = append(ts, t+" "+owner)
		}
		b.WriteString(wrapJoin("Tasks: ", ts, " · ", d.w))
	} else {
		b.WriteString("Tasks: …\n")
	}
	if d.counts != nil {
		c := d.counts
		b.WriteString(truncate(fmt.Sprintf("Agents: %d of %d passing keepalives · Events: %d ok, %d warning, %d critical, %d unknown",
			c.Agents, c.Entities, c.Events[0], c.Events[1], c.Events[2], c.Events[3]), d.w) + "\n")
	} else {
		b.WriteString("Agents: … · Events: …\n")
	}
	for _, p := range []string{partHealth, partMembers, partStatus, partInfo, partCounts} {
		if err := d.errs[p]; err != nil {
			b.WriteString(st.warn.Render(truncate(fmt.Sprintf("%s: %v", p, err), d.w)) + "\n")
		}
	}
	return b.String()
}

func (d *dashboard) nameOf(id uint64) string {
	if d.members != nil {
		for _, m := range d.members.Members {
			if m.ID == id {
				return m.Name
			}
		}
	}
	return fmt.Sprintf("%x", id)
}

// table renders the member table; selectable marks the selected row.
func (d *dashboard) table(rows []memberRow, selectable bool) string {
	wide := d.w >= 110
	cols := []col{{"", 2}, {"NAME", 12}, {"HEALTH", 13}, {"ROLE", 9}, {"TERM", 5}, {"INDEX", 8}, {"DB", 8}, {"RTT", 9}}
	if wide {
		cols = append(cols[:2], append([]col{{"ID", 17}}, cols[2:]...)...)
		cols = append(cols, col{"CLIENT URL", 28})
	}
	var b strings.Builder
	b.WriteString(renderRow(cols, headerCells(cols), st.header) + "\n")
	if len(rows) == 0 {
		b.WriteString(st.subtle.Render("  waiting for the member list…") + "\n")
	}
	for i, r := range rows {
		mark := " "
		if selectable && i == d.sel {
			mark = "▸"
		}
		health := st.subtle.Render("? unknown")
		switch r.Health {
		case "healthy":
			health = st.ok.Render("✔ healthy")
		case "unhealthy":
			health = st.badBanner.Render("✘ UNHEALTHY")
			if isTimeout(r.Err) {
				health = st.badBanner.Render("✘ TIMEOUT")
			}
		}
		role := "voter"
		switch {
		case !r.Started:
			role = "unstarted"
		case r.Leader:
			role = "★ leader"
		case r.Learner:
			role = "learner"
		}
		if r.Learner && r.Started {
			role = "learner"
		}
		num := func(v uint64) string {
			if v == 0 {
				return "-"
			}
			return fmt.Sprint(v)
		}
		db := "-"
		if r.DBSize > 0 {
			db = bytesize(r.DBSize)
		}
		rtt := "-"
		if r.Probe != nil {
			if r.Probe.err != nil {
				rtt = "unreach."
				if isTimeout(r.Probe.err.Error()) {
					rtt = "timeout"
				}
			} else {
				rtt = fmt.Sprintf("%.1fms", float64(r.Probe.rtt.Microseconds())/1000)
			}
		}
		name := r.Name
		if name == "" {
			name = "(unstarted)"
		}
		cells := []string{mark, name, health, role, num(r.Term), num(r.Index), db, rtt}
		if wide {
			cells = append(cells[:2], append([]string{fmt.Sprintf("%x", r.ID)}, cells[2:]...)...)
			cells = append(cells, strings.Join(r.ClientURLs, ","))
		}
		style := st.subtle.UnsetForeground()
		if selectable && i == d.sel {
			style = st.selected
		}
		b.WriteString(renderRow(cols, cells, style) + "\n")
	}
	return b.String()
}

func isTimeout(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "deadline exceeded") || strings.Contains(s, "timeout") || strings.Contains(s, "timed out")
}

func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func bytesize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
