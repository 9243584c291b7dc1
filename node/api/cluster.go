package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/picketmon/picket/etcdx"
)

// serveCluster handles /api/core/v2/cluster/…: the routes sensuctl uses (members[/{hexid}],
// id) and Picket's own, which `picket cluster replace` and the console need:
//
//	POST members?peer-addrs=…&learner=true   add a member as a learner
//	POST members/{hexid}/promote              promote a learner (retried until caught up)
//	GET  status                               per-member raft status (leader, term, index)
//	POST leader?to={hexid}                    move raft leadership
//	GET  snapshot                             an etcd snapshot (admin only)
func (s *Server) serveCluster(w http.ResponseWriter, r *http.Request, rest string, p *Principal) error {
	v := verbWrite
	if r.Method == http.MethodGet {
		v = verbRead
	}
	rest = strings.Trim(rest, "/")
	if rest == "snapshot" {
		v = verbWrite // a snapshot holds every secret of the cluster
	}
	if !allowed(p.Role, v, "cluster") {
		return errorf(http.StatusForbidden, "user %s (role %s) may not %s cluster membership", p.Username, roleName(p.Role), verbName(v))
	}
	cli := s.store.Client()
	ctx := r.Context()
	switch {
	case rest == "id" && r.Method == http.MethodGet:
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return clusterError(err)
		}
		writeJSON(w, http.StatusOK, fmt.Sprintf("%x", resp.Header.GetClusterId()))
		return nil
	case rest == "members" && r.Method == http.MethodGet:
		ml, err := etcdx.ListMembers(ctx, cli)
		if err != nil {
			return clusterError(err)
		}
		writeJSON(w, http.StatusOK, ml)
		return nil
	case rest == "members" && r.Method == http.MethodPost:
		peers := splitAddrs(r.URL.Query().Get("peer-addrs"))
		if len(peers) == 0 {
			return errorf(http.StatusBadRequest, "give the new member's peer URLs with ?peer-addrs=https://host:2380")
		}
		if err := checkPeerURLs(peers); err != nil {
			return err
		}
		learner, _ := strconv.ParseBool(r.URL.Query().Get("learner"))
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		res, err := etcdx.AddMember(actx, cli, peers, learner)
		if err != nil {
			return clusterError(err)
		}
		writeJSON(w, http.StatusCreated, res)
		return nil
	case rest == "status" && r.Method == http.MethodGet:
		sts, err := etcdx.ClusterStatus(ctx, cli, s.cfg.EtcdClient, 3*time.Second)
		if err != nil {
			return clusterError(err)
		}
		writeJSON(w, http.StatusOK, sts)
		return nil
	case rest == "leader" && r.Method == http.MethodPost:
		to, err := strconv.ParseUint(r.URL.Query().Get("to"), 16, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "give the new leader's member ID in hex with ?to=")
		}
		if err := etcdx.MoveLeader(ctx, cli, s.cfg.EtcdClient, to); err != nil {
			return clusterError(err)
		}
		writeJSON(w, http.StatusOK, map[string]string{"leader": fmt.Sprintf("%x", to)})
		return nil
	case rest == "snapshot" && r.Method == http.MethodGet:
		return s.serveSnapshot(w, r)
	case strings.HasPrefix(rest, "members/"):
		idText, action, _ := strings.Cut(strings.TrimPrefix(rest, "members/"), "/")
		id, err := strconv.ParseUint(idText, 16, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "member ID %q is not hexadecimal", idText)
		}
		switch {
		case action == "promote" && r.Method == http.MethodPost:
			pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if err := etcdx.PromoteMember(pctx, cli, id); err != nil {
				return clusterError(err)
			}
			ml, err := etcdx.ListMembers(ctx, cli)
			if err != nil {
				return clusterError(err)
			}
			writeJSON(w, http.StatusOK, ml)
			return nil
		case action != "":
		case r.Method == http.MethodPut:
			peers := splitAddrs(r.URL.Query().Get("peer-addrs"))
			if len(peers) == 0 {
				return errorf(http.StatusBadRequest, "give the member's new peer URLs with ?peer-addrs=")
			}
			if err := checkPeerURLs(peers); err != nil {
				return err
			}
			if err := etcdx.UpdateMember(ctx, cli, id, peers); err != nil {
				return clusterError(err)
			}
			ml, err := etcdx.ListMembers(ctx, cli)
			if err != nil {
				return clusterError(err)
			}
			writeJSON(w, http.StatusOK, ml)
			return nil
		case r.Method == http.MethodDelete:
			if err := etcdx.RemoveMember(ctx, cli, id); err != nil {
				return clusterError(err)
			}
			ml, err := etcdx.ListMembers(ctx, cli)
			if err != nil {
				return clusterError(err)
			}
			writeJSON(w, http.StatusOK, ml)
			return nil
		}
	}
	return errorf(http.StatusNotFound, "no such cluster route %s %q (have: members, members/{hexid}, members/{hexid}/promote, id, status, leader, snapshot)", r.Method, rest)
}

// serveSnapshot streams an etcd snapshot. A failure after the first byte can only cut
// the stream short; the snapshot's trailing checksum lets the reader notice.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) error {
	rc, err := s.store.Client().Snapshot(r.Context())
	if err != nil {
		return clusterError(err)
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="picket.snapshot"`)
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return nil
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				s.log.Warn("snapshot stream cut", "err", rerr)
				// Break the connection so the client sees a truncated body, not a complete one.
				panic(http.ErrAbortHandler)
			}
			return nil
		}
	}
}

// checkPeerURLs validates peer URLs before they reach etcd.
func checkPeerURLs(peers []string) error {
	for _, p := range peers {
		if !strings.HasPrefix(p, "http://") && !strings.HasPrefix(p, "https://") {
			return errorf(http.StatusBadRequest, "peer URL %q must be http(s)://host:port, e.g. https://10.0.0.4:2380", p)
		}
	}
	return nil
}

// clusterError maps etcd's membership errors to HTTP statuses with a message that says
// what to do.
func clusterError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, etcdx.ErrMemberNotFound), errors.Is(err, rpctypes.ErrMemberNotFound):
		return errorf(http.StatusNotFound, "%s; list the members with `picket cluster member-list`", msg)
	case errors.Is(err, etcdx.ErrLearner), errors.Is(err, etcdx.ErrNotCaughtUp),
		errors.Is(err, rpctypes.ErrPeerURLExist), errors.Is(err, rpctypes.ErrTooManyLearners),
		errors.Is(err, rpctypes.ErrMemberLearnerNotReady), errors.Is(err, rpctypes.ErrMemberNotLearner):
		return errorf(http.StatusConflict, "%s", msg)
	case strings.Contains(msg, "not enough started members"):
		return errorf(http.StatusConflict, "%s: the change would leave fewer started voters than a quorum; start or replace the failed members first", msg)
	case strings.Contains(msg, "unhealthy cluster"):
		return errorf(http.StatusServiceUnavailable, "%s: a member was restarted recently or a voter is down; wait a few seconds and retry, or replace the failed member first", msg)
	}
	return err
}

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
