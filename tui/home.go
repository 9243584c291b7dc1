package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

type homeItem struct {
	title, desc string
	do          func() tea.Msg
}

// homeModel shows what is on this host and offers what makes sense next.
type homeModel struct {
	det   *Detection
	items []homeItem
	sel   int
	w, h  int
	err   error
}

func newHome(det *Detection) *homeModel {
	h := &homeModel{det: det}
	if det == nil {
		return h
	}
	if det.Conn != nil {
		conn := det.Conn
		h.items = append(h.items, homeItem{"Open the dashboard", "live health of the cluster at " + strings.Join(conn.APIURLs, ", "),
			func() tea.Msg { return connectMsg{conn: conn} }})
	}
	h.items = append(h.items,
		homeItem{"Start a local sandbox", "a cluster of 1, 3, 5 or 7 members on this machine (127.0.0.x), to try Picket",
			func() tea.Msg { return gotoMsg{to: screenBootstrap} }},
		homeItem{"Bootstrap a new cluster", "this host and others: configs, certificates and a bundle per host",
			func() tea.Msg { return bootstrapHostsMsg{} }},
		homeItem{"Join an existing cluster", "add this host as a new member, given one member's API and credentials",
			func() tea.Msg { return gotoMsg{to: screenJoin} }},
	)
	return h
}

type bootstrapHostsMsg struct{}

func (h *homeModel) setSize(w, hh int)   { h.w, h.h = w, hh }
func (h *homeModel) capturesInput() bool { return false }

func (h *homeModel) keys() helpKeys {
	return helpKeys{
		short: []key.Binding{keys.Up, keys.Down, keys.Enter, keys.Help, keys.Quit},
		full:  [][]key.Binding{{keys.Up, keys.Down, keys.Enter}, {keys.Help, keys.Quit, keys.ForceQuit}},
	}
}

func (h *homeModel) update(msg tea.Msg) tea.Cmd {
	km, ok := msg.(tea.KeyMsg)
	if !ok {
		return nil
	}
	switch {
	case key.Matches(km, keys.Up):
		if h.sel > 0 {
			h.sel--
		}
	case key.Matches(km, keys.Down):
		if h.sel < len(h.items)-1 {
			h.sel++
		}
	case key.Matches(km, keys.Enter):
		if h.sel < len(h.items) {
			h.err = nil
			return h.items[h.sel].do
		}
	}
	return nil
}

func (h *homeModel) view() string {
	var b strings.Builder
	b.WriteString(st.title.Render("Picket console") + "\n\n")
	if h.det == nil {
		b.WriteString("Looking at this host…\n")
		return b.String()
	}
	d := h.det
	b.WriteString(st.header.Render("This host") + "\n")
	line := func(k, v string) { b.WriteString(truncate(fmt.Sprintf("  %-14s %s", k, v), h.w) + "\n") }
	if d.ConfigFile != "" {
		line("config", fmt.Sprintf("%s (member %s)", d.ConfigFile, d.NodeName))
	} else {
		line("config", "none (no backend.yml)")
	}
	if d.StateDir != "" {
		data := "empty"
		if d.HasData {
			data = "holds an etcd member"
		}
		line("state dir", d.StateDir+" — "+data)
	}
	if d.ServerRunning {
		line("server", st.ok.Render("running"))
	} else if d.ConfigFile != "" {
		line("server", st.warn.Render("not running"))
	}
	if d.Sandbox != "" {
		line("sandbox", d.Sandbox)
	}
	if d.Conn != nil {
		line("cluster", strings.Join(d.Conn.APIURLs, ", "))
	} else {
		line("cluster", "none known (no sandbox, no stored login)")
	}
	for _, n := range d.Notes {
		b.WriteString(st.subtle.Render(truncate("  "+n, h.w)) + "\n")
	}
	b.WriteString("\n" + st.header.Render("What next?") + "\n")
	for i, it := range h.items {
		mark, title := "  ", it.title
		if i == h.sel {
			mark, title = "▸ ", st.focus.Render(it.title)
		}
		b.WriteString(mark + title + "\n")
		b.WriteString(st.subtle.Render(truncate("    "+it.desc, h.w)) + "\n")
	}
	if h.err != nil {
		b.WriteString("\n" + st.bad.Render(truncate("✘ "+h.err.Error(), h.w)) + "\n")
	}
	return b.String()
}
