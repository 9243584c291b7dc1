package tui

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// Sizes the form offers; even sizes are allowed but explained and discouraged.
const maxSize = 7

type fieldKind int

const (
	fieldMode fieldKind = iota
	fieldSize
	fieldName
	fieldAddr
	fieldPorts
	fieldDir
	fieldTLS
	fieldToken
	fieldStart
)

type field struct {
	kind  fieldKind
	node  int
	input *textinput.Model
}

// bootForm is the bootstrap wizard: mode, size, each node's name and address, ports,
// directory, TLS and the cluster token.
type bootForm struct {
	det   *Detection
	mode  Mode
	size  int
	tls   bool
	names []textinput.Model
	addrs []textinput.Model
	typed map[int]bool // addresses the operator typed (the others follow node 1's)
	ports textinput.Model
	dir   textinput.Model
	token textinput.Model

	fields []field
	focus  int
	w, h   int
	err    string
}

type startBootstrapMsg struct{ plan Plan }

func newInput(value string, width int) textinput.Model {
	ti := textinput.New()
	ti.Prompt = ""
	ti.SetValue(value)
	ti.Width = width
	ti.CharLimit = 256
	return ti
}

func newBootForm(det *Detection, mode Mode) *bootForm {
	if det == nil {
		det = &Detection{}
	}
	f := &bootForm{det: det, mode: mode, size: 3, tls: true, typed: map[int]bool{}}
	f.ports = newInput("8080 8081 2379 2380", 24)
	dir := det.DefaultDir
	if mode == ModeSandbox {
		dir = det.DefaultSandboxDir
	}
	f.dir = newInput(dir, 48)
	f.token = newInput(det.Token, 40)
	if mode == ModeHosts {
		f.size = 3
	}
	f.resize()
	f.focusField(0)
	return f
}

// defaultNode returns the name and address node i gets by default.
func (f *bootForm) defaultNode(i int) (string, string) {
	if f.mode == ModeSandbox {
		addr := fmt.Sprintf("127.0.0.%d", i+1)
		if i > 0 && len(f.addrs) > 0 {
			if a := nthAddress(f.addrs[0].Value(), i); a != "" {
				addr = a
			}
		}
		return fmt.Sprintf("picket-%d", i+1), addr
	}
	if i == 0 {
		name := f.det.HostName
		if name == "" {
			name = "picket-1"
		}
		return name, f.det.HostAddress
	}
	return fmt.Sprintf("picket-%d", i+1), ""
}

// resize keeps the typed names and addresses and fills new rows with defaults.
func (f *bootForm) resize() {
	for len(f.names) < f.size {
		n, a := f.defaultNode(len(f.names))
		f.names = append(f.names, newInput(n, 16))
		f.addrs = append(f.addrs, newInput(a, 24))
	}
	f.names, f.addrs = f.names[:f.size], f.addrs[:f.size]
	f.fields = []field{{kind: fieldMode}, {kind: fieldSize}}
	for i := range f.names {
		f.fields = append(f.fields, field{kind: fieldName, node: i, input: &f.names[i]}, field{kind: fieldAddr, node: i, input: &f.addrs[i]})
	}
	f.fields = append(f.fields, field{kind: fieldPorts, input: &f.ports}, field{kind: fieldDir, input: &f.dir},
		field{kind: fieldTLS}, field{kind: fieldToken, input: &f.token}, field{kind: fieldStart})
	if f.focus >= len(f.fields) {
		f.focus = len(f.fields) - 1
	}
}

func (f *bootForm) focusField(i int) tea.Cmd {
	for _, fl := range f.fields {
		if fl.input != nil {
			fl.input.Blur()
		}
	}
	f.focus = i
	if in := f.fields[i].input; in != nil {
		return in.Focus()
	}
	return nil
}

func (f *bootForm) setSize(w, h int) { f.w, f.h = w, h }

func (f *bootForm) capturesInput() bool { return f.fields[f.focus].input != nil }

func (f *bootForm) keys() helpKeys {
	return helpKeys{
		short: []key.Binding{keys.Next, keys.Prev, key.NewBinding(key.WithKeys("left", "right"), key.WithHelp("←/→", "change")), keys.Enter, keys.Back},
		full: [][]key.Binding{
			{keys.Next, keys.Prev, keys.Enter},
			{key.NewBinding(key.WithKeys("left", "right"), key.WithHelp("←/→", "change size, mode, TLS")), keys.Back},
			{keys.Help, keys.Quit, keys.ForceQuit},
		},
	}
}

func (f *bootForm) update(msg tea.Msg) tea.Cmd {
	km, ok := msg.(tea.KeyMsg)
	if !ok {
		if in := f.fields[f.focus].input; in != nil {
			var cmd tea.Cmd
			*in, cmd = in.Update(msg)
			return cmd
		}
		return nil
	}
	cur := f.fields[f.focus]
	switch {
	case key.Matches(km, keys.Back):
		return func() tea.Msg { return gotoMsg{to: screenHome} }
	case km.String() == "tab" || km.String() == "down":
		return f.focusField((f.focus + 1) % len(f.fields))
	case km.String() == "shift+tab" || km.String() == "up":
		return f.focusField((f.focus + len(f.fields) - 1) % len(f.fields))
	case key.Matches(km, keys.Enter):
		if cur.kind != fieldStart {
			return f.focusField((f.focus + 1) % len(f.fields))
		}
		plan, err := f.plan()
		if err != nil {
			f.err = err.Error()
			return nil
		}
		f.err = ""
		return func() tea.Msg { return startBootstrapMsg{plan: plan} }
	}
	switch cur.kind {
	case fieldSize:
		switch km.String() {
		case "left", "-":
			if f.size > 1 {
				f.size--
			}
		case "right", "+":
			if f.size < maxSize {
				f.size++
			}
		default:
			if n, err := strconv.Atoi(km.String()); err == nil && n >= 1 && n <= maxSize {
				f.size = n
			}
		}
		f.resize()
		return nil
	case fieldMode:
		if km.String() == "left" || km.String() == "right" || km.String() == " " {
			*f = *newBootForm(f.det, 1-f.mode)
			f.setSize(f.w, f.h)
			f.focusField(0)
		}
		return nil
	case fieldTLS:
		if km.String() == "left" || km.String() == "right" || km.String() == " " {
			f.tls = !f.tls
		}
		return nil
	}
	if cur.input != nil {
		before := cur.input.Value()
		var cmd tea.Cmd
		*cur.input, cmd = cur.input.Update(msg)
		if cur.kind == fieldAddr && cur.input.Value() != before {
			if cur.node == 0 && f.mode == ModeSandbox {
				f.followFirst(cur.input.Value())
			} else {
				f.typed[cur.node] = true
			}
		}
		return cmd
	}
	return nil
}

// followFirst moves the sandbox addresses after the first along with it (127.0.6.1
// makes 127.0.6.2, 127.0.6.3…), unless the operator typed them.
func (f *bootForm) followFirst(first string) {
	for i := 1; i < len(f.addrs); i++ {
		if a := nthAddress(first, i); a != "" && !f.typed[i] {
			f.addrs[i].SetValue(a)
		}
	}
}

// nthAddress is the IPv4 address i after first, "" when first is not one.
func nthAddress(first string, i int) string {
	ip := net.ParseIP(first).To4()
	if ip == nil || int(ip[3])+i > 254 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d.%d", ip[0], ip[1], ip[2], int(ip[3])+i)
}

// plan validates the form and returns every problem at once.
func (f *bootForm) plan() (Plan, error) {
	p := Plan{Mode: f.mode, Dir: strings.TrimSpace(f.dir.Value()), TLS: f.tls, Token: strings.TrimSpace(f.token.Value())}
	var probs []string
	seenName, seenAddr := map[string]bool{}, map[string]bool{}
	for i := range f.names {
		n, a := strings.TrimSpace(f.names[i].Value()), strings.TrimSpace(f.addrs[i].Value())
		switch {
		case n == "" || strings.ContainsAny(n, " /\\=,"):
			probs = append(probs, fmt.Sprintf("node %d: name %q must be non-empty without spaces, / = or ,", i+1, n))
		case seenName[n]:
			probs = append(probs, fmt.Sprintf("node %d: name %s is used twice", i+1, n))
		}
		seenName[n] = true
		ip := net.ParseIP(a)
		switch {
		case a == "":
			probs = append(probs, fmt.Sprintf("node %d: address missing", i+1))
		case f.mode == ModeSandbox && (ip == nil || !ip.IsLoopback() || ip.To4() == nil):
			probs = append(probs, fmt.Sprintf("node %d: a sandbox member needs a 127.x.y.z address, not %q", i+1, a))
		case f.mode == ModeSandbox && seenAddr[a]:
			probs = append(probs, fmt.Sprintf("node %d: address %s is used twice", i+1, a))
		}
		seenAddr[a] = true
		p.Nodes = append(p.Nodes, NodePlan{Name: n, Address: a})
	}
	ports := strings.Fields(f.ports.Value())
	var nums []int
	for _, s := range ports {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			probs = append(probs, fmt.Sprintf("port %q is not a number from 1 to 65535", s))
			continue
		}
		nums = append(nums, n)
	}
	if len(ports) != 4 {
		probs = append(probs, "ports: give four, for the API, the agent gateway, etcd clients and etcd peers")
	} else if len(nums) == 4 {
		p.APIPort, p.AgentPort, p.ClientPort, p.PeerPort = nums[0], nums[1], nums[2], nums[3]
	}
	if p.Dir == "" {
		probs = append(probs, "directory: say where configurations and certificates go")
	}
	if p.Token == "" {
		probs = append(probs, "token: give the cluster a unique token")
	}
	if len(probs) > 0 {
		return p, fmt.Errorf("%s", strings.Join(probs, "\n"))
	}
	return p, nil
}

func (f *bootForm) view() string {
	var b strings.Builder
	title := "Bootstrap a new cluster"
	if f.mode == ModeSandbox {
		title = "Start a local sandbox cluster"
	}
	b.WriteString(st.title.Render(title) + "\n\n")
	label := func(i int, text string) string {
		if i == f.focus {
			return st.focus.Render(fmt.Sprintf("%-18s", "▸ "+text))
		}
		return fmt.Sprintf("%-18s", "  "+text)
	}
	short := func(i int, text string) string {
		if i == f.focus {
			return st.focus.Render("▸ " + text)
		}
		return "  " + text
	}
	idx := func(kind fieldKind, node int) int {
		for i, fl := range f.fields {
			if fl.kind == kind && fl.node == node {
				return i
			}
		}
		return -1
	}
	b.WriteString(fmt.Sprintf("%s ‹ %s ›\n", label(idx(fieldMode, 0), "Mode"), f.mode))
	sizeNote := fmt.Sprintf("quorum %d, tolerates %d failure%s", f.size/2+1, (f.size-1)/2, plural((f.size-1)/2))
	if f.size%2 == 0 {
		sizeNote = st.warn.Render(fmt.Sprintf("even: tolerates %d failure%s like %d members, with a bigger quorum; prefer %d or %d",
			(f.size-1)/2, plural((f.size-1)/2), f.size-1, f.size-1, f.size+1))
	}
	b.WriteString(truncate(fmt.Sprintf("%s ‹ %d › %s", label(idx(fieldSize, 0), "Size"), f.size, sizeNote), f.w) + "\n")
	for i := range f.names {
		ni, ai := idx(fieldName, i), idx(fieldAddr, i)
		b.WriteString(fmt.Sprintf("%s %s %s %s\n", label(ni, fmt.Sprintf("Node %d", i+1)),
			pad(f.names[i].View(), 17), short(ai, "address"), f.addrs[i].View()))
	}
	b.WriteString(fmt.Sprintf("%s %s %s\n", label(idx(fieldPorts, 0), "Ports"), f.ports.View(), st.subtle.Render("api agent etcd peer")))
	b.WriteString(fmt.Sprintf("%s %s\n", label(idx(fieldDir, 0), "Directory"), f.dir.View()))
	tls := "on: a new CA, certificates per node, mutual TLS"
	if !f.tls {
		tls = st.warn.Render("off: plaintext (only for a throw-away sandbox)")
	}
	b.WriteString(truncate(fmt.Sprintf("%s ‹ %s", label(idx(fieldTLS, 0), "TLS"), tls+" ›"), f.w) + "\n")
	b.WriteString(fmt.Sprintf("%s %s\n", label(idx(fieldToken, 0), "Cluster token"), f.token.View()))
	start := "[ Start ]"
	if f.fields[f.focus].kind == fieldStart {
		start = st.secret.Render(start)
	}
	b.WriteString("\n  " + start + "\n")
	if f.mode == ModeHosts {
		b.WriteString(st.subtle.Render(truncate("  Node 1 runs here; every other node gets a bundle to copy and one command to run.", f.w)) + "\n")
	} else {
		b.WriteString(st.subtle.Render(truncate("  Every member runs here as a background picket server, its log in its state dir.", f.w)) + "\n")
	}
	if f.err != "" {
		for _, l := range strings.Split(f.err, "\n") {
			b.WriteString(st.bad.Render(truncate("✘ "+l, f.w)) + "\n")
		}
	}
	return b.String()
}

// pad right-pads a rendered field to width cells.
func pad(s string, width int) string {
	if n := width - lipgloss.Width(s); n > 0 {
		return s + strings.Repeat(" ", n)
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
