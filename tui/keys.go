package tui

import "github.com/charmbracelet/bubbles/key"

// keyMap holds every binding of the console; each screen shows the ones it uses.
type keyMap struct {
	Up, Down, Left, Right key.Binding
	Next, Prev            key.Binding
	Enter                 key.Binding
	Back                  key.Binding
	Quit                  key.Binding
	ForceQuit             key.Binding
	Help                  key.Binding
	Replace               key.Binding
	Join                  key.Binding
	Bootstrap             key.Binding
	Refresh               key.Binding
	Confirm               key.Binding
	Home                  key.Binding
}

var keys = keyMap{
	Up:        key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
	Down:      key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
	Left:      key.NewBinding(key.WithKeys("left"), key.WithHelp("←", "less")),
	Right:     key.NewBinding(key.WithKeys("right"), key.WithHelp("→", "more")),
	Next:      key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab/↓", "next field")),
	Prev:      key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab/↑", "previous field")),
	Enter:     key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "select")),
	Back:      key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
	Quit:      key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
	ForceQuit: key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit now")),
	Help:      key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
	Replace:   key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "replace member")),
	Join:      key.NewBinding(key.WithKeys("J"), key.WithHelp("J", "join a node")),
	Bootstrap: key.NewBinding(key.WithKeys("b"), key.WithHelp("b", "bootstrap")),
	Refresh:   key.NewBinding(key.WithKeys("ctrl+r"), key.WithHelp("ctrl+r", "refresh now")),
	Confirm:   key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "yes, go")),
	Home:      key.NewBinding(key.WithKeys("h"), key.WithHelp("h", "home")),
}

// helpKeys is a screen's bindings for the help line (short) and the `?` view (full).
type helpKeys struct {
	short []key.Binding
	full  [][]key.Binding
}

func (h helpKeys) ShortHelp() []key.Binding  { return h.short }
func (h helpKeys) FullHelp() [][]key.Binding { return h.full }
