package app

// `picket console`: the terminal UI (package tui), and the Host it acts on this machine
// through: detection, sandbox and multi-host bootstrap, join, and the local members
// that replace stops, wipes and starts.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/picketmon/picket/tui"
)

const consoleDescription = `Opens the console, Picket's terminal UI: it bootstraps a new cluster (a local sandbox on
127.0.0.x, or this host and others with a bundle per host), joins this host to an existing
cluster, shows every member's health live and replaces a faulty member in place.

It needs a terminal. For scripts, the same operations are 'picket cluster health',
'picket cluster member-list', 'picket cluster member-add' and 'picket cluster replace NAME'.
'picket' without a command opens the console when run in a terminal.`

func runConsole(ctx context.Context, env *Env, args []string) error {
	fs := newModeFlags("console", "console [flags]", consoleDescription, env)
	configFile := fs.StringP("config-file", "c", "", "this host's backend.yml (default "+DefaultBackendConfigFile+" when present)")
	configDir := fs.String("config-dir", "", "directory of the CLI's stored login (default: $PICKET_CONFIG_DIR, else ~/.config/picket)")
	sandboxDir := fs.String("sandbox-dir", "", "directory of the local sandbox (default: $XDG_DATA_HOME/picket/sandbox or ~/.local/share/picket/sandbox)")
	if err := parseModeFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (see 'picket console --help')", fs.Arg(0))
	}
	if !env.Interactive {
		return errors.New("the console needs a terminal (stdin and stdout); in scripts use 'picket cluster health', " +
			"'picket cluster member-list', 'picket cluster member-add' or 'picket cluster replace NAME' instead")
	}
	h, err := newConsoleHost(env, *configFile, *configDir, *sandboxDir)
	if err != nil {
		return err
	}
	// Colours are fixed (the console never queries the background, which tmux may never
	// answer); NO_COLOR or a dumb terminal turn them off.
	if env.Getenv("NO_COLOR") != "" || env.Getenv("TERM") == "dumb" {
		lipgloss.SetColorProfile(termenv.Ascii)
	}
	m := tui.New(ctx, tui.Options{Host: h})
	defer m.Close()
	opts := []tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx), tea.WithInput(env.Stdin), tea.WithOutput(env.Stdout)}
	if _, err := tea.NewProgram(m, opts...).Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) && ctx.Err() == nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// quietEnv is the Env the console's background work runs commands with: their output
// must not reach the terminal the UI draws on.
func quietEnv(env *Env, extra map[string]string) *Env {
	return &Env{
		Stdin: eofReader{}, Stdout: io.Discard, Stderr: io.Discard,
		Getenv: func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return env.Getenv(k)
		},
		Environ: env.Environ,
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func randomToken(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func defaultSandboxDir(env *Env) string {
	if d := env.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "picket", "sandbox")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "picket-sandbox")
	}
	return filepath.Join(home, ".local", "share", "picket", "sandbox")
}
