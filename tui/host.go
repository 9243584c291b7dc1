package tui

import (
	"context"
	"time"

	"github.com/picketmon/picket/node/cluster"
)

// Host is what the console needs of the machine it runs on: looking at what is installed,
// writing configurations and certificates, starting and stopping servers. The app
// package implements it; tests use a fake, which is why it is an interface.
type Host interface {
	// Detect looks at this host: a config file, a state dir, a running server, a sandbox,
	// a stored login. It must return within a few seconds.
	Detect(ctx context.Context) Detection
	// Bootstrap creates a new cluster as plan says and reports every step to progress.
	// It returns how to reach the cluster and the admin password, which the console
	// shows once.
	Bootstrap(ctx context.Context, plan Plan, progress func(Progress)) (*Bootstrapped, error)
	// Join adds this host's node to an existing cluster as a learner, starts it and
	// promotes it once it has caught up.
	Join(ctx context.Context, req JoinRequest, progress func(Progress)) (*Joined, error)
	// Local returns how to stop, wipe and start member name's server when it runs on
	// this host, nil when it does not (replace then waits for the operator to start it).
	Local(name string) *cluster.Local
	// ReplaceFiles returns where a replace of member name keeps its progress and its
	// snapshot, so that running it again resumes.
	ReplaceFiles(name string) (stateFile, snapshotFile string)
}

// Detection is what Host.Detect found.
type Detection struct {
	// ConfigFile is this host's backend.yml, "" when there is none.
	ConfigFile string
	// NodeName is the etcd-name the config file gives this node.
	NodeName string
	// StateDir is the node's state dir; HasData tells whether it holds an etcd member.
	StateDir string
	HasData  bool
	// ServerRunning reports a picket server holding the state dir.
	ServerRunning bool
	// Sandbox is the directory of a local sandbox cluster, "" when there is none.
	Sandbox string
	// Conn is how to reach the cluster this host belongs to, nil when unknown (no stored
	// login and no sandbox).
	Conn *Conn
	// Notes are things worth telling the operator (a config without a running server…).
	Notes []string

	// Defaults for the forms: where a new cluster's files go, where a sandbox lives,
	// a fresh cluster token, this host's name and address.
	DefaultDir        string
	DefaultSandboxDir string
	Token             string
	HostName          string
	HostAddress       string
}

// Mode says where the members of a new cluster run.
type Mode int

const (
	// ModeSandbox runs every member on this machine on 127.0.0.x addresses.
	ModeSandbox Mode = iota
	// ModeHosts runs the first member here and writes a bundle for each other host.
	ModeHosts
)

func (m Mode) String() string {
	if m == ModeHosts {
		return "multi-host"
	}
	return "local sandbox"
}

// NodePlan is one member of a cluster to bootstrap.
type NodePlan struct {
	Name    string
	Address string
}

// Plan is what the bootstrap form produces.
type Plan struct {
	Mode  Mode
	Nodes []NodePlan
	// Ports are the API, agent gateway, etcd client and etcd peer ports, the same on
	// every node.
	APIPort, AgentPort, ClientPort, PeerPort int
	// Dir receives the configurations, certificates, bundles and (sandbox) state dirs.
	Dir   string
	TLS   bool
	Token string
}

// Progress is one step of a bootstrap or join, reported when it begins (Done false)
// and when it ends (Done true, Err when it failed). Node is "" for cluster-wide steps.
type Progress struct {
	Step   string
	Node   string
	Detail string
	Done   bool
	Err    error
	Took   time.Duration
}

// Bootstrapped is the result of a bootstrap.
type Bootstrapped struct {
	Conn          *Conn
	AdminUser     string
	AdminPassword string
	// Commands are what to run on the other hosts (multi-host), by node name.
	Commands map[string]string
	// Notes are files written and how to use them from the CLI.
	Notes []string
}

// JoinRequest is what the join form produces.
type JoinRequest struct {
	APIURL                                   string
	Username                                 string
	Password                                 string
	TrustedCAFile                            string
	Name                                     string
	Address                                  string
	APIPort, AgentPort, ClientPort, PeerPort int
	// Dir receives this node's configuration and state.
	Dir string
	// CertsDir holds the cluster's ca.pem and either ca-key.pem (a certificate for this
	// node is issued) or NAME.pem and NAME-key.pem (made by `picket certs`); "" means
	// no TLS.
	CertsDir string
	// Session, when set, is the console's open session, used instead of logging in.
	Session *cluster.Client
}

// Joined is the result of a join.
type Joined struct {
	Conn  *Conn
	Name  string
	Notes []string
}
