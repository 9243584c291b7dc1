package tui

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/picketmon/picket/node/cluster"
)

type startReplaceMsg struct{ member memberRow }

// confirmModel shows the plan of a replace and its risks before anything changes.
type confirmModel struct {
	member memberRow
	dash   *dashboard
	local  bool
	w, h   int
}

func newConfirm(m memberRow, d *dashboard) *confirmModel {
	return &confirmModel{member: m, dash: d}
}

func (c *confirmModel) setSize(w, h int)    { c.w, c.h = w, h }
func (c *confirmModel) capturesInput() bool { return false }

func (c *confirmModel) keys() helpKeys {
	yes := key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "replace it"))
	return helpKeys{short: []key.Binding{yes, keys.Back, keys.Help}, full: [][]key.Binding{{yes, keys.Back}, {keys.Help, keys.Quit}}}
}

func (c *confirmModel) update(msg tea.Msg) tea.Cmd {
	km, ok := msg.(tea.KeyMsg)
	if !ok {
		return nil
	}
	switch {
	case key.Matches(km, keys.Confirm):
		m := c.member
		return func() tea.Msg { return startReplaceMsg{member: m} }
	case key.Matches(km, keys.Back), km.String() == "n":
		return func() tea.Msg { return gotoMsg{to: screenDashboard} }
	}
	return nil
}

// replacePlan is the list of steps, in cluster.Replace's order.
func replacePlan(m memberRow, local bool) []string {
	stop := fmt.Sprintf("stop %s's server on this host and delete its etcd data", m.Name)
	start := "start it with etcd-initial-cluster-state: existing (this host)"
	if !local {
		stop = fmt.Sprintf("(%s does not run on this host: its server must be stopped)", m.Name)
		start = "show the configuration to start it with on its host, and wait"
	}
	return []string{
		"preflight: members, health, no other learner, the other voters are a quorum",
		"snapshot the cluster",
		fmt.Sprintf("move leadership away if %s leads", m.Name),
		stop,
		fmt.Sprintf("remove member %x", m.ID),
		"add it back as a learner with the same peer URLs (a new ID)",
		start,
		"promote it to a voter once it has caught up",
		"verify: every member healthy, all agree on leader and term",
	}
}

func (c *confirmModel) view() string {
	var b strings.Builder
	m := c.member
	b.WriteString(st.title.Render(fmt.Sprintf("Replace member %s?", m.Name)) + "\n\n")
	b.WriteString(wrapLines(fmt.Sprintf("%s (id %x, peer %s) gets an empty data dir, filled from the other members, and a new ID.",
		m.Name, m.ID, strings.Join(m.PeerURLs, ",")), c.w) + "\n\n")
	b.WriteString(st.header.Render("Plan") + "\n")
	for i, s := range replacePlan(m, c.local) {
		b.WriteString(truncate(fmt.Sprintf(" %d. %s", i+1, s), c.w) + "\n")
	}
	b.WriteString("\n" + st.header.Render("Risks") + "\n")
	rows := c.dash.rows()
	voters, healthyOthers := 0, 0
	for _, r := range rows {
		if r.Learner {
			continue
		}
		voters++
		if r.ID != m.ID && r.Health == "healthy" {
			healthyOthers++
		}
	}
	need := (voters-1)/2 + 1
	risk := func(s string) { b.WriteString(st.warn.Render(truncate(" ! "+s, c.w)) + "\n") }
	switch {
	case voters <= 1:
		risk("it is the only voter: a one-member cluster cannot replace its member (restore a snapshot instead)")
	case healthyOthers < need:
		risk(fmt.Sprintf("only %d other voters are healthy, %d needed: the replace will be refused", healthyOthers, need))
	default:
		risk(fmt.Sprintf("until it is promoted the cluster runs on %d voters and tolerates %d more failure%s",
			voters-1, healthyOthers-need, plural(healthyOthers-need)))
	}
	if m.Health == "healthy" {
		risk(m.Name + " is healthy: replacing it stops it and deletes its data")
	}
	risk("if it stops half way, run it again: it resumes where it stopped")
	b.WriteString("\nPress " + st.key.Render("y") + " to replace " + m.Name + ", " + st.key.Render("esc") + " to go back.\n")
	return b.String()
}

// replaceModel runs a replace and shows each step live beside the member table.
type replaceModel struct {
	ctx       context.Context
	cl        Cluster
	host      Host
	member    memberRow
	dash      *dashboard
	stateFile string
	snapFile  string
	wg        *sync.WaitGroup

	w, h    int
	steps   steps
	spin    spinner.Model
	wk      *worker
	running bool
	res     *cluster.ReplaceResult
	err     error
}

func newReplace(ctx context.Context, cl Cluster, host Host, m memberRow, d *dashboard, stateFile, snapFile string) *replaceModel {
	return &replaceModel{ctx: ctx, cl: cl, host: host, member: m, dash: d, stateFile: stateFile, snapFile: snapFile,
		spin: spinner.New(spinner.WithSpinner(spinnerKind))}
}

func (r *replaceModel) setSize(w, h int)    { r.w, r.h = w, h }
func (r *replaceModel) capturesInput() bool { return false }

func (r *replaceModel) keys() helpKeys {
	if r.running {
		return helpKeys{short: []key.Binding{keys.ForceQuit, keys.Help}, full: [][]key.Binding{{keys.ForceQuit, keys.Help}}}
	}
	again := key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "run it again"))
	back := key.NewBinding(key.WithKeys("esc", "enter"), key.WithHelp("esc", "dashboard"))
	if r.err != nil {
		return helpKeys{short: []key.Binding{again, back, keys.Help, keys.Quit}, full: [][]key.Binding{{again, back}, {keys.Help, keys.Quit}}}
	}
	return helpKeys{short: []key.Binding{back, keys.Help, keys.Quit}, full: [][]key.Binding{{back}, {keys.Help, keys.Quit}}}
}

func (r *replaceModel) start() tea.Cmd {
	r.running, r.err, r.res = true, nil, nil
	r.steps = steps{}
	var local *cluster.Local
	if r.host != nil {
		local = r.host.Local(r.member.Name)
	}
	opts := cluster.ReplaceOptions{Name: r.member.Name, StateFile: r.stateFile, SnapshotFile: r.snapFile, Local: local}
	ctx, cl := r.ctx, r.cl
	var cmd tea.Cmd
	r.wk, cmd = startWorker(r.wg, func(send func(any)) (any, error) {
		opts.Progress = func(s cluster.Step) { send(s) }
		return cl.Replace(ctx, opts)
	})
	return tea.Batch(cmd, r.spin.Tick)
}

var stepTitles = map[string]string{
	cluster.StepPreflight: "preflight",
	cluster.StepSnapshot:  "snapshot",
	cluster.StepLeader:    "move leadership",
	cluster.StepStop:      "stop server",
	cluster.StepWipe:      "wipe data",
	cluster.StepRemove:    "remove member",
	cluster.StepAdd:       "add as learner",
	cluster.StepStart:     "start member",
	cluster.StepPromote:   "promote to voter",
	cluster.StepVerify:    "verify",
}

func (r *replaceModel) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case spinner.TickMsg:
		if !r.running {
			return nil
		}
		var cmd tea.Cmd
		r.spin, cmd = r.spin.Update(msg)
		return cmd
	case workerMsg:
		if r.wk == nil || msg.id != r.wk.id {
			return nil
		}
		if s, ok := msg.msg.(cluster.Step); ok {
			title := stepTitles[s.Name]
			if title == "" {
				title = s.Name
			}
			r.steps.add(title, "", s.Detail, s.Done, s.Err, s.Took)
		}
		return r.wk.next()
	case workerDoneMsg:
		if r.wk == nil || msg.id != r.wk.id {
			return nil
		}
		r.running = false
		r.err = msg.err
		r.res, _ = msg.res.(*cluster.ReplaceResult)
		return r.dash.fetchAll()
	case tea.KeyMsg:
		if r.running {
			return nil
		}
		switch {
		case msg.String() == "r" && r.err != nil:
			return r.start()
		case key.Matches(msg, keys.Back), key.Matches(msg, keys.Enter):
			return func() tea.Msg { return gotoMsg{to: screenDashboard} }
		}
	}
	return nil
}

func (r *replaceModel) view() string {
	var left strings.Builder
	left.WriteString(st.title.Render("Replacing "+r.member.Name) + "\n\n")
	stepW := r.w
	side := r.w >= 120
	if side {
		stepW = r.w/2 - 1
	}
	left.WriteString(r.steps.view(r.spin.View(), stepW))
	if !r.running {
		left.WriteString("\n")
		switch {
		case r.err != nil && cluster.Refused(r.err):
			left.WriteString(st.badBanner.Render(" REFUSED ") + " nothing changed\n")
			left.WriteString(st.bad.Render(r.err.Error()) + "\n")
		case r.err != nil:
			left.WriteString(st.badBanner.Render(" FAILED ") + " " + st.bad.Render(r.err.Error()) + "\n")
			left.WriteString(fmt.Sprintf("Press r to run it again: it resumes where it stopped (progress in %s).\n", r.stateFile))
		case r.res != nil:
			left.WriteString(st.ok.Render(fmt.Sprintf("✔ Replaced %s: old ID %x, new ID %x, in %s.",
				r.res.Name, r.res.OldID, r.res.NewID, r.res.Took.Round(100_000_000))) + "\n")
			if r.res.Snapshot != "" {
				left.WriteString(st.subtle.Render("Snapshot taken first: "+r.res.Snapshot) + "\n")
			}
		}
	}
	leftS := wrapLines(left.String(), stepW)
	table := r.dash.table(r.dash.rows(), false)
	if side {
		return lipgloss.JoinHorizontal(lipgloss.Top, lipgloss.NewStyle().Width(r.w/2).Render(leftS), table)
	}
	return leftS + "\n" + table
}

// wrapLines wraps every line of s at width cells.
func wrapLines(s string, width int) string {
	if width <= 0 {
		return s
	}
	return lipgloss.NewStyle().Width(width).Render(strings.TrimRight(s, "\n"))
}
