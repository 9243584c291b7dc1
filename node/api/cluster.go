package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// member is one etcd member in the JSON shape sensuctl expects.
type member struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

type header struct {
	ClusterID uint64 `json:"cluster_id"`
	MemberID  uint64 `json:"member_id"`
	RaftTerm  uint64 `json:"raft_term"`
}

// serveCluster handles /api/core/v2/cluster/members[/{hexid}] and /cluster/id.
func (s *Server) serveCluster(w http.ResponseWriter, r *http.Request, rest string, p *Principal) error {
	v := verbWrite
	if r.Method == http.MethodGet {
		v = verbRead
	}
	if !allowed(p.Role, v, "cluster") {
		return errorf(http.StatusForbidden, "user %s (role %s) may not %s cluster membership", p.Username, roleName(p.Role), verbName(v))
	}
	cli := s.store.Client()
	ctx := r.Context()
	rest = strings.Trim(rest, "/")
	switch {
	case rest == "id" && r.Method == http.MethodGet:
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, fmt.Sprintf("%x", resp.Header.GetClusterId()))
		return nil
	case rest == "members" && r.Method == http.MethodGet:
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		out := struct {
			Header  header   `json:"header"`
			Members []member `json:"members"`
		}{Header: header{resp.Header.GetClusterId(), resp.Header.GetMemberId(), resp.Header.GetRaftTerm()}}
		for _, m := range resp.Members {
			out.Members = append(out.Members, member{m.GetID(), m.GetName(), m.GetPeerURLs(), m.GetClientURLs(), m.GetIsLearner()})
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	case rest == "members" && r.Method == http.MethodPost:
		peers := splitAddrs(r.URL.Query().Get("peer-addrs"))
		if len(peers) == 0 {
			return errorf(http.StatusBadRequest, "give the new member's peer URLs with ?peer-addrs=https://host:2380")
		}
		resp, err := cli.MemberAdd(ctx, peers)
		if err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		m := resp.Member
		writeJSON(w, http.StatusCreated, member{ID: m.GetID(), Name: m.GetName(), PeerURLs: m.GetPeerURLs(), ClientURLs: m.GetClientURLs(), IsLearner: m.GetIsLearner()})
		return nil
	case strings.HasPrefix(rest, "members/"):
		id, err := strconv.ParseUint(strings.TrimPrefix(rest, "members/"), 16, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "member ID %q is not hexadecimal", strings.TrimPrefix(rest, "members/"))
		}
		switch r.Method {
		case http.MethodPut:
			peers := splitAddrs(r.URL.Query().Get("peer-addrs"))
			if len(peers) == 0 {
				return errorf(http.StatusBadRequest, "give the member's new peer URLs with ?peer-addrs=")
			}
			if _, err := cli.MemberUpdate(ctx, id, peers); err != nil {
				return fmt.Errorf("update member %x: %w", id, err)
			}
			writeJSON(w, http.StatusOK, map[string]any{"ID": id, "peerURLs": peers})
			return nil
		case http.MethodDelete:
			if _, err := cli.MemberRemove(ctx, id); err != nil {
				return fmt.Errorf("remove member %x: %w", id, err)
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	}
	return errorf(http.StatusNotFound, "no such cluster route %q (have: members, members/{hexid}, id)", rest)
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
