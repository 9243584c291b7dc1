package app

// This file holds what the resource commands (login, create, dump, list, get, delete)
// share: their flag sets and help, how they find the stored session, and how they turn
// API errors into messages that say what to do next.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/spf13/pflag"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
)

// cliFlags are the flags every resource command accepts.
type cliFlags struct {
	apiURL    string
	configDir string
	namespace string
}

// cliHelp is the help text of one command, printed by --help.
type cliHelp struct {
	usage       string // e.g. "picket list KIND [flags]"
	description string
	examples    []string
}

// helpWidth is the width help texts are wrapped to.
const helpWidth = 80

// newFlagSet returns a flag set for command name whose --help prints help on stdout.
// Parse errors are not printed by pflag: parseFlags turns them into usage errors.
func newFlagSet(env *Env, name string, help cliHelp) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.Usage = func() {
		w := env.Stdout
		var desc []string
		for _, para := range helpParagraphs(help.description) {
			desc = append(desc, wrapText(para, helpWidth)...)
		}
		fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags:\n", help.usage, strings.Join(desc, "\n"))
		fs.SetOutput(w)
		fmt.Fprint(w, fs.FlagUsagesWrapped(helpWidth))
		fs.SetOutput(io.Discard)
		fmt.Fprintln(w, "\nEnvironment: PICKET_API_URL, PICKET_NAMESPACE and PICKET_CONFIG_DIR stand in for")
		fmt.Fprintln(w, "the flags; PICKET_API_KEY authenticates with an API key instead of the session.")
		if len(help.examples) > 0 {
			fmt.Fprintln(w, "\nExamples:")
			for _, ex := range help.examples {
				fmt.Fprintf(w, "  %s\n", ex)
			}
		}
	}
	return fs
}

// helpParagraphs splits a help description into the lines to wrap: each paragraph (a
// run of lines neither blank nor indented) joined into one, so that it is broken at
// helpWidth and not where the source's lines happened to end; blank and indented lines
// (examples, lists) as they are.
func helpParagraphs(s string) []string {
	var out []string
	var para []string
	flush := func() {
		if len(para) > 0 {
			out = append(out, strings.Join(para, " "))
			para = nil
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		line = strings.TrimRight(line, " ")
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			flush()
			out = append(out, line)
			continue
		}
		para = append(para, line)
	}
	flush()
	return out
}

// addCommonFlags registers --api-url, --namespace/-n and --config-dir.
func addCommonFlags(fs *pflag.FlagSet, f *cliFlags) {
	fs.StringVar(&f.apiURL, "api-url", "",
		"API to talk to, e.g. https://picket.example.com:8080 (default: $PICKET_API_URL, else the one 'picket login' stored, else "+client.DefaultAPIURL+")")
	fs.StringVarP(&f.namespace, "namespace", "n", "",
		"namespace of the resources, e.g. -n production (default: $PICKET_NAMESPACE, else the one 'picket login' stored, else default)")
	fs.StringVar(&f.configDir, "config-dir", "",
		"directory holding cli.json with the stored session, e.g. --config-dir ~/.picket-test (default: $PICKET_CONFIG_DIR, else ~/.config/picket)")
}

// parseFlags parses args. help is true when --help was asked for (and printed): the
// command should then return nil.
func parseFlags(fs *pflag.FlagSet, args []string) (help bool, err error) {
	err = fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		return true, nil
	}
	if err != nil {
		return false, usageErrorf("%v; run 'picket %s --help' for the flags", err, fs.Name())
	}
	return false, nil
}

// session is what a resource command works with: the API client and the settings
// resolved from flags, environment and the stored configuration.
type session struct {
	client    *client.Client
	apiURL    string
	namespace string
	stored    *client.Config // as loaded from configDir
	configDir string
}

// configDirFor resolves the configuration directory: the flag, else $PICKET_CONFIG_DIR,
// else the user's configuration directory.
func configDirFor(env *Env, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	return client.DefaultDir(env.Getenv)
}

// resolveAPIURL picks the API URL: the flag, else $PICKET_API_URL, else the stored one,
// else the default.
func resolveAPIURL(env *Env, flag string, stored *client.Config) (string, error) {
	raw := flag
	if raw == "" {
		raw = env.Getenv("PICKET_API_URL")
	}
	if raw == "" {
		raw = stored.APIURL
	}
	if raw == "" {
		raw = client.DefaultAPIURL
	}
	u, err := client.NormalizeURL(raw)
	if err != nil {
		return "", usageErrorf("%v", err)
	}
	return u, nil
}

// openSession loads the stored configuration and builds a client for the resolved API URL.
// The stored tokens are sent only to the server they were issued by: with another
// --api-url the user must log in to that server (or set $PICKET_API_KEY).
func openSession(env *Env, f *cliFlags) (*session, error) {
	dir, err := configDirFor(env, f.configDir)
	if err != nil {
		return nil, err
	}
	stored, err := client.Load(dir)
	if err != nil {
		return nil, err
	}
	apiURL, err := resolveAPIURL(env, f.apiURL, stored)
	if err != nil {
		return nil, err
	}
	s := &session{apiURL: apiURL, stored: stored, configDir: dir}
	s.namespace = f.namespace
	if s.namespace == "" {
		s.namespace = env.Getenv("PICKET_NAMESPACE")
	}
	if s.namespace == "" {
		s.namespace = stored.Namespace
	}
	if s.namespace == "" {
		s.namespace = "default"
	}

	apiKey := env.Getenv("PICKET_API_KEY")
	storedURL, _ := client.NormalizeURL(stored.APIURL)
	var cfg client.Config
	opts := client.Options{APIKey: apiKey}
	if storedURL == apiURL {
		cfg = *stored
		cfg.APIURL = apiURL
		opts.ConfigDir = dir // refreshed tokens are saved for the next command
	} else {
		cfg = client.Config{APIURL: apiURL}
	}
	if apiKey == "" && cfg.AccessToken == "" {
		hint := fmt.Sprintf("run 'picket login --api-url %s' first", apiURL)
		if stored.AccessToken != "" && storedURL != apiURL {
			return nil, fmt.Errorf("not logged in to %s (the stored session is for %s); %s", apiURL, storedURL, hint)
		}
		return nil, fmt.Errorf("not logged in to %s; %s", apiURL, hint)
	}
	s.client, err = client.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// explain turns an error from the client into a message that says what to do next.
func (s *session) explain(err error) error {
	login := fmt.Sprintf("run 'picket login --api-url %s' to log in again", s.apiURL)
	switch {
	case errors.Is(err, client.ErrSessionExpired), errors.Is(err, client.ErrNotLoggedIn):
		return fmt.Errorf("%v; %s", err, login)
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted")
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusUnauthorized:
			return fmt.Errorf("%s refused the credentials (%v); %s", s.apiURL, ae, login)
		case http.StatusForbidden:
			return fmt.Errorf("permission denied: %v", ae)
		}
		return err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("%v; is a Picket server running at %s? (set it with --api-url)", err, s.apiURL)
	}
	return err
}

// lookupKind finds a kind by any of its names, or returns a usage error listing them.
func lookupKind(name string) (events.Kind, error) {
	k, ok := events.LookupKind(name)
	if !ok {
		return events.Kind{}, usageErrorf("unknown kind %q; valid kinds: %s", name, strings.Join(events.KindNames(), ", "))
	}
	return k, nil
}

// singular is the lowercase name of one resource of kind k, for messages such as
// "Deleted check cpu".
func singular(k events.Kind) string {
	switch k.Plural {
	case "checks":
		return "check"
	case "entities":
		return "entity"
	case "events":
		return "event"
	case "handlers":
		return "handler"
	case "filters":
		return "filter"
	case "mutators":
		return "mutator"
	case "silenced":
		return "silence"
	case "hooks":
		return "hook"
	case "assets":
		return "asset"
	case "namespaces":
		return "namespace"
	case "users":
		return "user"
	case "apikeys":
		return "API key"
	}
	for _, a := range k.Aliases {
		if a != k.Type && a != k.Plural {
			return strings.ToLower(a)
		}
	}
	return strings.ToLower(k.Type)
}

// where describes the namespace part of a message: " in namespace x", or "" for
// cluster-wide kinds.
func where(k events.Kind, ns, prep string) string {
	if !k.Namespaced {
		return ""
	}
	return fmt.Sprintf(" %s namespace %s", prep, ns)
}

// checkFormat validates a --format value against the allowed ones.
func checkFormat(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return usageErrorf("--format %q: want %s", format, strings.Join(allowed, ", "))
}

// plural returns "1 resource" or "n resources".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
