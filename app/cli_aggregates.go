package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
)

// isAggregates reports whether a KIND argument of list names check aggregates, which are
// computed by the server rather than stored as resources.
func isAggregates(kind string) bool {
	switch strings.ToLower(kind) {
	case "aggregates", "aggregate", "agg":
		return true
	}
	return false
}

// listAggregates implements `picket list aggregates`: the totals of every check
// aggregate in the namespace (or, with -A, in every namespace).
func listAggregates(ctx context.Context, env *Env, f *cliFlags, format string, allNS bool) error {
	s, err := openSession(env, f)
	if err != nil {
		return err
	}
	if format, err = resolveFormat(format, s); err != nil {
		return err
	}
	namespaces := []string{s.namespace}
	if allNS {
		nsKind, _ := events.LookupKind("namespaces")
		raws, err := s.client.List(ctx, nsKind, "")
		if err != nil {
			return s.explain(err)
		}
		namespaces = namespaces[:0]
		for _, raw := range raws {
			var ns struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(raw, &ns) == nil && ns.Name != "" {
				namespaces = append(namespaces, ns.Name)
			}
		}
	}
	type row struct {
		ns  string
		agg events.Aggregate
	}
	var rows []row
	for _, ns := range namespaces {
		aggs, err := getAggregates(ctx, s.client, ns)
		if err != nil {
			return s.explain(err)
		}
		for _, a := range aggs {
			rows = append(rows, row{ns, a})
		}
	}
	switch format {
	case "json", "yaml":
		out := make([]events.Aggregate, 0, len(rows))
		for _, r := range rows {
			out = append(out, r.agg)
		}
		return writeStructured(env.Stdout, format, out)
	}
	if len(rows) == 0 {
		if allNS {
			fmt.Fprintln(env.Stdout, "No aggregates found in any namespace.")
		} else {
			fmt.Fprintf(env.Stdout, "No aggregates found in namespace %s.\n", s.namespace)
		}
		return nil
	}
	headers := []string{"NAME", "OK", "WARNING", "CRITICAL", "UNKNOWN", "STALE", "TOTAL"}
	mins := []int{8, 2, 7, 8, 7, 5, 5}
	if allNS {
		headers = append([]string{"NAMESPACE"}, headers...)
		mins = append([]int{9}, mins...)
	}
	var table [][]string
	for _, r := range rows {
		a := r.agg
		cells := []string{a.Name, strconv.Itoa(a.OK), strconv.Itoa(a.Warning), strconv.Itoa(a.Critical),
			strconv.Itoa(a.Unknown), strconv.Itoa(a.Stale), strconv.Itoa(a.Total)}
		if allNS {
			cells = append([]string{r.ns}, cells...)
		}
		table = append(table, cells)
	}
	return writeTable(env.Stdout, headers, mins, table, tableWidth)
}

// getAggregates reads GET /api/core/v2/namespaces/{ns}/aggregates.
func getAggregates(ctx context.Context, c *client.Client, ns string) ([]events.Aggregate, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/api/core/v2/namespaces/"+url.PathEscape(ns)+"/aggregates", nil)
	if err != nil {
		return nil, err
	}
	if err := client.CheckResponse(resp); err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []events.Aggregate
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode aggregates: %w", err)
	}
	return out, nil
}
