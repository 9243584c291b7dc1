package app

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node"
)

const initDescription = `Seeds a new cluster through its etcd: the default namespace, an admin user
(group cluster-admins) and an agent user (group system:agents). Run it once, against a
running server's etcd; running it again changes nothing.

The admin password comes from --cluster-admin-password, else the environment variable
PICKET_BACKEND_CLUSTER_ADMIN_PASSWORD, else a prompt when run in a terminal, else it is
generated and printed once. There is no built-in default password. The agent password
works the same way (--agent-password, PICKET_BACKEND_AGENT_PASSWORD, generated).

etcd is reached at etcd-client-urls, else at etcd-advertise-client-urls, with the same
TLS keys and configuration file as 'picket server'.

Examples:
  picket init                                   # local server with default config
  picket init --etcd-client-urls https://10.0.0.1:2379 --etcd-trusted-ca-file ca.pem \
    --etcd-cert-file client.pem --etcd-key-file client-key.pem`

func runInit(ctx context.Context, env *Env, args []string) error {
	fs := newModeFlags("init", "init [flags]", initDescription, env)
	configFile := fs.StringP("config-file", "c", "", "config file to read (default /etc/picket/backend.yml when present)")
	adminUser := fs.String("cluster-admin-username", "admin", "name of the admin user to create")
	adminPass := fs.String("cluster-admin-password", "", "password of the admin user (prefer the environment variable; flags show in ps)")
	agentPass := fs.String("agent-password", "", "password of the agent user (default: PICKET_BACKEND_AGENT_PASSWORD, else generated)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for etcd")
	addBackendFlags(fs)
	if err := parseModeFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadBackendConfig(env, fs, *configFile)
	if err != nil {
		return err
	}
	if *adminUser == "" {
		return usageErrorf("--cluster-admin-username must not be empty")
	}
	ecfg := cfg.etcdClientConfig()
	endpoints := ecfg.Endpoints
	if len(endpoints) == 0 {
		return usageErrorf("no etcd to talk to: set --etcd-client-urls")
	}

	cli, err := etcdx.NewClient(ecfg)
	if err != nil {
		return fmt.Errorf("connect to etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	defer cli.Close()
	store := etcdx.NewStore(cli)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// Find out first whether there is anything to do, so no password is asked for or
	// printed on a second run.
	if _, err := store.Get(ctx, etcdx.Key("meta", "initialized")); err == nil {
		fmt.Fprintln(env.Stdout, "Cluster is already initialized; nothing changed.")
		return nil
	} else if !errors.Is(err, etcdx.ErrNotFound) {
		return fmt.Errorf("etcd at %s did not answer within %s: %w; is 'picket server' running there?", strings.Join(endpoints, ","), *timeout, err)
	}

	var generated []string
	admin, err := choosePassword(env, *adminPass, "PICKET_BACKEND_CLUSTER_ADMIN_PASSWORD", "admin user "+*adminUser, true)
	if err != nil {
		return err
	}
	if admin.generated {
		generated = append(generated, fmt.Sprintf("  %-8s %s", *adminUser, admin.password))
	}
	agent, err := choosePassword(env, *agentPass, "PICKET_BACKEND_AGENT_PASSWORD", "agent user", false)
	if err != nil {
		return err
	}
	if agent.generated {
		generated = append(generated, fmt.Sprintf("  %-8s %s", "agent", agent.password))
	}
	err = node.Initialize(ctx, store, node.InitOptions{
		AdminUsername: *adminUser, AdminPassword: admin.password,
		AgentUsername: "agent", AgentPassword: agent.password,
	})
	if errors.Is(err, node.ErrAlreadyInitialized) {
		fmt.Fprintln(env.Stdout, "Cluster is already initialized; nothing changed.")
		return nil
	}
	if err != nil {
		var ve events.ValidationError
		if errors.As(err, &ve) {
			return usageErrorf("%v", err)
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "Cluster initialized: namespace default, admin user %s, agent user agent.\n", *adminUser)
	if len(generated) > 0 {
		fmt.Fprintf(env.Stdout, "Generated passwords (shown only now; store them safely):\n%s\n", strings.Join(generated, "\n"))
	}
	return nil
}

type chosenPassword struct {
	password  string
	generated bool
}

// choosePassword takes the flag, else the environment, else (for the admin, in a
// terminal) a prompt, else a generated password.
func choosePassword(env *Env, flag, envKey, who string, prompt bool) (chosenPassword, error) {
	if flag != "" {
		return chosenPassword{password: flag}, nil
	}
	if v := env.Getenv(envKey); v != "" {
		return chosenPassword{password: v}, nil
	}
	if prompt && env.Interactive {
		for tries := 0; tries < 3; tries++ {
			p1, err := readSecret(env, fmt.Sprintf("Password for the %s (empty to generate one): ", who))
			if err != nil {
				return chosenPassword{}, err
			}
			if p1 == "" {
				break
			}
			if len(p1) < 8 {
				fmt.Fprintln(env.Stderr, "The password must be at least 8 characters.")
				continue
			}
			p2, err := readSecret(env, "Repeat it: ")
			if err != nil {
				return chosenPassword{}, err
			}
			if p1 == p2 {
				return chosenPassword{password: p1}, nil
			}
			fmt.Fprintln(env.Stderr, "The passwords differ; try again.")
		}
	}
	return chosenPassword{password: generatePassword(), generated: true}, nil
}

func readSecret(env *Env, promptText string) (string, error) {
	fmt.Fprint(env.Stderr, promptText)
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		return string(b), err
	}
	line, err := bufio.NewReader(env.Stdin).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// generatePassword returns 20 random characters from an alphabet without look-alikes.
func generatePassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}
