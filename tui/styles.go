package tui

import (
	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/lipgloss"
)

// Colours are fixed ANSI colours, readable on dark and light backgrounds alike: the
// console never asks the terminal for its background (tmux may never answer). Every
// state is also spelled out in text, so nothing depends on colour (NO_COLOR, Ascii).
var (
	colRed    = lipgloss.Color("1")
	colGreen  = lipgloss.Color("2")
	colYellow = lipgloss.Color("3")
	colBlue   = lipgloss.Color("4")
	colGrey   = lipgloss.Color("8")
)

type styles struct {
	title     lipgloss.Style
	subtle    lipgloss.Style
	header    lipgloss.Style
	selected  lipgloss.Style
	ok        lipgloss.Style
	bad       lipgloss.Style
	badBanner lipgloss.Style
	warn      lipgloss.Style
	key       lipgloss.Style
	focus     lipgloss.Style
	box       lipgloss.Style
	secret    lipgloss.Style
}

func newStyles() styles {
	return styles{
		title:     lipgloss.NewStyle().Bold(true).Foreground(colBlue),
		subtle:    lipgloss.NewStyle().Foreground(colGrey),
		header:    lipgloss.NewStyle().Bold(true).Underline(true),
		selected:  lipgloss.NewStyle().Bold(true),
		ok:        lipgloss.NewStyle().Foreground(colGreen),
		bad:       lipgloss.NewStyle().Bold(true).Foreground(colRed),
		badBanner: lipgloss.NewStyle().Bold(true).Reverse(true).Foreground(colRed),
		warn:      lipgloss.NewStyle().Foreground(colYellow),
		key:       lipgloss.NewStyle().Bold(true),
		focus:     lipgloss.NewStyle().Bold(true).Foreground(colBlue),
		box:       lipgloss.NewStyle().Border(lipgloss.NormalBorder()).Padding(0, 1),
		secret:    lipgloss.NewStyle().Bold(true).Reverse(true),
	}
}

var st = newStyles()

// spinnerKind animates running steps; tests replace it with a single frame so that
// golden files do not depend on timing.
var spinnerKind = spinner.Line
