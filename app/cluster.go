package app

// `picket cluster …`: headless cluster management through any server's REST API with the
// stored login, like sensuctl's cluster commands, plus tasks and replace.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/picketmon/picket/node/cluster"
)

const clusterUsage = `Usage: picket cluster COMMAND [flags]

Manage the cluster's members through any server's API, with the session of 'picket login'.

Commands:
  health                      health of every member (ID, name, error, healthy) and alarms
  member-list                 members with their peer and client URLs
  member-add NAME PEER-URL    add a member; prints the config the new node must start with
  member-remove ID            remove a member (ID in hex, as member-list prints it)
  member-update ID PEER-URL   change a member's peer URLs
  replace NAME                replace a faulty member in place (new ID, same name and URLs)
  tasks                       which server owns each elected task

Every command takes --format table|json|yaml, --api-url and --config-dir.
Run 'picket cluster COMMAND --help' for a command's flags.`

// runCluster dispatches `picket cluster SUBCOMMAND`.
func runCluster(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, clusterUsage)
		return &exitError{code: 2, err: fmt.Errorf("missing command")}
	}
	sub := map[string]func(context.Context, *Env, []string) error{
		"health":        runClusterHealth,
		"member-list":   runClusterMemberList,
		"member-add":    runClusterMemberAdd,
		"member-remove": runClusterMemberRemove,
		"member-update": runClusterMemberUpdate,
		"replace":       runClusterReplace,
		"tasks":         runClusterTasks,
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, clusterUsage)
		return nil
	}
	fn, ok := sub[args[0]]
	if !ok {
		return usageErrorf("unknown cluster command %q; run 'picket cluster --help'", args[0])
	}
	return fn(ctx, env, args[1:])
}

// clusterCmd is what every cluster subcommand shares: flags, the session and the format.
type clusterCmd struct {
	f      cliFlags
	format string
	s      *session
	c      *cluster.Client
	args   []string
}

// parse parses args for subcommand name and opens the session. It returns done when
// --help was printed.
func (cc *clusterCmd) parse(env *Env, name string, help cliHelp, args []string, nargs int, extra func(*pflag.FlagSet)) (done bool, err error) {
	fs := newFlagSet(env, "cluster "+name, help)
	addFormatFlag(fs, &cc.format)
	fs.StringVar(&cc.f.apiURL, "api-url", "", "API of any member, e.g. https://10.0.0.1:8080 (default: $PICKET_API_URL, else the one 'picket login' stored)")
	fs.StringVar(&cc.f.configDir, "config-dir", "", "directory holding cli.json with the stored session (default: $PICKET_CONFIG_DIR, else ~/.config/picket)")
	if extra != nil {
		extra(fs)
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return help, err
	}
	if nargs >= 0 && fs.NArg() != nargs {
		return false, usageErrorf("%s; run 'picket cluster %s --help'", strings.TrimPrefix(help.usage, "picket "), name)
	}
	cc.args = fs.Args()
	if cc.format != "" {
		if err := checkFormat(cc.format, "table", "json", "yaml"); err != nil {
			return false, err
		}
	}
	s, err := openSession(env, &cc.f)
	if err != nil {
		return false, err
	}
	if cc.format, err = resolveFormat(cc.format, s); err != nil {
		return false, err
	}
	cc.s, cc.c = s, cluster.New(s.client)
	return false, nil
}

func runClusterHealth(ctx context.Context, env *Env, args []string) error {
	var cc clusterCmd
	var timeout int
	done, err := cc.parse(env, "health", cliHelp{
		usage: "picket cluster health [flags]",
		description: "Show the health of every member, computed by the answering server the way etcdctl's\n" +
			"endpoint health does it, and the active alarms (NOSPACE, CORRUPT). Exits 1 when a member\nis unhealthy or an alarm is raised.",
		examples: []string{"picket cluster health", "picket cluster health --format json"},
	}, args, 0, func(fs *pflag.FlagSet) {
		fs.IntVar(&timeout, "timeout", 3, "seconds each member's check may take")
	})
	if done || err != nil {
		return err
	}
	h, err := cc.c.Health(ctx, time.Duration(timeout)*time.Second)
	if err != nil {
		return cc.s.explain(err)
	}
	if cc.format != "table" {
		if err := writeStructured(env.Stdout, cc.format, h); err != nil {
			return err
		}
	} else {
		writeHealth(env.Stdout, h)
	}
	if !h.Healthy() {
		return &exitError{code: 1, err: fmt.Errorf("cluster is not healthy")}
	}
	return nil
}

// writeHealth prints the health table and the alarms.
func writeHealth(w io.Writer, h *cluster.Health) {
	rows := make([][]string, 0, len(h.ClusterHealth))
	for _, m := range h.ClusterHealth {
		rows = append(rows, []string{m.MemberIDHex, m.Name, m.Err, strconv.FormatBool(m.Healthy)})
	}
	_ = writeTable(w, []string{"ID", "Name", "Error", "Healthy"}, []int{16, 4, 5, 7}, rows, 200)
	if len(h.Alarms) > 0 {
		fmt.Fprintln(w, "\nAlarms:")
		for _, a := range h.Alarms {
			name := ""
			for _, m := range h.ClusterHealth {
				if m.MemberID == a.MemberID {
					name = " (" + m.Name + ")"
				}
			}
			fmt.Fprintf(w, "  %x%s  %s\n", a.MemberID, name, a.Alarm)
		}
	}
}

func runClusterMemberList(ctx context.Context, env *Env, args []string) error {
	var cc clusterCmd
	done, err := cc.parse(env, "member-list", cliHelp{
		usage:       "picket cluster member-list [flags]",
		description: "List the ID, name, peer URLs and client URLs of every member. A learner's name is\nfollowed by (learner); a member that was added but has not started has no name yet.",
		examples:    []string{"picket cluster member-list", "picket cluster member-list --format yaml"},
	}, args, 0, nil)
	if done || err != nil {
		return err
	}
	ml, err := cc.c.Members(ctx)
	if err != nil {
		return cc.s.explain(err)
	}
	if cc.format != "table" {
		return writeStructured(env.Stdout, cc.format, ml)
	}
	writeMembers(env.Stdout, ml.Members)
	return nil
}

func writeMembers(w io.Writer, ms []cluster.Member) {
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		name := m.Name
		if name == "" {
			name = "(not started)"
		}
		if m.IsLearner {
			name += " (learner)"
		}
		rows = append(rows, []string{m.IDHex(), name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ",")})
	}
	_ = writeTable(w, []string{"ID", "Name", "Peer URLs", "Client URLs"}, []int{16, 4, 9, 11}, rows, 200)
}

func runClusterMemberAdd(ctx context.Context, env *Env, args []string) error {
	var cc clusterCmd
	done, err := cc.parse(env, "member-add", cliHelp{
		usage: "picket cluster member-add NAME PEER-URL[,PEER-URL…] [flags]",
		description: "Add a member to the cluster and print the configuration the new node must start with:\n" +
			"its etcd-initial-cluster (every member, the new one included) and\n" +
			"etcd-initial-cluster-state: existing. Start the new node after this, with an empty\nstate dir, and add its agent URL to every agent's backend-url.",
		examples: []string{"picket cluster member-add backend-4 https://10.0.0.4:2380"},
	}, args, 2, nil)
	if done || err != nil {
		return err
	}
	name, peers := cc.args[0], splitList(cc.args[1])
	res, err := cc.c.AddMember(ctx, peers, false)
	if err != nil {
		return cc.s.explain(err)
	}
	ic, icErr := res.InitialCluster(name)
	if cc.format != "table" {
		return writeStructured(env.Stdout, cc.format, map[string]any{
			"member": res.Member, "members": res.Members, "header": res.Header,
			"etcd-name": name, "etcd-initial-cluster": ic, "etcd-initial-cluster-state": "existing",
		})
	}
	fmt.Fprintf(env.Stdout, "added member %x to cluster\n\n", res.Member.ID)
	if icErr != nil {
		fmt.Fprintf(env.Stdout, "Could not build etcd-initial-cluster: %v\n", icErr)
		return nil
	}
	fmt.Fprintf(env.Stdout, "Start %s with these lines in its backend.yml (and an empty state dir):\n\n", name)
	fmt.Fprintf(env.Stdout, "etcd-name: %q\netcd-initial-cluster: %q\netcd-initial-cluster-state: \"existing\"\netcd-initial-advertise-peer-urls: %q\n",
		name, ic, strings.Join(peers, " "))
	return nil
}

// parseMemberID reads a hex member ID, or a member name looked up in the member list.
func parseMemberID(ctx context.Context, cc *clusterCmd, arg string) (uint64, error) {
	if id, err := strconv.ParseUint(arg, 16, 64); err == nil {
		return id, nil
	}
	ml, err := cc.c.Members(ctx)
	if err != nil {
		return 0, cc.s.explain(err)
	}
	for _, m := range ml.Members {
		if m.Name == arg {
			return m.ID, nil
		}
	}
	return 0, usageErrorf("%q is neither a member ID in hex nor a member name; run 'picket cluster member-list'", arg)
}

func runClusterMemberRemove(ctx context.Context, env *Env, args []string) error {
	var cc clusterCmd
	done, err := cc.parse(env, "member-remove", cliHelp{
		usage: "picket cluster member-remove ID [flags]",
		description: "Remove a faulty or decommissioned member (ID in hex as member-list prints it, or its\n" +
			"name). etcd refuses when the change would leave fewer started voters than a quorum.",
		examples: []string{"picket cluster member-remove 2f7ae42c315f8c2d"},
	}, args, 1, nil)
	if done || err != nil {
		return err
	}
	id, err := parseMemberID(ctx, &cc, cc.args[0])
	if err != nil {
		return err
	}
	if err := cc.c.RemoveMember(ctx, id); err != nil {
		return cc.s.explain(err)
	}
	if cc.format != "table" {
		return writeStructured(env.Stdout, cc.format, map[string]any{"removed": fmt.Sprintf("%x", id)})
	}
	fmt.Fprintf(env.Stdout, "Removed member %x from cluster\n", id)
	return nil
}

func runClusterMemberUpdate(ctx context.Context, env *Env, args []string) error {
	var cc clusterCmd
	done, err := cc.parse(env, "member-update", cliHelp{
		usage:       "picket cluster member-update ID PEER-URL[,PEER-URL…] [flags]",
		description: "Change the peer URLs of a member (ID in hex, or its name). A learner cannot be updated.",
		examples:    []string{"picket cluster member-update c8f63ae435a5e6bf https://10.0.0.4:2380"},
	}, args, 2, nil)
	if done || err != nil {
		return err
	}
	id, err := parseMemberID(ctx, &cc, cc.args[0])
	if err != nil {
		return err
	}
	if err := cc.c.UpdateMember(ctx, id, splitList(cc.args[1])); err != nil {
		return cc.s.explain(err)
	}
	if cc.format != "table" {
		return writeStructured(env.Stdout, cc.format, map[string]any{"updated": fmt.Sprintf("%x", id), "peerURLs": splitList(cc.args[1])})
	}
	fmt.Fprintf(env.Stdout, "Updated member with ID %x in cluster\n", id)
	return nil
}

func runClusterTasks(ctx context.Context, env *Env, args []string) error {
	var cc clusterCmd
	done, err := cc.parse(env, "tasks", cliHelp{
		usage:       "picket cluster tasks [flags]",
		description: "Show which server (by etcd-name) owns each elected task; (none) while nobody does,\nfor example during a failover.",
		examples:    []string{"picket cluster tasks"},
	}, args, 0, nil)
	if done || err != nil {
		return err
	}
	in, err := cc.c.Info(ctx)
	if err != nil {
		return cc.s.explain(err)
	}
	if cc.format != "table" {
		return writeStructured(env.Stdout, cc.format, map[string]any{"name": in.Name, "tasks": in.Tasks})
	}
	names := append([]string(nil), cluster.TaskNames...)
	for t := range in.Tasks {
		if !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	slices.Sort(names[len(cluster.TaskNames):])
	rows := [][]string{}
	for _, t := range names {
		owner := "(none)"
		if o := in.Tasks[t]; o != nil {
			owner = *o
		}
		rows = append(rows, []string{t, owner})
	}
	_ = writeTable(env.Stdout, []string{"Task", "Owner"}, []int{4, 5}, rows, tableWidth)
	return nil
}
