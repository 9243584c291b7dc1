package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/picketmon/picket/node/client"
)

// runLogin implements `picket login`: it exchanges a username and password for tokens and
// stores them, with the API URL and defaults, for the later commands.
func runLogin(ctx context.Context, env *Env, args []string) error {
	var (
		f                          cliFlags
		username, password, format string
		trustedCA                  string
		insecure                   bool
	)
	fs := newFlagSet(env, "login", cliHelp{
		usage: "picket login [flags]",
		description: `Log in to a Picket API and store the session (API URL, access and refresh tokens)
in cli.json in the configuration directory, with mode 0600. Later commands use it and
refresh the tokens on their own; log in again when the refresh token expires (12 h).

The password comes from --password, else $PICKET_PASSWORD, else a prompt that does not
echo (only in a terminal). The username comes from --username, else $PICKET_USERNAME,
else the stored one, else a prompt.`,
		examples: []string{
			"picket login --api-url http://127.0.0.1:8080 --username admin",
			"PICKET_PASSWORD=secret picket login -u admin --namespace production",
			"picket login --api-url https://picket.example.com:8080 --trusted-ca-file ca.pem -u alice",
		},
	})
	addCommonFlags(fs, &f)
	fs.StringVarP(&username, "username", "u", "", "user to log in as, e.g. -u admin")
	fs.StringVarP(&password, "password", "p", "",
		"password (visible in the process list: prefer $PICKET_PASSWORD or the prompt), e.g. -p 's3cret'")
	fs.StringVar(&format, "format", "", "default output format of list and get to store: table, json or yaml, e.g. --format yaml")
	fs.StringVar(&trustedCA, "trusted-ca-file", "", "PEM file of the CA that signed the API's certificate, e.g. --trusted-ca-file /etc/picket/ca.pem")
	fs.BoolVar(&insecure, "insecure-skip-tls-verify", false, "do not verify the API's TLS certificate (testing only), e.g. --insecure-skip-tls-verify")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q; run 'picket login --help'", fs.Arg(0))
	}
	if format != "" {
		if err := checkFormat(format, "table", "json", "yaml"); err != nil {
			return err
		}
	}

	dir, err := configDirFor(env, f.configDir)
	if err != nil {
		return err
	}
	stored, err := client.Load(dir)
	if err != nil {
		return err
	}
	apiURL, err := resolveAPIURL(env, f.apiURL, stored)
	if err != nil {
		return err
	}
	storedURL, _ := client.NormalizeURL(stored.APIURL)
	sameServer := storedURL == apiURL

	cfg := client.Config{APIURL: apiURL, Namespace: f.namespace, Format: format,
		TrustedCAFile: trustedCA, InsecureSkipTLSVerify: insecure}
	if sameServer {
		// Logging in again to the same server keeps its TLS settings and defaults.
		if cfg.TrustedCAFile == "" && !fs.Changed("insecure-skip-tls-verify") {
			cfg.TrustedCAFile, cfg.InsecureSkipTLSVerify = stored.TrustedCAFile, stored.InsecureSkipTLSVerify
		}
		if cfg.Namespace == "" {
			cfg.Namespace = stored.Namespace
		}
		if cfg.Format == "" {
			cfg.Format = stored.Format
		}
	}

	in := bufio.NewReader(env.Stdin)
	if username == "" {
		username = env.Getenv("PICKET_USERNAME")
	}
	if username == "" && sameServer {
		username = stored.Username
	}
	if username == "" {
		if !env.Interactive {
			return usageErrorf("no username: give --username (or set $PICKET_USERNAME)")
		}
		fmt.Fprint(env.Stderr, "Username: ")
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read username: %w", err)
		}
		username = strings.TrimSpace(line)
		if username == "" {
			return usageErrorf("no username given")
		}
	}
	if password == "" {
		password = env.Getenv("PICKET_PASSWORD")
	}
	if password == "" {
		if !env.Interactive {
			return usageErrorf("no password: set $PICKET_PASSWORD or give --password (or run in a terminal to be asked)")
		}
		fmt.Fprintf(env.Stderr, "Password for %s: ", username)
		password, err = readPassword(env.Stdin, in)
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return fmt.Errorf("read password: %w", err)
		}
		if password == "" {
			return usageErrorf("no password given")
		}
	}

	c, err := client.New(cfg, client.Options{ConfigDir: dir})
	if err != nil {
		return err
	}
	s := &session{client: c, apiURL: apiURL, configDir: dir}
	if err := c.Login(ctx, username, password); err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) {
			return fmt.Errorf("log in to %s as %s: %v", apiURL, username, ae)
		}
		return s.explain(fmt.Errorf("log in to %s: %w", apiURL, err))
	}
	fmt.Fprintf(env.Stdout, "Logged in to %s as %s\n", apiURL, username)
	return nil
}

// readPassword reads a password without echo when stdin is a terminal, else one line.
func readPassword(stdin io.Reader, buffered *bufio.Reader) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b, err := term.ReadPassword(int(f.Fd()))
		return string(b), err
	}
	line, err := buffered.ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
