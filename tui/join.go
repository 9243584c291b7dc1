package tui

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/picketmon/picket/node/cluster"
)

// joinForm asks how to reach the cluster and what this node is called.
type joinForm struct {
	session *cluster.Client
	labels  []string
	inputs  []textinput.Model
	focus   int // len(inputs) is the [ Join ] button
	w, h    int
	err     string
}

const (
	jAPI = iota
	jUser
	jPass
	jCA
	jName
	jAddr
	jPorts
	jDir
	jCerts
)

type startJoinMsg struct{ req JoinRequest }

// joinDefaults are what the form starts with.
type joinDefaults struct {
	apiURL, ca, name, addr, dir, certs string
}

func newJoinForm(s *Session, d joinDefaults) *joinForm {
	f := &joinForm{labels: []string{"Member API URL", "Username", "Password", "CA file", "Node name", "Address", "Ports", "Directory", "Certificates"}}
	vals := []string{d.apiURL, "admin", "", d.ca, d.name, d.addr, "8080 8081 2379 2380", d.dir, d.certs}
	widths := []int{40, 16, 24, 48, 16, 24, 24, 48, 48}
	for i, v := range vals {
		in := newInput(v, widths[i])
		if i == jPass {
			in.EchoMode = textinput.EchoPassword
			in.EchoCharacter = '•'
		}
		f.inputs = append(f.inputs, in)
	}
	if s != nil {
		f.session = s.Client
	}
	f.setFocus(0)
	return f
}

func (f *joinForm) setFocus(i int) tea.Cmd {
	for j := range f.inputs {
		f.inputs[j].Blur()
	}
	f.focus = i
	if i < len(f.inputs) {
		return f.inputs[i].Focus()
	}
	return nil
}

func (f *joinForm) setSize(w, h int)    { f.w, f.h = w, h }
func (f *joinForm) capturesInput() bool { return f.focus < len(f.inputs) }

func (f *joinForm) keys() helpKeys {
	return helpKeys{
		short: []key.Binding{keys.Next, keys.Prev, keys.Enter, keys.Back},
		full:  [][]key.Binding{{keys.Next, keys.Prev, keys.Enter}, {keys.Back, keys.Help, keys.ForceQuit}},
	}
}

func (f *joinForm) update(msg tea.Msg) tea.Cmd {
	km, ok := msg.(tea.KeyMsg)
	if ok {
		n := len(f.inputs) + 1
		switch {
		case key.Matches(km, keys.Back):
			return func() tea.Msg { return gotoMsg{to: screenHome} }
		case km.String() == "tab" || km.String() == "down":
			return f.setFocus((f.focus + 1) % n)
		case km.String() == "shift+tab" || km.String() == "up":
			return f.setFocus((f.focus + n - 1) % n)
		case key.Matches(km, keys.Enter):
			if f.focus < len(f.inputs) {
				return f.setFocus(f.focus + 1)
			}
			req, err := f.request()
			if err != nil {
				f.err = err.Error()
				return nil
			}
			f.err = ""
			return func() tea.Msg { return startJoinMsg{req: req} }
		}
	}
	if f.focus < len(f.inputs) {
		var cmd tea.Cmd
		f.inputs[f.focus], cmd = f.inputs[f.focus].Update(msg)
		return cmd
	}
	return nil
}

func (f *joinForm) request() (JoinRequest, error) {
	v := func(i int) string { return strings.TrimSpace(f.inputs[i].Value()) }
	r := JoinRequest{APIURL: v(jAPI), Username: v(jUser), Password: f.inputs[jPass].Value(), TrustedCAFile: v(jCA),
		Name: v(jName), Address: v(jAddr), Dir: v(jDir), CertsDir: v(jCerts), Session: f.session}
	var probs []string
	if r.APIURL == "" {
		probs = append(probs, "member API URL: give one member's API, e.g. https://10.0.0.1:8080")
	}
	if r.Session == nil && (r.Username == "" || r.Password == "") {
		probs = append(probs, "username and password of a cluster admin are needed")
	}
	if r.Name == "" || strings.ContainsAny(r.Name, " /\\=,") {
		probs = append(probs, "node name: non-empty, without spaces, / = or ,")
	}
	if r.Address == "" || (net.ParseIP(r.Address) == nil && strings.ContainsAny(r.Address, " /:")) {
		probs = append(probs, "address: this node's IP address or DNS name")
	}
	ports := strings.Fields(v(jPorts))
	if len(ports) != 4 {
		probs = append(probs, "ports: give four, for the API, the agent gateway, etcd clients and etcd peers")
	} else {
		var nums [4]int
		for i, s := range ports {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 65535 {
				probs = append(probs, fmt.Sprintf("port %q is not a number from 1 to 65535", s))
			}
			nums[i] = n
		}
		r.APIPort, r.AgentPort, r.ClientPort, r.PeerPort = nums[0], nums[1], nums[2], nums[3]
	}
	if r.Dir == "" {
		probs = append(probs, "directory: where this node's configuration and state go")
	}
	if len(probs) > 0 {
		return r, fmt.Errorf("%s", strings.Join(probs, "\n"))
	}
	return r, nil
}

func (f *joinForm) view() string {
	var b strings.Builder
	b.WriteString(st.title.Render("Join an existing cluster") + "\n\n")
	for i, l := range f.labels {
		label := fmt.Sprintf("%-18s", "  "+l)
		if i == f.focus {
			label = st.focus.Render(fmt.Sprintf("%-18s", "▸ "+l))
		}
		val := f.inputs[i].View()
		if (i == jUser || i == jPass) && f.session != nil && f.inputs[i].Value() == "" {
			val += st.subtle.Render("(the console's session is used)")
		}
		b.WriteString(truncate(fmt.Sprintf("%s %s", label, val), f.w) + "\n")
	}
	btn := "[ Join ]"
	if f.focus == len(f.inputs) {
		btn = st.secret.Render(btn)
	}
	b.WriteString("\n  " + btn + "\n")
	b.WriteString(st.subtle.Render(truncate("  Adds this node as a learner, writes its config with etcd-initial-cluster-state: existing,", f.w)) + "\n")
	b.WriteString(st.subtle.Render(truncate("  starts it, and promotes it to a voter once it has caught up.", f.w)) + "\n")
	if f.err != "" {
		for _, l := range strings.Split(f.err, "\n") {
			b.WriteString(st.bad.Render(truncate("✘ "+l, f.w)) + "\n")
		}
	}
	return b.String()
}
