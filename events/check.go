package events

import (
	"encoding/json"
	"fmt"
	"strings"
)

// CheckConfig is a check definition: what to run, where (subscriptions), how often
// (interval or cron) and who handles the results.
type CheckConfig struct {
	Metadata             ObjectMeta            `json:"metadata"`
	Command              string                `json:"command"`
	Handlers             []string              `json:"handlers"`
	HighFlapThreshold    uint32                `json:"high_flap_threshold"`
	Interval             int64                 `json:"interval"`
	LowFlapThreshold     uint32                `json:"low_flap_threshold"`
	Publish              bool                  `json:"publish"`
	RuntimeAssets        []string              `json:"runtime_assets"`
	Subscriptions        []string              `json:"subscriptions"`
	ProxyEntityName      string                `json:"proxy_entity_name"`
	CheckHooks           []map[string][]string `json:"check_hooks"`
	Stdin                bool                  `json:"stdin"`
	Subdue               json.RawMessage       `json:"subdue"`
	Cron                 string                `json:"cron,omitempty"`
	Ttl                  int64                 `json:"ttl"`
	Timeout              int64                 `json:"timeout"`
	ProxyRequests        *ProxyRequests        `json:"proxy_requests,omitempty"`
	RoundRobin           bool                  `json:"round_robin"`
	OutputMetricFormat   string                `json:"output_metric_format"`
	OutputMetricHandlers []string              `json:"output_metric_handlers"`
	OutputMetricTags     []MetricTag           `json:"output_metric_tags"`
	// OutputMetricThresholds is kept as given; Picket does not evaluate thresholds yet.
	OutputMetricThresholds json.RawMessage     `json:"output_metric_thresholds,omitempty"`
	EnvVars                []string            `json:"env_vars"`
	MaxOutputSize          int64               `json:"max_output_size,omitempty"`
	DiscardOutput          bool                `json:"discard_output,omitempty"`
	Secrets                []Secret            `json:"secrets,omitempty"`
	Pipelines              []ResourceReference `json:"pipelines,omitempty"`
	// Scheduler is the scheduler Sensu used ("memory", "etcd", ...); informational.
	Scheduler string `json:"scheduler,omitempty"`
	// Aggregate (a Picket extension) names the check aggregate that counts the latest
	// result of this check per entity; see AggregateRecord.
	Aggregate string `json:"aggregate,omitempty"`

	extra map[string]json.RawMessage
}

// ProxyRequests makes a check run once per entity matching every entity attribute.
type ProxyRequests struct {
	EntityAttributes []string `json:"entity_attributes"`
	Splay            bool     `json:"splay"`
	SplayCoverage    uint32   `json:"splay_coverage"`
}

// Secret names an environment variable and the secret that provides its value.
type Secret struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// ResourceReference points to another resource, e.g. a check's pipelines.
type ResourceReference struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	APIVersion string `json:"api_version"`
}

// History is one past result of a check, kept in Check.History.
type History struct {
	Status   uint32 `json:"status"`
	Executed int64  `json:"executed"`
}

// Check is a check as it appears in an event: the definition it ran with plus the result.
type Check struct {
	CheckConfig

	Duration             float64   `json:"duration,omitempty"`
	Executed             int64     `json:"executed"`
	History              []History `json:"history"`
	Issued               int64     `json:"issued"`
	Output               string    `json:"output"`
	State                string    `json:"state,omitempty"`
	Status               uint32    `json:"status"`
	TotalStateChange     uint32    `json:"total_state_change"`
	LastOK               int64     `json:"last_ok"`
	Occurrences          int64     `json:"occurrences"`
	OccurrencesWatermark int64     `json:"occurrences_watermark"`
	Silenced             []string  `json:"silenced,omitempty"`
	IsSilenced           bool      `json:"is_silenced"`
	Hooks                []Hook    `json:"hooks,omitempty"`
	ProcessedBy          string    `json:"processed_by,omitempty"`

	extra map[string]json.RawMessage
}

// Check states, in Check.State.
const (
	CheckStatePassing  = "passing"
	CheckStateFailing  = "failing"
	CheckStateFlapping = "flapping"
)

// outputMetricFormats are the values a check may declare in OutputMetricFormat.
var outputMetricFormats = []string{
	"nagios_perfdata", "graphite_plaintext", "influxdb_line", "opentsdb_line", "prometheus_text",
}

// Meta returns the check definition's metadata.
func (c *CheckConfig) Meta() *ObjectMeta { return &c.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (c CheckConfig) MarshalJSON() ([]byte, error) { return marshalKeeping(&c, c.extra) }

// UnmarshalJSON reads a check definition and keeps keys it does not know.
func (c *CheckConfig) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, c)
	c.extra = extra
	return err
}

// Validate reports every problem with the check definition.
func (c *CheckConfig) Validate() error {
	var p problems
	p.meta("", c.Metadata)
	if c.Command == "" {
		p.add("command", "required; set the command the agent runs")
	}
	c.validateSchedule(&p, "")
	if c.Publish && len(c.Subscriptions) == 0 {
		p.add("subscriptions", "a published check needs at least one subscription; add one or set publish: false")
	}
	p.nonEmptyItems("subscriptions", c.Subscriptions)
	p.nonEmptyItems("handlers", c.Handlers)
	p.nonEmptyItems("output_metric_handlers", c.OutputMetricHandlers)
	validateCheckHooks(&p, c.CheckHooks)
	if err := checkWindowKeys(c.Subdue); err != nil {
		p.add("subdue", "%s", err)
	} else if _, err := ParseSubdue(c.Subdue); err != nil {
		p.add("subdue", "%s", strings.TrimPrefix(err.Error(), "subdue: "))
	}
	if c.Aggregate != "" && !nameRE.MatchString(c.Aggregate) {
		p.add("aggregate", "%q is not a valid aggregate name; use only letters, digits, '_', '.', '-' or ':'", c.Aggregate)
	}
	if v, ok := c.Metadata.Annotations[AggregateRetentionAnnotation]; ok {
		if _, err := parseRetention(v); err != nil {
			p.add("metadata.annotations."+AggregateRetentionAnnotation, "%v", err)
		}
	}
	if c.MaxOutputSize < 0 {
		p.add("max_output_size", "must be zero (no limit) or a positive number of bytes (got %d)", c.MaxOutputSize)
	}
	if c.ProxyRequests != nil && c.ProxyRequests.SplayCoverage > 100 {
		p.add("proxy_requests.splay_coverage", "must be a percentage from 0 to 100 (got %d)", c.ProxyRequests.SplayCoverage)
	}
	for i, s := range c.Secrets {
		if s.Name == "" || s.Secret == "" {
			p.add(fmt.Sprintf("secrets[%d]", i), "needs both name and secret")
		}
	}
	return p.err()
}

// validateSchedule checks the fields shared by check definitions and checks in events.
func (c *CheckConfig) validateSchedule(p *problems, prefix string) {
	switch {
	case c.Cron != "" && c.Interval > 0:
		p.add(prefix+"cron", "cannot be used together with interval (%d); set one of them", c.Interval)
	case c.Cron == "" && c.Interval <= 0:
		p.add(prefix+"interval", "must be a positive number of seconds (got %d); set interval or cron", c.Interval)
	case c.Interval < 0:
		p.add(prefix+"interval", "must be zero or a positive number of seconds when cron is set (got %d)", c.Interval)
	}
	if c.Cron != "" {
		if err := validateCron(c.Cron); err != nil {
			p.add(prefix+"cron", "%v", err)
		}
	}
	p.nonNegative(prefix+"timeout", c.Timeout)
	switch {
	case c.Ttl < 0:
		p.add(prefix+"ttl", "must be 0 (off) or a number of seconds greater than interval (got %d)", c.Ttl)
	case c.Ttl > 0 && c.Ttl <= c.Interval:
		p.add(prefix+"ttl", "must be greater than interval (%d) so a result can arrive in time (got %d); raise ttl or set it to 0", c.Interval, c.Ttl)
	}
	if c.LowFlapThreshold > 100 {
		p.add(prefix+"low_flap_threshold", "must be a percentage from 0 to 100 (got %d)", c.LowFlapThreshold)
	}
	if c.HighFlapThreshold > 100 {
		p.add(prefix+"high_flap_threshold", "must be a percentage from 0 to 100 (got %d)", c.HighFlapThreshold)
	}
	if c.HighFlapThreshold != 0 && c.LowFlapThreshold > c.HighFlapThreshold {
		p.add(prefix+"low_flap_threshold", "must not exceed high_flap_threshold (%d > %d)", c.LowFlapThreshold, c.HighFlapThreshold)
	}
	if c.OutputMetricFormat != "" {
		known := false
		for _, f := range outputMetricFormats {
			known = known || f == c.OutputMetricFormat
		}
		if !known {
			p.add(prefix+"output_metric_format", "%q is not a metric format; use one of %s, or leave it empty", c.OutputMetricFormat, strings.Join(outputMetricFormats, ", "))
		}
	}
}

// MarshalJSON writes the definition and result fields, including unknown ones read earlier.
// Check needs its own codec: CheckConfig's promoted methods would drop the result fields.
func (c Check) MarshalJSON() ([]byte, error) { return marshalKeeping(&c, c.extra) }

// UnmarshalJSON reads a check with its result and keeps keys it does not know.
func (c *Check) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, c)
	c.extra = extra
	return err
}

// NewCheck returns a check that will run with the definition cfg, ready for its result.
func NewCheck(cfg CheckConfig) *Check {
	cfg.extra = nil
	return &Check{CheckConfig: cfg}
}

// validate checks what an event needs of its check: a name and a sane schedule. An event's
// check may have no command (results posted through the API) and no interval.
func (c *Check) validate(p *problems, prefix string) {
	p.name(prefix+"metadata.name", c.Metadata.Name, nameRE)
	p.nonNegative(prefix+"interval", c.Interval)
	p.nonNegative(prefix+"timeout", c.Timeout)
	if c.Ttl < 0 {
		p.add(prefix+"ttl", "must be 0 (off) or a positive number of seconds (got %d)", c.Ttl)
	}
	switch c.State {
	case "", CheckStatePassing, CheckStateFailing, CheckStateFlapping:
	default:
		p.add(prefix+"state", "%q is not a check state; use passing, failing or flapping", c.State)
	}
}
