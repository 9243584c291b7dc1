package tui

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
)

// worker runs one long operation (bootstrap, join, replace) in a goroutine and hands
// its progress to the UI through a channel that a re-armed command drains, so Update
// never blocks. The goroutine ends with the operation; the root model waits for it.
type worker struct {
	id int
	ch chan tea.Msg
}

type workerMsg struct {
	id  int
	msg any
}

type workerDoneMsg struct {
	id  int
	res any
	err error
}

var workerIDs struct {
	sync.Mutex
	n int
}

// startWorker runs op and returns the command that delivers its first message.
func startWorker(wg *sync.WaitGroup, op func(send func(any)) (any, error)) (*worker, tea.Cmd) {
	workerIDs.Lock()
	workerIDs.n++
	w := &worker{id: workerIDs.n, ch: make(chan tea.Msg, 64)}
	workerIDs.Unlock()
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg != nil {
			defer wg.Done()
		}
		res, err := op(func(v any) { w.ch <- workerMsg{id: w.id, msg: v} })
		w.ch <- workerDoneMsg{id: w.id, res: res, err: err}
	}()
	return w, w.next()
}

// next waits for the worker's next message; call it again after each one.
func (w *worker) next() tea.Cmd {
	return func() tea.Msg { return <-w.ch }
}

// stepLine is one step as a progress screen shows it.
type stepLine struct {
	name, node, detail string
	done               bool
	err                error
	took               time.Duration
}

// steps keeps the lines of a progress screen: a step that begins adds a line, its end
// completes it.
type steps struct {
	lines []stepLine
}

func (s *steps) add(name, node, detail string, done bool, err error, took time.Duration) {
	for i := len(s.lines) - 1; i >= 0; i-- {
		l := &s.lines[i]
		if l.name == name && l.node == node && !l.done {
			if done {
				l.done, l.err, l.took = true, err, took
				if detail != "" {
					l.detail = detail
				}
			} else if detail != "" {
				l.detail = detail
			}
			return
		}
	}
	s.lines = append(s.lines, stepLine{name: name, node: node, detail: detail, done: done, err: err, took: took})
}

func (s *steps) view(spin string, w int) string {
	var b strings.Builder
	for _, l := range s.lines {
		mark := spin
		switch {
		case l.done && l.err != nil:
			mark = st.bad.Render("✘")
		case l.done:
			mark = st.ok.Render("✔")
		}
		name := l.name
		if l.node != "" {
			name += " " + l.node
		}
		took := ""
		if l.done {
			took = fmt.Sprintf(" (%s)", l.took.Round(10*time.Millisecond))
		}
		detail := l.detail
		if l.err != nil {
			detail = l.err.Error()
		}
		lines := strings.Split(strings.TrimSpace(detail), "\n")
		style := st.subtle
		if l.err != nil {
			style = st.bad
		}
		head := fmt.Sprintf("%s %-18s", mark, name)
		first := ""
		if lines[0] != "" {
			first = " " + lines[0]
		}
		b.WriteString(truncate(head+st.subtle.Render(took)+style.Render(first), w) + "\n")
		for _, dl := range lines[1:] {
			if dl != "" {
				b.WriteString(style.Render(truncate("    "+dl, w)) + "\n")
			}
		}
	}
	return b.String()
}

// progressModel shows a bootstrap or a join: each step live, then the outcome.
type progressModel struct {
	title   string
	w, h    int
	steps   steps
	spin    spinner.Model
	running bool
	wk      *worker
	err     error
	boot    *Bootstrapped
	joined  *Joined
	// shown is true once the operator left the result: the password is never shown again.
	shown bool
	back  screenID
}

func newProgress(title string, back screenID) *progressModel {
	sp := spinner.New(spinner.WithSpinner(spinnerKind))
	return &progressModel{title: title, spin: sp, back: back}
}

func (p *progressModel) setSize(w, h int)    { p.w, p.h = w, h }
func (p *progressModel) capturesInput() bool { return false }

func (p *progressModel) keys() helpKeys {
	if p.running {
		return helpKeys{short: []key.Binding{keys.ForceQuit, keys.Help}, full: [][]key.Binding{{keys.ForceQuit, keys.Help}}}
	}
	enter := key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open the dashboard"))
	if p.err != nil {
		enter = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "back to the form"))
	}
	return helpKeys{short: []key.Binding{enter, keys.Back, keys.Help, keys.Quit}, full: [][]key.Binding{{enter, keys.Back}, {keys.Help, keys.Quit}}}
}

func (p *progressModel) start(wg *sync.WaitGroup, op func(send func(any)) (any, error)) tea.Cmd {
	p.running = true
	var cmd tea.Cmd
	p.wk, cmd = startWorker(wg, op)
	return tea.Batch(cmd, p.spin.Tick)
}

func (p *progressModel) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case spinner.TickMsg:
		if !p.running {
			return nil
		}
		var cmd tea.Cmd
		p.spin, cmd = p.spin.Update(msg)
		return cmd
	case workerMsg:
		if p.wk == nil || msg.id != p.wk.id {
			return nil
		}
		if pr, ok := msg.msg.(Progress); ok {
			p.steps.add(pr.Step, pr.Node, pr.Detail, pr.Done, pr.Err, pr.Took)
		}
		return p.wk.next()
	case workerDoneMsg:
		if p.wk == nil || msg.id != p.wk.id {
			return nil
		}
		p.running = false
		p.err = msg.err
		switch r := msg.res.(type) {
		case *Bootstrapped:
			p.boot = r
		case *Joined:
			p.joined = r
		}
		return nil
	case tea.KeyMsg:
		if p.running {
			return nil
		}
		switch {
		case key.Matches(msg, keys.Enter) && p.err == nil:
			p.shown = true
			var conn *Conn
			if p.boot != nil {
				conn = p.boot.Conn
			} else if p.joined != nil {
				conn = p.joined.Conn
			}
			if conn == nil {
				return func() tea.Msg { return gotoMsg{to: screenHome} }
			}
			reuse := p.joined != nil
			return func() tea.Msg { return connectMsg{conn: conn, reuse: reuse} }
		case key.Matches(msg, keys.Enter), key.Matches(msg, keys.Back):
			p.shown = true
			back := p.back
			if p.err == nil {
				back = screenHome
			}
			return func() tea.Msg { return gotoMsg{to: back} }
		}
	}
	return nil
}

func (p *progressModel) view() string {
	var b strings.Builder
	b.WriteString(st.title.Render(p.title) + "\n\n")
	b.WriteString(p.steps.view(p.spin.View(), p.w))
	if p.running {
		return b.String()
	}
	b.WriteString("\n")
	if p.err != nil {
		b.WriteString(st.badBanner.Render(" FAILED ") + " " + st.bad.Render(p.err.Error()) + "\n")
		b.WriteString(truncate("Fix what the message says and start again; the servers already started keep running (see server.log in their state dirs).", p.w) + "\n")
		return b.String()
	}
	if p.boot != nil {
		if p.boot.AdminPassword != "" && !p.shown {
			b.WriteString(st.box.Render(fmt.Sprintf("Admin user %s, password %s\nShown only now: store it safely.",
				p.boot.AdminUser, st.secret.Render(p.boot.AdminPassword))) + "\n")
		}
		for _, name := range sortedKeys(p.boot.Commands) {
			b.WriteString(truncate(fmt.Sprintf("On %s: %s", name, p.boot.Commands[name]), p.w) + "\n")
		}
		for _, n := range p.boot.Notes {
			b.WriteString(st.subtle.Render(truncate(n, p.w)) + "\n")
		}
	}
	if p.joined != nil {
		b.WriteString(st.ok.Render(fmt.Sprintf("✔ %s joined the cluster as a voter.", p.joined.Name)) + "\n")
		for _, n := range p.joined.Notes {
			b.WriteString(st.subtle.Render(truncate(n, p.w)) + "\n")
		}
	}
	return b.String()
}
