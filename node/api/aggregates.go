package api

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// routeAggregates serves GET /api/core/v2/namespaces/{ns}/aggregates[/{name}] and reports
// whether rest was such a path. Aggregates are computed from the results that checks
// with an aggregate field store; they cannot be written through the API.
func (s *Server) routeAggregates(w http.ResponseWriter, r *http.Request, rest string, p *Principal) bool {
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	if len(segs) < 3 || len(segs) > 4 || segs[0] != "namespaces" || segs[2] != "aggregates" {
		return false
	}
	route := "/api/core/v2/namespaces/{ns}/aggregates"
	name := ""
	if len(segs) == 4 {
		name = segs[3]
		route += "/{name}"
	}
	setRouteLabel(r, route)
	if err := s.serveAggregates(w, r, segs[1], name, p); err != nil {
		writeError(w, err)
	}
	return true
}

func (s *Server) serveAggregates(w http.ResponseWriter, r *http.Request, ns, name string, p *Principal) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errorf(http.StatusMethodNotAllowed, "aggregates are read-only: they count the results of checks with an aggregate field; use GET")
	}
	if !allowed(p.Role, verbRead, "aggregates") {
		return errorf(http.StatusForbidden, "user %s (role %s) may not read aggregates", p.Username, roleName(p.Role))
	}
	ctx := r.Context()
	if err := s.namespaceExists(ctx, ns); err != nil {
		return err
	}
	prefix := etcdx.Key("aggregates", ns)
	if name != "" {
		prefix = etcdx.Key("aggregates", ns, name)
	}
	kvs, _, err := s.store.ListAll(ctx, prefix)
	if err != nil {
		return err
	}
	byName := map[string][]events.AggregateRecord{}
	base := etcdx.Key("aggregates", ns) + "/"
	for _, kv := range kvs {
		agg, _, ok := strings.Cut(strings.TrimPrefix(kv.Key, base), "/")
		if !ok {
			continue
		}
		var rec events.AggregateRecord
		if json.Unmarshal(kv.Value, &rec) != nil {
			continue
		}
		byName[agg] = append(byName[agg], rec)
	}
	now := time.Now()
	if name != "" {
		recs, ok := byName[name]
		if !ok {
			return errorf(http.StatusNotFound, "aggregate %q not found in namespace %s; no check with aggregate: %s has reported a result within its retention", name, ns, name)
		}
		writeJSON(w, http.StatusOK, events.Summarize(name, recs, now))
		return nil
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]events.Aggregate, 0, len(names))
	for _, n := range names {
		out = append(out, events.Summarize(n, byName[n], now))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
