package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node/cluster"
)

const snapshotUsage = `Usage: picket snapshot save FILE [flags]
       picket snapshot restore FILE --state-dir DIR [flags]

save writes an etcd snapshot of the whole cluster (every resource, user, API key and
event) to FILE, mode 0600: through the API of the stored login (admin only), or straight
from etcd with --etcd-client-urls (and the etcd-* certificate flags, or -c backend.yml).

restore creates a new single-member etcd data dir in DIR/etcd from FILE: a new cluster
(new cluster and member IDs) with the snapshot's data. Start a server on it with
etcd-initial-cluster naming only this member, then add the others one at a time with
'picket cluster member-add' and start each with an empty state dir and
etcd-initial-cluster-state: existing.

Run 'picket snapshot save --help' or 'picket snapshot restore --help' for the flags.`

func runSnapshot(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, snapshotUsage)
		return &exitError{code: 2, err: fmt.Errorf("missing command: save or restore")}
	}
	switch args[0] {
	case "save":
		return runSnapshotSave(ctx, env, args[1:])
	case "restore":
		return runSnapshotRestore(ctx, env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, snapshotUsage)
		return nil
	}
	return usageErrorf("unknown snapshot command %q: want save or restore", args[0])
}

func runSnapshotSave(ctx context.Context, env *Env, args []string) error {
	var f cliFlags
	var configFile string
	fs := newFlagSet(env, "snapshot save", cliHelp{
		usage:       "picket snapshot save FILE [flags]",
		description: "Write an etcd snapshot of the cluster to FILE (mode 0600, written atomically).",
		examples: []string{
			"picket snapshot save /var/backups/picket-$(date +%F).snapshot",
			"picket snapshot save backup.snapshot --etcd-client-urls https://10.0.0.1:2379 --etcd-cert-file cli.pem --etcd-key-file cli-key.pem --etcd-trusted-ca-file ca.pem",
			"picket snapshot save backup.snapshot -c /etc/picket/backend.yml",
		},
	})
	fs.StringVar(&f.apiURL, "api-url", "", "API of any member (default: $PICKET_API_URL, else the stored login)")
	fs.StringVar(&f.configDir, "config-dir", "", "directory holding cli.json with the stored session")
	fs.StringVarP(&configFile, "config-file", "c", "", "read the etcd connection (etcd-client-urls or the embedded member's URLs, certificates) from this backend.yml")
	etcdFlags := pflag.NewFlagSet("etcd", pflag.ContinueOnError)
	for _, k := range []string{"etcd-client-urls", "etcd-cert-file", "etcd-key-file", "etcd-trusted-ca-file"} {
		for _, bk := range backendKeys {
			if bk.name == k {
				etcdFlags.String(k, "", bk.help)
			}
		}
	}
	fs.AddFlagSet(etcdFlags)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("want exactly one FILE, e.g. picket snapshot save backup.snapshot")
	}
	path := fs.Arg(0)
	direct := configFile != "" || etcdFlags.Changed("etcd-client-urls")
	var n int64
	if direct {
		bcfg, err := loadBackendConfig(env, fs, configFile)
		if err != nil {
			return err
		}
		ecfg := bcfg.etcdClientConfig()
		endpoints := ecfg.Endpoints
		cli, err := etcdx.NewClient(ecfg)
		if err != nil {
			return err
		}
		defer cli.Close()
		if n, err = etcdx.SaveSnapshotFile(ctx, cli, path); err != nil {
			return fmt.Errorf("%w (etcd at %s)", err, strings.Join(endpoints, ","))
		}
	} else {
		s, err := openSession(env, &f)
		if err != nil {
			return err
		}
		c := cluster.New(s.client)
		n, err = etcdx.WriteFileAtomic(path, func(w io.Writer) (int64, error) { return c.Snapshot(ctx, w) })
		if err != nil {
			return s.explain(err)
		}
	}
	st, err := etcdx.SnapshotStatus(path)
	if err != nil {
		return fmt.Errorf("the snapshot written to %s does not verify: %w", path, err)
	}
	fmt.Fprintf(env.Stdout, "Snapshot saved to %s: %d bytes, %d keys, revision %d\n", path, n, st.TotalKeys, st.Revision)
	return nil
}

func runSnapshotRestore(_ context.Context, env *Env, args []string) error {
	var stateDir, name, peerURL, configFile, initialCluster string
	fs := newFlagSet(env, "snapshot restore", cliHelp{
		usage: "picket snapshot restore FILE --state-dir DIR [flags]",
		description: "Create a new single-member etcd data dir in DIR/etcd from a snapshot. The member's name\n" +
			"and peer URL come from the flags, else from -c backend.yml, else the defaults.",
		examples: []string{
			"picket snapshot restore backup.snapshot --state-dir /var/lib/picket -c /etc/picket/backend.yml",
			"picket snapshot restore backup.snapshot --state-dir /tmp/restored --name backend-1 --peer-url https://10.0.0.1:2380",
		},
	})
	fs.StringVar(&stateDir, "state-dir", "", "state dir of the server that will run the restored member (required)")
	fs.StringVar(&name, "name", "", "member name (etcd-name)")
	fs.StringVar(&peerURL, "peer-url", "", "member peer URL (etcd-initial-advertise-peer-urls)")
	fs.StringVar(&initialCluster, "initial-cluster", "", "initial cluster of the restored member (default NAME=PEER-URL)")
	fs.StringVarP(&configFile, "config-file", "c", "", "backend.yml to read etcd-name and the peer URL from")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 || stateDir == "" {
		return usageErrorf("want FILE and --state-dir DIR, e.g. picket snapshot restore backup.snapshot --state-dir /var/lib/picket")
	}
	bcfg, err := loadBackendConfig(env, nil, configFile)
	if err != nil {
		return err
	}
	if name == "" {
		name = bcfg.EtcdName
	}
	peers := bcfg.EtcdInitialAdvertisePeerURLs
	if peerURL != "" {
		peers = splitList(peerURL)
	}
	dir := filepath.Join(stateDir, "etcd")
	if err := etcdx.RestoreSnapshot(etcdx.RestoreConfig{
		Snapshot: fs.Arg(0), Dir: dir, Name: name, PeerURLs: peers, InitialCluster: initialCluster,
	}); err != nil {
		return err
	}
	st, _ := etcdx.SnapshotStatus(fs.Arg(0))
	fmt.Fprintf(env.Stdout, "Restored %s into %s: member %s at %s, %d keys, revision %d\n\n", fs.Arg(0), dir, name, strings.Join(peers, ","), st.TotalKeys, st.Revision)
	fmt.Fprintf(env.Stdout, "Next: start picket server with state-dir %s and etcd-initial-cluster %q (only this member);\n", stateDir, name+"="+strings.Join(peers, ","))
	fmt.Fprintln(env.Stdout, "then add the other members one at a time with 'picket cluster member-add NAME PEER-URL'")
	fmt.Fprintln(env.Stdout, "and start each with an empty state dir and etcd-initial-cluster-state: existing.")
	_ = os.Chmod(stateDir, 0o700)
	return nil
}
