// Package tui is Picket's console: a bubbletea program with one model per screen (home,
// bootstrap, join, dashboard, replace) and a root model that routes messages between
// them. It reaches the cluster only through node/cluster, the implementation `picket
// cluster …` uses, and the machine it runs on through a Host that the app package
// provides. All I/O runs in tea.Cmds; live data arrives as messages.
package tui

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// Options configure the console.
type Options struct {
	// Host acts on this machine (detect, bootstrap, join, local members).
	Host Host
	// Open connects to a cluster; nil means Conn.Open.
	Open func(ctx context.Context, c *Conn) (Cluster, error)
	// Now is the clock shown in the dashboard; nil means time.Now.
	Now func() time.Time
	// Interval is the dashboard's refresh period (1 s when 0).
	Interval time.Duration
	// Detection, when set, is used instead of asking Host.Detect (tests).
	Detection *Detection
}

type screenID int

const (
	screenHome screenID = iota
	screenBootstrap
	screenBootProgress
	screenJoin
	screenJoinProgress
	screenDashboard
	screenConfirm
	screenReplace
)

// screen is one page of the console.
type screen interface {
	update(msg tea.Msg) tea.Cmd
	view() string
	setSize(w, h int)
	keys() helpKeys
	// capturesInput is true while a text field has the focus: q and ? are typed then.
	capturesInput() bool
}

// Navigation messages.
type (
	gotoMsg        struct{ to screenID }
	openReplaceMsg struct{ member memberRow }
	detectedMsg    struct{ d Detection }
	connectMsg     struct {
		conn *Conn
		// reuse keeps the open session (after a join), adding the conn's servers to it.
		reuse bool
	}
	connectedMsg struct {
		cl  Cluster
		err error
	}
)

// Model is the console's root model.
type Model struct {
	ctx    context.Context
	cancel context.CancelFunc
	opts   Options
	w, h   int

	cur      screenID
	full     bool // full help shown
	help     help.Model
	det      *Detection
	home     *homeModel
	boot     *bootForm
	bootProg *progressModel
	join     *joinForm
	joinProg *progressModel
	dash     *dashboard
	confirm  *confirmModel
	repl     *replaceModel
	cl       Cluster
	quitting bool
	// wg holds the goroutines of long operations; Wait waits for them.
	wg sync.WaitGroup
}

// New returns the console's root model.
func New(ctx context.Context, opts Options) *Model {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Open == nil {
		opts.Open = func(ctx context.Context, c *Conn) (Cluster, error) { return c.Open(ctx) }
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Model{ctx: ctx, cancel: cancel, opts: opts, w: 80, h: 24, help: help.New()}
	m.help.ShortSeparator = " · "
	m.help.Width = m.w
	m.home = newHome(nil)
	return m
}

// Close stops whatever the console still runs (a replace in progress, a bootstrap) and
// waits for it to return.
func (m *Model) Close() {
	m.cancel()
	m.wg.Wait()
}

// Init asks the host what is installed.
func (m *Model) Init() tea.Cmd {
	if m.opts.Detection != nil {
		d := *m.opts.Detection
		return func() tea.Msg { return detectedMsg{d} }
	}
	host, ctx := m.opts.Host, m.ctx
	return func() tea.Msg {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return detectedMsg{host.Detect(dctx)}
	}
}

func (m *Model) screen() screen {
	switch m.cur {
	case screenBootstrap:
		return m.boot
	case screenBootProgress:
		return m.bootProg
	case screenJoin:
		return m.join
	case screenJoinProgress:
		return m.joinProg
	case screenDashboard:
		return m.dash
	case screenConfirm:
		return m.confirm
	case screenReplace:
		return m.repl
	}
	return m.home
}

// bodyHeight is what a screen may use: the terminal less the help line.
func (m *Model) bodyHeight() int { return max(m.h-2, 1) }

func (m *Model) setSizes() {
	for _, s := range []screen{m.home, m.boot, m.bootProg, m.join, m.joinProg, m.dash, m.confirm, m.repl} {
		if s != nil && !isNil(s) {
			s.setSize(m.w, m.bodyHeight())
		}
	}
	m.help.Width = m.w
}

func isNil(s screen) bool {
	switch v := s.(type) {
	case *homeModel:
		return v == nil
	case *bootForm:
		return v == nil
	case *progressModel:
		return v == nil
	case *joinForm:
		return v == nil
	case *dashboard:
		return v == nil
	case *confirmModel:
		return v == nil
	case *replaceModel:
		return v == nil
	}
	return false
}

// Update routes msg: global keys and navigation here, everything else to the screens.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.w, m.h = msg.Width, msg.Height
		m.setSizes()
		return m, nil
	case tea.KeyMsg:
		s := m.screen()
		if key.Matches(msg, keys.ForceQuit) {
			return m.quit()
		}
		if !s.capturesInput() {
			switch {
			case key.Matches(msg, keys.Help):
				m.full = !m.full
				return m, nil
			case key.Matches(msg, keys.Quit) && !m.busy():
				return m.quit()
			case key.Matches(msg, keys.Home) && m.cur == screenDashboard:
				m.dash.stop()
				return m.goHome()
			}
		}
		return m, s.update(msg)
	case detectedMsg:
		m.det = &msg.d
		m.home = newHome(m.det)
		m.setSizes()
		return m, nil
	case gotoMsg:
		return m.go_(msg.to)
	case connectMsg:
		if s, ok := m.cl.(*Session); ok && msg.reuse {
			s.merge(msg.conn)
			return m.Update(connectedMsg{cl: s})
		}
		return m, m.connect(msg.conn)
	case connectedMsg:
		if msg.err != nil {
			m.home.err = msg.err
			m.cur = screenHome
			return m, nil
		}
		m.cl = msg.cl
		m.dash = newDashboard(m.ctx, m.cl, m.opts.Now, m.opts.Interval)
		m.dash.setSize(m.w, m.bodyHeight())
		m.cur = screenDashboard
		return m, m.dash.start()
	case bootstrapHostsMsg:
		m.boot = newBootForm(m.det, ModeHosts)
		m.cur = screenBootstrap
		m.setSizes()
		return m, nil
	case startBootstrapMsg:
		if msg.plan.Mode == ModeSandbox && m.det != nil {
			m.det.Sandbox = msg.plan.Dir
		}
		m.bootProg = newProgress("Bootstrapping a "+msg.plan.Mode.String()+" of "+fmt.Sprint(len(msg.plan.Nodes)), screenBootstrap)
		m.bootProg.setSize(m.w, m.bodyHeight())
		m.cur = screenBootProgress
		host, ctx, plan := m.opts.Host, m.ctx, msg.plan
		return m, m.bootProg.start(&m.wg, func(send func(any)) (any, error) {
			return host.Bootstrap(ctx, plan, func(p Progress) { send(p) })
		})
	case startJoinMsg:
		m.joinProg = newProgress("Joining "+msg.req.Name+" to the cluster at "+msg.req.APIURL, screenJoin)
		m.joinProg.setSize(m.w, m.bodyHeight())
		m.cur = screenJoinProgress
		if m.dash != nil {
			m.dash.stop()
		}
		host, ctx, req := m.opts.Host, m.ctx, msg.req
		return m, m.joinProg.start(&m.wg, func(send func(any)) (any, error) {
			return host.Join(ctx, req, func(p Progress) { send(p) })
		})
	case openReplaceMsg:
		m.confirm = newConfirm(msg.member, m.dash)
		m.confirm.local = m.opts.Host != nil && m.opts.Host.Local(msg.member.Name) != nil
		m.confirm.setSize(m.w, m.bodyHeight())
		m.cur = screenConfirm
		return m, nil
	case startReplaceMsg:
		stateFile, snapFile := m.opts.Host.ReplaceFiles(msg.member.Name)
		m.repl = newReplace(m.ctx, m.cl, m.opts.Host, msg.member, m.dash, stateFile, snapFile)
		m.repl.wg = &m.wg
		m.repl.setSize(m.w, m.bodyHeight())
		m.cur = screenReplace
		return m, m.repl.start()
	case tickMsg, fetchedMsg:
		// The dashboard keeps refreshing behind the replace screens, which show its table.
		if m.dash != nil {
			return m, m.dash.update(msg)
		}
		return m, nil
	}
	return m, m.screen().update(msg)
}

// busy is true while an operation runs that q must not interrupt (ctrl+c still does).
func (m *Model) busy() bool {
	switch m.cur {
	case screenReplace:
		return m.repl.running
	case screenBootProgress:
		return m.bootProg.running
	case screenJoinProgress:
		return m.joinProg.running
	}
	return false
}

func (m *Model) quit() (tea.Model, tea.Cmd) {
	m.quitting = true
	m.cancel()
	return m, tea.Quit
}

func (m *Model) goHome() (tea.Model, tea.Cmd) {
	m.cur = screenHome
	return m, nil
}

func (m *Model) go_(to screenID) (tea.Model, tea.Cmd) {
	switch to {
	case screenHome:
		if m.dash != nil {
			m.dash.stop()
		}
		return m.goHome()
	case screenBootstrap:
		m.boot = newBootForm(m.det, ModeSandbox)
	case screenJoin:
		s, _ := m.cl.(*Session)
		m.join = newJoinForm(s, m.joinDefaults())
	case screenDashboard:
		if m.dash == nil {
			return m.goHome()
		}
		m.cur = screenDashboard
		if !m.dash.running {
			return m, m.dash.start()
		}
		return m, nil
	}
	m.cur = to
	m.setSizes()
	return m, nil
}

// joinDefaults suggests the next free member name (and, in a sandbox, the next
// loopback address) and the cluster the console is connected to.
func (m *Model) joinDefaults() joinDefaults {
	var d joinDefaults
	if m.det != nil {
		if c := m.det.Conn; c != nil && len(c.APIURLs) > 0 {
			d.apiURL, d.ca = c.APIURLs[0], c.Session.TrustedCAFile
		}
		d.dir = m.det.DefaultDir
		d.addr = m.det.HostAddress
		d.name = m.det.HostName
	}
	if s, ok := m.cl.(*Session); ok {
		d.apiURL, d.ca = s.Answering(), s.conn.Session.TrustedCAFile
	}
	if m.det != nil && m.det.Sandbox != "" {
		next := 1
		d.addr = ""
		var top net.IP
		if m.dash != nil {
			for _, r := range m.dash.rows() {
				var k int
				if _, err := fmt.Sscanf(r.Name, "picket-%d", &k); err == nil && k >= next {
					next = k + 1
				}
				for _, p := range r.PeerURLs {
					if u, err := url.Parse(p); err == nil {
						if ip := net.ParseIP(u.Hostname()).To4(); ip != nil && (top == nil || bytes.Compare(ip, top) > 0) {
							top = ip
						}
					}
				}
			}
		}
		d.name = fmt.Sprintf("picket-%d", next)
		if top != nil {
			d.addr = nthAddress(top.String(), 1)
		}
		if d.addr == "" {
			d.addr = fmt.Sprintf("127.0.0.%d", next)
		}
		d.dir = filepath.Join(m.det.Sandbox, d.name)
		d.certs = filepath.Join(m.det.Sandbox, "certs")
	}
	return d
}

func (m *Model) connect(c *Conn) tea.Cmd {
	ctx, open := m.ctx, m.opts.Open
	return func() tea.Msg {
		cl, err := open(ctx, c)
		return connectedMsg{cl: cl, err: err}
	}
}

// View renders the current screen and the help line at the bottom.
func (m *Model) View() string {
	if m.quitting {
		return ""
	}
	s := m.screen()
	body := s.view()
	var helpView string
	if m.full {
		helpView = m.help.FullHelpView(s.keys().FullHelp())
	} else {
		helpView = m.help.ShortHelpView(s.keys().ShortHelp())
	}
	bodyLines := strings.Split(strings.TrimRight(body, "\n"), "\n")
	avail := m.h - lipgloss.Height(helpView) - 1
	if avail < 1 {
		avail = 1
	}
	if len(bodyLines) > avail {
		bodyLines = bodyLines[:avail]
	}
	for i, l := range bodyLines {
		bodyLines[i] = truncate(l, m.w)
	}
	pad := avail - len(bodyLines)
	return strings.Join(bodyLines, "\n") + strings.Repeat("\n", pad+1) + "\n" + helpView
}
