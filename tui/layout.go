package tui

import (
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

type col struct {
	title string
	width int
}

func headerCells(cols []col) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.title
	}
	return out
}

// renderRow lays cells out in fixed-width columns; cells may already be styled.
func renderRow(cols []col, cells []string, style lipgloss.Style) string {
	var b strings.Builder
	for i, c := range cols {
		cell := ""
		if i < len(cells) {
			cell = cells[i]
		}
		cell = ansi.Truncate(cell, c.width-1, "…")
		pad := c.width - lipgloss.Width(cell)
		if pad < 0 {
			pad = 0
		}
		if i == len(cols)-1 {
			pad = 0
		}
		if lipgloss.Width(cell) == len(cell) { // plain text: style it
			cell = style.Render(cell)
		}
		b.WriteString(cell + strings.Repeat(" ", pad))
	}
	return strings.TrimRight(b.String(), " ")
}

// truncate cuts s to width cells (0: no limit).
func truncate(s string, width int) string {
	if width <= 0 {
		return s
	}
	return ansi.Truncate(s, width, "…")
}

// wrapJoin joins items after prefix with sep, wrapping at width; it ends with a newline.
func wrapJoin(prefix string, items []string, sep string, width int) string {
	if width <= 0 {
		width = 80
	}
	var b strings.Builder
	line := prefix
	for i, it := range items {
		add := it
		if i > 0 {
			add = sep + it
		}
		if lipgloss.Width(line+add) > width && line != prefix {
			b.WriteString(line + "\n")
			line = strings.Repeat(" ", len(prefix)) + it
			continue
		}
		line += add
	}
	b.WriteString(truncate(line, width) + "\n")
	return b.String()
}
