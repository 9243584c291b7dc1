package tui

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/picketmon/picket/node/cluster"
)

// fakeCluster is a three-member cluster in memory.
type fakeCluster struct {
	mu      sync.Mutex
	members []cluster.Member
	sick    map[uint64]string // member ID → health error
	leader  uint64
	calls   map[string]int
	// replaceGate, when set, holds Replace after its first steps until closed.
	replaceGate chan struct{}
	replaceErr  error
}

func newFakeCluster() *fakeCluster {
	f := &fakeCluster{sick: map[uint64]string{}, calls: map[string]int{}, leader: 0xa1}
	for i, id := range []uint64{0xa1, 0xb2, 0xc3} {
		n := i + 1
		f.members = append(f.members, cluster.Member{
			ID: id, Name: fmt.Sprintf("picket-%d", n),
			PeerURLs:   []string{fmt.Sprintf("https://127.0.0.%d:2380", n)},
			ClientURLs: []string{fmt.Sprintf("https://127.0.0.%d:2379", n)},
		})
	}
	return f
}

func (f *fakeCluster) count(name string) {
	f.mu.Lock()
	f.calls[name]++
	f.mu.Unlock()
}

func (f *fakeCluster) Health(ctx context.Context, _ time.Duration) (*cluster.Health, error) {
	f.count("health")
	f.mu.Lock()
	defer f.mu.Unlock()
	h := &cluster.Health{Alarms: []cluster.Alarm{}}
	for _, m := range f.members {
		e := f.sick[m.ID]
		h.ClusterHealth = append(h.ClusterHealth, cluster.MemberHealth{MemberID: m.ID, MemberIDHex: m.IDHex(), Name: m.Name, Err: e, Healthy: e == ""})
	}
	return h, nil
}

func (f *fakeCluster) Members(ctx context.Context) (*cluster.MemberList, error) {
	f.count("members")
	f.mu.Lock()
	defer f.mu.Unlock()
	return &cluster.MemberList{Header: cluster.Header{ClusterID: 0xc105e4}, Members: append([]cluster.Member(nil), f.members...)}, nil
}

func (f *fakeCluster) Status(ctx context.Context) ([]cluster.MemberStatus, error) {
	f.count("status")
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.MemberStatus
	for _, m := range f.members {
		s := cluster.MemberStatus{ID: m.ID, IDHex: m.IDHex(), Name: m.Name, Leader: f.leader, RaftTerm: 2, RaftIndex: 1234, DBSize: 24 << 10}
		if e := f.sick[m.ID]; e != "" {
			s = cluster.MemberStatus{ID: m.ID, IDHex: m.IDHex(), Name: m.Name, Err: e}
		}
		out = append(out, s)
	}
	return out, nil
}

func (f *fakeCluster) Info(ctx context.Context) (*cluster.Info, error) {
	f.count("info")
	owner := "picket-1"
	tasks := map[string]*string{}
	for _, t := range cluster.TaskNames {
		tasks[t] = &owner
	}
	return &cluster.Info{Name: "picket-1", Tasks: tasks}, nil
}

func (f *fakeCluster) Counts(ctx context.Context) (Counts, error) {
	f.count("counts")
	return Counts{Agents: 2, Entities: 3, Events: [4]int{5, 1, 1, 0}}, nil
}

func (f *fakeCluster) Probe(ctx context.Context, urls []string) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if len(m.ClientURLs) > 0 && m.ClientURLs[0] == urls[0] && f.sick[m.ID] != "" {
			return 0, errors.New("dial tcp: connection refused")
		}
	}
	return 300 * time.Microsecond, nil
}

func (f *fakeCluster) Answering() string { return "https://127.0.0.1:8080" }

func (f *fakeCluster) setSick(id uint64, err string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == "" {
		delete(f.sick, id)
	} else {
		f.sick[id] = err
	}
}

func (f *fakeCluster) Replace(ctx context.Context, o cluster.ReplaceOptions) (*cluster.ReplaceResult, error) {
	f.count("replace")
	p := o.Progress
	step := func(name, detail string) {
		p(cluster.Step{Name: name})
		p(cluster.Step{Name: name, Detail: detail, Done: true, Took: 10 * time.Millisecond})
	}
	step(cluster.StepPreflight, "3 members; replacing "+o.Name)
	step(cluster.StepSnapshot, o.SnapshotFile+" (24608 bytes)")
	step(cluster.StepLeader, "the target does not lead")
	if f.replaceGate != nil {
		p(cluster.Step{Name: cluster.StepStop})
		select {
		case <-f.replaceGate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		p(cluster.Step{Name: cluster.StepStop, Detail: "stopped", Done: true, Took: 10 * time.Millisecond})
	} else {
		step(cluster.StepStop, "stopped")
	}
	step(cluster.StepWipe, "data and WAL dirs deleted")
	if f.replaceErr != nil {
		p(cluster.Step{Name: cluster.StepRemove})
		p(cluster.Step{Name: cluster.StepRemove, Done: true, Err: f.replaceErr, Took: 10 * time.Millisecond})
		return nil, f.replaceErr
	}
	f.mu.Lock()
	var old uint64
	for i, m := range f.members {
		if m.Name == o.Name {
			old = m.ID
			f.members[i].ID = 0xd4
			delete(f.sick, m.ID)
		}
	}
	f.mu.Unlock()
	step(cluster.StepRemove, fmt.Sprintf("removed member %x", old))
	step(cluster.StepAdd, "added learner d4")
	step(cluster.StepStart, "member d4 started")
	step(cluster.StepPromote, "member d4 is a voter")
	step(cluster.StepVerify, "3 healthy members agree on leader a1 in term 2")
	return &cluster.ReplaceResult{Name: o.Name, OldID: old, NewID: 0xd4, Took: 1200 * time.Millisecond, Snapshot: o.SnapshotFile}, nil
}

// fakeHost is a machine where everything works.
type fakeHost struct {
	conn *Conn
}

func (h *fakeHost) Detect(ctx context.Context) Detection { return testDetection(h.conn) }

func testDetection(conn *Conn) Detection {
	return Detection{
		Sandbox: "/home/op/.local/share/picket/sandbox", Conn: conn,
		DefaultDir: "/home/op/picket-cluster", DefaultSandboxDir: "/home/op/.local/share/picket/sandbox",
		Token: "picket-0123456789ab", HostName: "web-1", HostAddress: "10.0.0.5",
	}
}

func (h *fakeHost) Bootstrap(ctx context.Context, p Plan, progress func(Progress)) (*Bootstrapped, error) {
	progress(Progress{Step: "certificates"})
	progress(Progress{Step: "certificates", Done: true, Detail: "a new CA and 3 node certificates", Took: 20 * time.Millisecond})
	for _, n := range p.Nodes {
		progress(Progress{Step: "start", Node: n.Name})
		progress(Progress{Step: "start", Node: n.Name, Done: true, Detail: "picket server pid 4242", Took: 0})
	}
	progress(Progress{Step: "quorum", Detail: "waiting"})
	progress(Progress{Step: "quorum", Done: true, Detail: "3 of 3 members healthy", Took: 800 * time.Millisecond})
	return &Bootstrapped{Conn: h.conn, AdminUser: "admin", AdminPassword: "s3cretPassw0rdXYZabc",
		Notes: []string{"CLI: PICKET_CONFIG_DIR=/home/op/.local/share/picket/sandbox/cli picket cluster health"}}, nil
}

func (h *fakeHost) Join(ctx context.Context, r JoinRequest, progress func(Progress)) (*Joined, error) {
	progress(Progress{Step: "add learner", Node: r.Name})
	progress(Progress{Step: "add learner", Node: r.Name, Done: true, Detail: "learner e5", Took: 10 * time.Millisecond})
	progress(Progress{Step: "promote", Node: r.Name})
	progress(Progress{Step: "promote", Node: r.Name, Done: true, Detail: "voter", Took: 10 * time.Millisecond})
	return &Joined{Conn: h.conn, Name: r.Name}, nil
}

func (h *fakeHost) Local(name string) *cluster.Local { return &cluster.Local{} }

func (h *fakeHost) ReplaceFiles(name string) (string, string) {
	return "/home/op/sandbox/replace-" + name + ".json", "/home/op/sandbox/replace-" + name + ".snapshot"
}
