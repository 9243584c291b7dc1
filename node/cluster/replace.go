package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/node/client"
)

// Errors of Replace's preflight, for callers that branch on the reason of a refusal.
var (
	// ErrNoSuchMember reports a replace of a member the cluster does not list.
	ErrNoSuchMember = errors.New("no such member")
	// ErrQuorum reports a replace that would leave fewer healthy voters than a quorum.
	ErrQuorum = errors.New("would lose quorum")
	// ErrOtherLearner reports another learner or unstarted member: etcd allows one
	// learner at a time, and an unstarted member counts against the quorum.
	ErrOtherLearner = errors.New("another member is a learner or has not started")
	// ErrTargetRunning reports a remote replace of a member that still answers: its
	// server must be stopped first, or replace run on that node.
	ErrTargetRunning = errors.New("member is healthy and running")
	// ErrSameServer reports a local replace whose API is the server being replaced.
	ErrSameServer = errors.New("the API answering is the server being replaced")
)

// Refused reports whether err is one of Replace's preflight refusals, after which
// nothing has changed.
func Refused(err error) bool {
	for _, e := range []error{ErrQuorum, ErrOtherLearner, ErrTargetRunning, ErrNoSuchMember, ErrSameServer} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Step names, in the order Replace runs them (REFERENCE.md §5's safe order).
const (
	StepPreflight = "preflight"
	StepSnapshot  = "snapshot"
	StepLeader    = "move-leader"
	StepStop      = "stop"
	StepWipe      = "wipe"
	StepRemove    = "remove"
	StepAdd       = "add-learner"
	StepStart     = "start"
	StepPromote   = "promote"
	StepVerify    = "verify"
)

// Step reports one step of Replace: once when it begins (Done false) and once when it
// ends (Done true, with Err when it failed).
type Step struct {
	Name   string
	Detail string
	Done   bool
	Err    error
	Took   time.Duration
}

// Local is what Replace needs to act on the faulty member's own node, when it runs there.
type Local struct {
	// Stop stops this node's server if it runs and returns once it has exited.
	Stop func(ctx context.Context) error
	// Wipe deletes the member's etcd data and WAL dirs.
	Wipe func() error
	// Start writes j as the node's join file and starts its server, which then starts
	// the member with etcd-initial-cluster-state: existing. It may return before the
	// member has started; Replace waits for it.
	Start func(ctx context.Context, j Join) error
	// Running reports whether this node's server runs.
	Running func() (bool, error)
}

// ReplaceOptions configure Replace.
type ReplaceOptions struct {
	// Name is the faulty member's name (or its hex ID).
	Name string
	// StateFile keeps the progress, so that Replace run again after an interruption
	// finishes the job; it is deleted when the replace is complete.
	StateFile string
	// SnapshotFile receives a snapshot before anything changes; "" skips it.
	SnapshotFile string
	// Local acts on the faulty member's node; nil means Replace runs elsewhere and
	// reports (StepStart's Detail) the configuration the operator must start it with.
	Local *Local
	// WaitStart bounds the wait for the new member to start (10 minutes when 0).
	WaitStart time.Duration
	// Progress receives every step as it begins and ends; nil ignores them.
	Progress func(Step)
}

// ReplaceResult describes a completed replace.
type ReplaceResult struct {
	Name           string
	OldID, NewID   uint64
	PeerURLs       []string
	InitialCluster string
	Snapshot       string
	Took           time.Duration
}

// replaceState is the progress file of a replace.
type replaceState struct {
	Name           string    `json:"name"`
	OldID          string    `json:"old_id"`
	PeerURLs       []string  `json:"peer_urls"`
	NewID          string    `json:"new_id,omitempty"`
	InitialCluster string    `json:"initial_cluster,omitempty"`
	Snapshot       string    `json:"snapshot,omitempty"`
	Step           string    `json:"step"`
	Started        time.Time `json:"started"`
}

func loadState(path string) (*replaceState, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st replaceState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("replace state %s: %w (delete it to start over)", path, err)
	}
	return &st, nil
}

func (st *replaceState) save(path string) error {
	if path == "" {
		return nil
	}
	data, _ := json.MarshalIndent(st, "", "  ")
	return writeFile(path, append(data, '\n'))
}

func parseHex(s string) uint64 {
	var v uint64
	fmt.Sscanf(s, "%x", &v)
	return v
}

// byPeers returns the member with exactly peers as its peer URLs.
func byPeers(ml *MemberList, peers []string) *Member {
	for i, m := range ml.Members {
		if sameSet(m.PeerURLs, peers) {
			return &ml.Members[i]
		}
	}
	return nil
}

// Replace replaces a faulty member in place, in the safe order of REFERENCE.md §5:
// preflight (members, per-member health, no other learner or unstarted member, the
// voters other than the target are a quorum of N−1), snapshot, move leadership away if
// the target leads, stop the target and wipe its data (Local), remove it, add it back as
// a learner with the same peer URLs (a new ID), start it as "existing" with the
// initial cluster from the add, promote it once it has caught up, and verify that all
// members are healthy and agree on leader and term. Progress is kept in StateFile:
// run again after an interruption, Replace works out from the cluster where it stopped
// and finishes.
func (c *Client) Replace(ctx context.Context, o ReplaceOptions) (*ReplaceResult, error) {
	start := time.Now()
	progress := o.Progress
	if progress == nil {
		progress = func(Step) {}
	}
	step := func(name, detail string, fn func() (string, error)) error {
		progress(Step{Name: name, Detail: detail})
		t := time.Now()
		d, err := fn()
		progress(Step{Name: name, Detail: d, Done: true, Err: err, Took: time.Since(t)})
		return err
	}
	if o.WaitStart <= 0 {
		o.WaitStart = 10 * time.Minute
	}

	st, err := loadState(o.StateFile)
	if err != nil {
		return nil, err
	}
	if st != nil && st.Name != o.Name && st.OldID != o.Name {
		return nil, fmt.Errorf("%s holds an unfinished replace of %s: finish it with `picket cluster replace %s` or delete the file", o.StateFile, st.Name, st.Name)
	}

	var (
		ml      *MemberList
		health  *Health
		target  *Member // the old member, while it is still in the cluster
		current *Member // the replacement, once added
		phase   string
	)
	err = step(StepPreflight, "members, health, learners, quorum", func() (string, error) {
		var err error
		if ml, err = c.Members(ctx); err != nil {
			return "", err
		}
		if health, err = c.Health(ctx, 3*time.Second); err != nil {
			return "", err
		}
		if st == nil {
			target = ml.Find(o.Name)
			if target == nil {
				return "", fmt.Errorf("no member named %s (list them with `picket cluster member-list`): %w", o.Name, ErrNoSuchMember)
			}
			st = &replaceState{Name: target.Name, OldID: target.IDHex(), PeerURLs: target.PeerURLs, Started: time.Now().UTC()}
			phase = StepSnapshot
		} else {
			m := byPeers(ml, st.PeerURLs)
			switch {
			case m != nil && m.ID == parseHex(st.OldID):
				target, phase = m, StepSnapshot
			case m == nil:
				phase = StepAdd
			default:
				current = m
				st.NewID = m.IDHex()
				switch {
				case !m.IsLearner:
					phase = StepVerify
				case m.Started():
					phase = StepPromote
				default:
					phase = StepStart
				}
			}
		}
		if err := c.checkPreflight(ctx, ml, health, target, st, o.Local != nil); err != nil {
			return "", err
		}
		detail := fmt.Sprintf("%d members; replacing %s (%s) at %s", len(ml.Members), st.Name, st.OldID, strings.Join(st.PeerURLs, ","))
		if phase != StepSnapshot {
			detail += "; resuming at " + phase
		}
		return detail, st.save(o.StateFile)
	})
	if err != nil {
		return nil, err
	}
	res := &ReplaceResult{Name: st.Name, OldID: parseHex(st.OldID), PeerURLs: st.PeerURLs, Snapshot: st.Snapshot}

	if phase == StepSnapshot {
		if o.SnapshotFile != "" {
			err = step(StepSnapshot, o.SnapshotFile, func() (string, error) {
				n, err := writeSnapshot(ctx, c, o.SnapshotFile)
				if err != nil {
					return "", err
				}
				st.Snapshot = o.SnapshotFile
				res.Snapshot = o.SnapshotFile
				return fmt.Sprintf("%s (%d bytes)", o.SnapshotFile, n), st.save(o.StateFile)
			})
			if err != nil {
				return nil, err
			}
		}
		err = step(StepLeader, "", func() (string, error) {
			sts, err := c.Status(ctx)
			if err != nil {
				return "", err
			}
			leads := false
			var to uint64
			for _, s := range sts {
				if s.ID == target.ID && s.Err == "" && s.Leader == target.ID {
					leads = true
				}
				if s.ID != target.ID && s.Err == "" && !s.IsLearner && to == 0 {
					to = s.ID
				}
			}
			if !leads {
				return "the target does not lead", nil
			}
			if err := c.MoveLeader(ctx, to); err != nil {
				return "", err
			}
			return "leadership moved to " + strconv.FormatUint(to, 16), nil
		})
		if err != nil {
			return nil, err
		}
		if o.Local != nil {
			if err := step(StepStop, "", func() (string, error) { return "stopped", o.Local.Stop(ctx) }); err != nil {
				return nil, err
			}
			if err := step(StepWipe, "", func() (string, error) { return "data and WAL dirs deleted", o.Local.Wipe() }); err != nil {
				return nil, err
			}
		}
		err = step(StepRemove, st.OldID, func() (string, error) {
			if err := c.RemoveMember(ctx, target.ID); err != nil {
				return "", err
			}
			st.Step = StepRemove
			return "removed member " + st.OldID, st.save(o.StateFile)
		})
		if err != nil {
			return nil, err
		}
		phase = StepAdd
	}

	var add *AddResult
	if phase == StepAdd {
		err = step(StepAdd, strings.Join(st.PeerURLs, ","), func() (string, error) {
			var err error
			if add, err = c.AddMember(ctx, st.PeerURLs, true); err != nil {
				return "", err
			}
			ic, err := add.InitialCluster(st.Name)
			if err != nil {
				return "", err
			}
			st.NewID, st.InitialCluster, st.Step = add.Member.IDHex(), ic, StepAdd
			current = &add.Member
			return "added learner " + st.NewID, st.save(o.StateFile)
		})
		if err != nil {
			return nil, err
		}
		phase = StepStart
	}
	if st.InitialCluster == "" && current != nil {
		// Resumed without the add's answer: rebuild the initial cluster from the list.
		ml, err := c.Members(ctx)
		if err != nil {
			return nil, err
		}
		ar := &AddResult{Member: *current, Members: ml.Members}
		if st.InitialCluster, err = ar.InitialCluster(st.Name); err != nil {
			return nil, err
		}
	}
	res.NewID, res.InitialCluster = parseHex(st.NewID), st.InitialCluster

	if phase == StepStart {
		join := Join{Name: st.Name, MemberID: st.NewID, InitialCluster: st.InitialCluster}
		err = step(StepStart, "", func() (string, error) {
			if o.Local != nil {
				if err := o.Local.Stop(ctx); err != nil {
					return "", err
				}
				if err := o.Local.Wipe(); err != nil {
					return "", err
				}
				if err := o.Local.Start(ctx, join); err != nil {
					return "", err
				}
			} else {
				progress(Step{Name: StepStart, Detail: StartInstructions(join)})
			}
			if err := c.WaitStarted(ctx, res.NewID, o.WaitStart, 250*time.Millisecond); err != nil {
				if ctx.Err() != nil {
					return "", err
				}
				return "", fmt.Errorf("%w; start its server with the configuration above, then run replace again to finish", err)
			}
			st.Step = StepStart
			return "member " + st.NewID + " started", st.save(o.StateFile)
		})
		if err != nil {
			return nil, err
		}
		phase = StepPromote
	}
	if o.Local != nil && (phase == StepPromote || phase == StepVerify) {
		// Resumed after the member started: its server may have stopped since. Its data
		// dir holds the member now, so the server ignores the join file.
		running, err := o.Local.Running()
		if err != nil {
			return nil, err
		}
		if !running {
			err = step(StepStart, "restart the server of the started member", func() (string, error) {
				if err := o.Local.Start(ctx, Join{Name: st.Name, MemberID: st.NewID, InitialCluster: st.InitialCluster}); err != nil {
					return "", err
				}
				return "started", c.WaitHealthy(ctx, res.NewID, o.WaitStart, 250*time.Millisecond)
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if phase == StepPromote {
		err = step(StepPromote, st.NewID, func() (string, error) {
			if err := c.PromoteWithRetry(ctx, res.NewID, 2*time.Minute); err != nil {
				return "", err
			}
			st.Step = StepPromote
			return "member " + st.NewID + " is a voter", st.save(o.StateFile)
		})
		if err != nil {
			return nil, err
		}
	}
	err = step(StepVerify, "", func() (string, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			detail, err := c.verify(ctx)
			if err == nil {
				return detail, nil
			}
			if time.Now().After(deadline) || !etcdx.Sleep(ctx, 500*time.Millisecond) {
				return "", err
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if o.StateFile != "" {
		_ = os.Remove(o.StateFile)
	}
	res.Took = time.Since(start)
	return res, nil
}

// checkPreflight refuses a replace that etcd's safe order rules out.
func (c *Client) checkPreflight(ctx context.Context, ml *MemberList, h *Health, target *Member, st *replaceState, local bool) error {
	for _, m := range ml.Members {
		if (target != nil && m.ID == target.ID) || sameSet(m.PeerURLs, st.PeerURLs) {
			continue
		}
		if m.IsLearner {
			return fmt.Errorf("member %s (%x) is a learner, and etcd allows one learner at a time: wait for it to be promoted or remove it first: %w", m.Name, m.ID, ErrOtherLearner)
		}
		if !m.Started() {
			return fmt.Errorf("member %x (%s) was added but has not started: start it or remove it first: %w", m.ID, strings.Join(m.PeerURLs, ","), ErrOtherLearner)
		}
	}
	if target == nil {
		return nil
	}
	voters, healthy := 0, 0
	var sick []string
	for _, m := range ml.Members {
		if m.IsLearner {
			continue
		}
		voters++
		if m.ID == target.ID {
			continue
		}
		if mh := h.Of(m.ID); mh != nil && mh.Healthy {
			healthy++
		} else {
			sick = append(sick, m.Name)
		}
	}
	if voters <= 1 {
		return fmt.Errorf("%s is the only voter; a one-member cluster cannot replace its member in place: restore it from a snapshot (`picket snapshot restore`): %w", target.Name, ErrQuorum)
	}
	need := (voters-1)/2 + 1
	if healthy < need {
		return fmt.Errorf("removing %s would leave %d healthy voter(s) of %d, below a quorum of %d (unhealthy: %s): bring those members back first: %w",
			target.Name, healthy, voters-1, need, strings.Join(sick, ", "), ErrQuorum)
	}
	th := h.Of(target.ID)
	if th != nil && th.Healthy {
		if !local {
			return fmt.Errorf("member %s (%x) is healthy and running: stop its server first, or run `picket cluster replace %s --config FILE` on that node: %w", target.Name, target.ID, target.Name, ErrTargetRunning)
		}
	}
	if local {
		if in, err := c.Info(ctx); err == nil && in.Name == target.Name {
			return fmt.Errorf("the API at %s is %s itself, which replace stops: log in to another member (`picket login --api-url …`) or pass --api-url: %w", c.c.APIURL(), target.Name, ErrSameServer)
		}
	}
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	return strings.Join(x, ",") == strings.Join(y, ",")
}

// WaitStarted waits up to wait, polling every poll, until member id has published its
// name and client URLs. It returns ctx.Err() when ctx ends first, and an error naming
// the member and wait when the time is up.
func (c *Client) WaitStarted(ctx context.Context, id uint64, wait, poll time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ml, err := c.Members(ctx)
		if err == nil {
			for _, m := range ml.Members {
				if m.ID == id && m.Started() {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("member %x has not started within %s", id, wait)
		}
		if !etcdx.Sleep(ctx, poll) {
			return ctx.Err()
		}
	}
}

// WaitHealthy waits up to wait, polling every poll, until member id is healthy. It
// returns ctx.Err() when ctx ends first, and an error naming the member and wait when
// the time is up.
func (c *Client) WaitHealthy(ctx context.Context, id uint64, wait, poll time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		h, err := c.Health(ctx, 2*time.Second)
		if err == nil {
			if mh := h.Of(id); mh != nil && mh.Healthy {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("member %x is not healthy within %s", id, wait)
		}
		if !etcdx.Sleep(ctx, poll) {
			return ctx.Err()
		}
	}
}

// PromoteWithRetry promotes learner id, retrying every second for up to wait while
// etcd refuses because the learner has not caught up (409) or the request was refused
// as premature (400). It returns at once when ctx ends or the server refuses for another
// reason (403, 404: retrying will not help), and otherwise the last error after wait.
func (c *Client) PromoteWithRetry(ctx context.Context, id uint64, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := c.PromoteMember(ctx, id)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil || promoteRefusalFinal(err) {
			return err
		}
		if !etcdx.Sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
}

// promoteRefusalFinal reports an answer to a promote that a retry would only repeat:
// a refusal by the API other than 409 and 400, or a session that is gone. Server
// errors (5xx) and failed requests may pass.
func promoteRefusalFinal(err error) bool {
	if errors.Is(err, client.ErrSessionExpired) || errors.Is(err, client.ErrNotLoggedIn) {
		return true // the same credentials will be refused again
	}
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status < http.StatusInternalServerError &&
		ae.Status != http.StatusConflict && ae.Status != http.StatusBadRequest
}

// verify checks that every member is healthy and all agree on leader and term.
func (c *Client) verify(ctx context.Context) (string, error) {
	h, err := c.Health(ctx, 3*time.Second)
	if err != nil {
		return "", err
	}
	for _, m := range h.ClusterHealth {
		if !m.Healthy {
			return "", fmt.Errorf("member %s (%s) is unhealthy: %s", m.Name, m.MemberIDHex, m.Err)
		}
	}
	sts, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	leader, err := Agreement(sts)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d healthy members agree on leader %x in term %d", len(h.ClusterHealth), leader, sts[0].RaftTerm), nil
}

// StartInstructions is what an operator must do on the replaced member's node when
// Replace runs elsewhere.
func StartInstructions(j Join) string {
	return fmt.Sprintf(`on the node of %[1]s: stop picket, delete its etcd data dir (<state-dir>/etcd), then start it with
  etcd-initial-cluster: "%[2]s"
  etcd-initial-cluster-state: "existing"
(or write them to <state-dir>/%[3]s as {"name": "%[1]s", "member_id": "%[4]s", "initial_cluster": "%[2]s"})`,
		j.Name, j.InitialCluster, JoinFileName, j.MemberID)
}

func writeSnapshot(ctx context.Context, c *Client, path string) (int64, error) {
	tmp := path + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := c.Snapshot(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return n, err
	}
	return n, os.Rename(tmp, path)
}
