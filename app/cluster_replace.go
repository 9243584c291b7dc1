package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node/cluster"
)

const replaceDescription = `Replace a faulty member in place: it keeps its name and peer URLs and gets a new member
ID and an empty data dir, filled from the other members. The steps follow etcd's safe
order and are printed as they happen: preflight (members, health, no other learner, the
other voters are a quorum without the target), snapshot, move leadership away, stop the
target's server and wipe its etcd data, remove the member, add it back as a learner,
start it with etcd-initial-cluster-state: existing, promote it once it has caught up,
and verify that all members are healthy and agree on the leader.

Run it on the faulty node with --config (its backend.yml): replace then stops, wipes and
starts that node's server itself. The API it talks to must be another member's (log in
to one, or pass --api-url). Without --config it prints the configuration the node must
be started with and waits for it.

Progress is kept in a state file: after an interruption, run the same command again to
finish. Replace refuses, saying why, when removing the member would lose quorum, when
another member is a learner or has not started, or (without --config) when the target
still answers.`

func runClusterReplace(ctx context.Context, env *Env, args []string) error {
	var (
		cc                    clusterCmd
		configFile, stateFile string
		snapshotFile          string
		startCommand, stopCmd string
		wait                  time.Duration
	)
	done, err := cc.parse(env, "replace", cliHelp{
		usage:       "picket cluster replace NAME [flags]",
		description: replaceDescription,
		examples: []string{
			"picket cluster replace backend-2 --config /etc/picket/backend.yml --api-url https://10.0.0.1:8080",
			"picket cluster replace backend-2 --config /etc/picket/backend.yml --stop-command 'systemctl stop picket' --start-command 'systemctl start picket'",
			"picket cluster replace backend-2     # from elsewhere: prints the config backend-2 needs",
		},
	}, args, 1, func(fs *pflag.FlagSet) {
		fs.StringVarP(&configFile, "config", "c", "", "backend.yml of the faulty node, when replace runs on that node: it stops, wipes and starts its server")
		fs.StringVar(&stateFile, "state-file", "", "progress file for resuming (default <state-dir>/replace-NAME.json with --config, else ./picket-replace-NAME.json)")
		fs.StringVar(&snapshotFile, "snapshot", "", "where to save the snapshot taken first (default <state-dir>/replace-NAME-TIME.snapshot with --config, else ./picket-NAME-TIME.snapshot)")
		fs.StringVar(&stopCmd, "stop-command", "", "command that stops this node's server, e.g. 'systemctl stop picket' (default: SIGTERM to the pid holding the data dir)")
		fs.StringVar(&startCommand, "start-command", "", "command that starts this node's server, e.g. 'systemctl start picket' (default: run 'picket server -c CONFIG' in the background, logging to <state-dir>/server.log)")
		fs.DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the new member to start")
	})
	if done || err != nil {
		return err
	}
	name := cc.args[0]
	stamp := time.Now().UTC().Format("20060102T150405Z")
	opts := cluster.ReplaceOptions{Name: name, StateFile: stateFile, SnapshotFile: snapshotFile, WaitStart: wait}
	if configFile != "" {
		bcfg, err := loadBackendConfig(env, nil, configFile)
		if err != nil {
			return err
		}
		if bcfg.NoEmbedEtcd {
			return usageErrorf("%s uses an external etcd (no-embed-etcd): replace its etcd members with etcd's own tools", configFile)
		}
		if bcfg.EtcdName != name {
			return usageErrorf("%s configures member %q, not %q: run replace on the node of %s", configFile, bcfg.EtcdName, name, name)
		}
		if opts.StateFile == "" {
			opts.StateFile = filepath.Join(bcfg.StateDir, "replace-"+name+".json")
		}
		if opts.SnapshotFile == "" {
			opts.SnapshotFile = filepath.Join(bcfg.StateDir, "replace-"+name+"-"+stamp+".snapshot")
		}
		opts.Local = localMember(env, bcfg, configFile, stopCmd, startCommand)
	} else {
		if stopCmd != "" || startCommand != "" {
			return usageErrorf("--stop-command and --start-command act on this node: give its --config too")
		}
		if opts.StateFile == "" {
			opts.StateFile = "picket-replace-" + name + ".json"
		}
		if opts.SnapshotFile == "" {
			opts.SnapshotFile = "picket-" + name + "-" + stamp + ".snapshot"
		}
	}
	n := 0
	out := env.Stdout
	if cc.format != "table" {
		out = env.Stderr // keep stdout for the structured result
	}
	opts.Progress = func(s cluster.Step) {
		switch {
		case !s.Done && s.Name == cluster.StepStart && strings.Contains(s.Detail, "\n"):
			fmt.Fprintf(out, "      %s\n", strings.ReplaceAll(s.Detail, "\n", "\n      "))
		case !s.Done:
			n++
			if s.Detail != "" {
				fmt.Fprintf(out, "[%d] %s: %s\n", n, s.Name, s.Detail)
			} else {
				fmt.Fprintf(out, "[%d] %s\n", n, s.Name)
			}
		case s.Err != nil:
			fmt.Fprintf(out, "    failed after %s: %v\n", s.Took.Round(time.Millisecond), s.Err)
		default:
			fmt.Fprintf(out, "    ok (%s) %s\n", s.Took.Round(time.Millisecond), s.Detail)
		}
	}
	res, err := cc.c.Replace(ctx, opts)
	if err != nil {
		var hint string
		switch {
		case cluster.Refused(err):
			hint = "refused, nothing changed"
		default:
			hint = fmt.Sprintf("run the same command again to continue (progress in %s)", opts.StateFile)
		}
		return fmt.Errorf("replace %s: %w; %s", name, cc.s.explain(err), hint)
	}
	if cc.format != "table" {
		return writeStructured(env.Stdout, cc.format, map[string]any{
			"name": res.Name, "old_id": fmt.Sprintf("%x", res.OldID), "new_id": fmt.Sprintf("%x", res.NewID),
			"peer_urls": res.PeerURLs, "initial_cluster": res.InitialCluster, "snapshot": res.Snapshot,
			"seconds": res.Took.Seconds(),
		})
	}
	fmt.Fprintf(env.Stdout, "Replaced member %s: old ID %x, new ID %x, in %s\n", res.Name, res.OldID, res.NewID, res.Took.Round(100*time.Millisecond))
	return nil
}

// localMember acts on this node's server for replace: stop it (its stop command, or
// SIGTERM to the pid holding the etcd data dir), wipe its etcd data dir, and start it
// (its start command, or `picket server -c CONFIG` detached, logging to
// <state-dir>/server.log) after writing the join file.
func localMember(env *Env, cfg *BackendConfig, configFile, stopCmd, startCmd string) *cluster.Local {
	dataDir := filepath.Join(cfg.StateDir, "etcd")
	return &cluster.Local{
		Stop: func(ctx context.Context) error {
			pid, held, err := etcdx.LockHolder(dataDir)
			if err != nil || !held {
				return err
			}
			if stopCmd != "" {
				if err := shellCommand(ctx, env, stopCmd); err != nil {
					return fmt.Errorf("stop command %q: %w", stopCmd, err)
				}
			} else {
				if pid <= 0 {
					return fmt.Errorf("a server holds %s but its pid is unknown: stop it yourself or pass --stop-command", dataDir)
				}
				if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("stop server pid %d: %w", pid, err)
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, held, err := etcdx.LockHolder(dataDir)
				if err != nil || !held {
					return err
				}
				if time.Now().After(deadline) {
					if pid > 0 && stopCmd == "" {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						deadline = time.Now().Add(5 * time.Second)
						pid = 0
						continue
					}
					return fmt.Errorf("the server holding %s did not stop within 30s", dataDir)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
		Running: func() (bool, error) {
			_, held, err := etcdx.LockHolder(dataDir)
			return held, err
		},
		Wipe: func() error {
			if _, held, err := etcdx.LockHolder(dataDir); err != nil || held {
				if err == nil {
					err = fmt.Errorf("a server still holds %s", dataDir)
				}
				return err
			}
			return os.RemoveAll(dataDir)
		},
		Start: func(ctx context.Context, j cluster.Join) error {
			if err := cluster.WriteJoin(cfg.StateDir, j); err != nil {
				return err
			}
			if startCmd != "" {
				return shellCommand(ctx, env, startCmd)
			}
			abs, _ := filepath.Abs(configFile)
			pid, err := startBackground(abs, cfg.StateDir)
			if pid != 0 {
				fmt.Fprintf(env.Stdout, "      started picket server -c %s (pid %d), logging to %s\n", abs, pid, serverLogPath(cfg.StateDir))
			}
			return err
		},
	}
}

// shellCommand runs an operator's command through sh -c, its output on stderr.
func shellCommand(ctx context.Context, env *Env, command string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Stdout, cmd.Stderr = env.Stderr, env.Stderr
	return cmd.Run()
}
