// Package app is Picket's command line: mode dispatch, flags, configuration loading,
// logging, signals and exit codes, and the operator subcommands with their output formats.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"golang.org/x/term"
)

// Env is what a command may touch of the outside world, so tests can run commands
// in-process with their own streams and environment.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads an environment variable.
	Getenv func(string) string
	// Environ lists the environment as KEY=VALUE pairs.
	Environ func() []string
	// Interactive is true when stdin and stdout are terminals (prompts are allowed).
	Interactive bool
}

// command is one subcommand of the picket binary.
type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"server":   {"run a backend node (etcd member, REST API, agent gateway)", runServer},
		"agent":    {"run an agent: keepalives, checks and the local agent API on this host", runAgent},
		"init":     {"seed a new cluster: default namespace, admin user, agent user", runInit},
		"login":    {"log in to a Picket API and store the tokens for later commands", runLogin},
		"create":   {"create or replace resources from wrapped YAML/JSON files (-f)", runCreate},
		"dump":     {"write resources in the wrapped format, for backup or migration", runDump},
		"list":     {"list resources of a kind", runList},
		"get":      {"show one resource", runGet},
		"delete":   {"delete one resource", runDelete},
		"version":  {"print the version, commit and build date", runVersion},
		"bench":    {"measure a backend with simulated agents and load", runBench},
		"silence":  {"silence events of a subscription, a check, or both", runSilence},
		"cluster":  {"cluster health, members (list, add, remove, update, replace) and task owners", runCluster},
		"certs":    {"create a CA and per-node and client certificates for a TLS cluster", runCerts},
		"snapshot": {"save an etcd snapshot of the cluster, or restore one into a new data dir", runSnapshot},
		"console":  {"the terminal UI: bootstrap, join, live member health, replace (default in a terminal)", runConsole},
	}
}

// exitError carries a specific exit code up to Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports bad command-line input; Main exits 2 for it.
func usageErrorf(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// Main runs picket with the given arguments (without the program name) and returns the
// process exit code: 0 success, 1 failure, 2 bad usage. It is the only place exit codes
// are decided.
func Main(ctx context.Context, args []string) int {
	env := &Env{
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		Getenv:      os.Getenv,
		Environ:     os.Environ,
		Interactive: term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())),
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, env, args)
}

// Run dispatches one command line with the given environment and returns the exit code.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 && env.Interactive {
		args = []string{"console"}
	}
	if len(args) == 0 {
		usage(env.Stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(env.Stdout)
		return 0
	case "-v", "--version":
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.Stderr, "picket: unknown command %q\n\n", name)
		usage(env.Stderr)
		return 2
	}
	err := cmd.run(ctx, env, args[1:])
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.code == 0 {
			return 0
		}
		fmt.Fprintf(env.Stderr, "picket %s: %v\n", name, ee.err)
		return ee.code
	}
	fmt.Fprintf(env.Stderr, "picket %s: %v\n", name, err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Picket is a monitoring system: one binary for the server, the agent and the console.")
	fmt.Fprintln(w, "\nUsage: picket COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'picket COMMAND --help' for the flags of a command.")
	fmt.Fprintln(w, "Quick start: 'picket server --dev' runs a throw-away single node.")
}
