package events

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AggregateRetentionAnnotation is the check annotation that sets how long a result of the
// check stays in its aggregate without being refreshed, as seconds ("90") or a Go
// duration ("10m"). Without it a result is kept for DefaultRetentionIntervals times the
// check's interval (DefaultRetention when the check has no interval, e.g. cron checks).
const AggregateRetentionAnnotation = "picket.io/aggregate-retention"

// DefaultRetentionIntervals and DefaultRetention give the retention of an aggregate
// result whose check sets no AggregateRetentionAnnotation.
const (
	DefaultRetentionIntervals = 3
	DefaultRetention          = 5 * time.Minute
)

// AggregateRecord is the latest result of one entity in a check aggregate, stored at
// /picket/aggregates/<namespace>/<aggregate>/<entity> in the same transaction as the
// event it comes from.
type AggregateRecord struct {
	Entity   string `json:"entity"`
	Check    string `json:"check"`
	Status   uint32 `json:"status"`
	Executed int64  `json:"executed"`
	// Interval is the check's interval in seconds (0 for cron checks): a result older than
	// two intervals counts as stale.
	Interval int64 `json:"interval,omitempty"`
	// Retention is how many seconds the result stays without a newer one before the
	// aggregate-pruner removes it.
	Retention int64 `json:"retention"`
	// Received is when the server stored the result, by its own clock: retention and
	// staleness count from it, so an agent whose clock is off is neither pruned at once
	// nor never stale. Records written before it existed count from Executed.
	Received int64 `json:"received,omitempty"`
}

// since is the unix time the record's age counts from.
func (r AggregateRecord) since() int64 {
	if r.Received > 0 {
		return r.Received
	}
	return r.Executed
}

// NewAggregateRecord builds the aggregate record of a stored event whose check names an
// aggregate, with the retention its check asks for.
func NewAggregateRecord(ev *Event) AggregateRecord {
	c := ev.Check
	r := AggregateRecord{
		Entity: ev.Entity.Metadata.Name, Check: c.Metadata.Name, Status: c.Status,
		Executed: c.Executed, Interval: c.Interval,
	}
	ret := time.Duration(0)
	if v, ok := c.Metadata.Annotations[AggregateRetentionAnnotation]; ok {
		ret, _ = parseRetention(v) // validated when the check was stored; bad values fall back
	}
	if ret <= 0 {
		ret = DefaultRetention
		if c.Interval > 0 {
			ret = time.Duration(DefaultRetentionIntervals*c.Interval) * time.Second
		}
	}
	r.Retention = int64(ret / time.Second)
	if r.Retention < 1 {
		r.Retention = 1
	}
	return r
}

// Expired reports whether the record has outlived its retention at now.
func (r AggregateRecord) Expired(now time.Time) bool {
	return now.Unix()-r.since() > r.Retention
}

// Stale reports whether the record is older than two intervals of its check: its entity
// has likely stopped reporting, though the result is still within its retention.
func (r AggregateRecord) Stale(now time.Time) bool {
	if r.Interval <= 0 {
		return false
	}
	return now.Unix()-r.since() > 2*r.Interval
}

// parseRetention reads a retention: whole seconds or a Go duration, at least one second.
func parseRetention(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 1 {
			return 0, fmt.Errorf("%q must be at least 1 second", v)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("%q is not a retention; use seconds (\"90\") or a duration of at least 1s (\"10m\")", v)
	}
	return d, nil
}

// AggregateResult is one entity's latest result in an Aggregate.
type AggregateResult struct {
	Entity   string `json:"entity"`
	Check    string `json:"check"`
	Status   uint32 `json:"status"`
	Executed int64  `json:"executed"`
	Stale    bool   `json:"stale,omitempty"`
}

// Aggregate is what the API answers for a check aggregate: how many of its entities'
// latest results are ok, warning, critical or unknown, how many are stale (older than two
// intervals of their check; counted there and not by status), and the results. Total
// counts every result.
type Aggregate struct {
	Name     string            `json:"name"`
	OK       int               `json:"ok"`
	Warning  int               `json:"warning"`
	Critical int               `json:"critical"`
	Unknown  int               `json:"unknown"`
	Total    int               `json:"total"`
	Stale    int               `json:"stale"`
	Results  []AggregateResult `json:"results"`
}

// Summarize counts records into the aggregate name at now. Expired records not pruned yet
// are left out.
func Summarize(name string, records []AggregateRecord, now time.Time) Aggregate {
	a := Aggregate{Name: name, Results: []AggregateResult{}}
	for _, r := range records {
		if r.Expired(now) {
			continue
		}
		res := AggregateResult{Entity: r.Entity, Check: r.Check, Status: r.Status, Executed: r.Executed}
		switch {
		case r.Stale(now):
			res.Stale = true
			a.Stale++
		case r.Status == 0:
			a.OK++
		case r.Status == 1:
			a.Warning++
		case r.Status == 2:
			a.Critical++
		default:
			a.Unknown++
		}
		a.Total++
		a.Results = append(a.Results, res)
	}
	sort.Slice(a.Results, func(i, j int) bool {
		if a.Results[i].Entity != a.Results[j].Entity {
			return a.Results[i].Entity < a.Results[j].Entity
		}
		return a.Results[i].Check < a.Results[j].Check
	})
	return a
}
