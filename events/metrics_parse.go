package events

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Metric output formats, in CheckConfig.OutputMetricFormat.
const (
	MetricsNagios     = "nagios_perfdata"
	MetricsGraphite   = "graphite_plaintext"
	MetricsInfluxDB   = "influxdb_line"
	MetricsOpenTSDB   = "opentsdb_line"
	MetricsPrometheus = "prometheus_text"
)

// ParseMetrics reads the metric points a check printed in format. Points without a
// timestamp of their own get executed (unix seconds); timestamps in milli-, micro- or
// nanoseconds are turned into seconds. Lines that do not parse are skipped and reported,
// joined, in the error, next to the points that did parse.
func ParseMetrics(format, output string, executed int64) ([]MetricPoint, error) {
	switch format {
	case MetricsNagios:
		return parseNagios(output, executed)
	case MetricsGraphite:
		return parseLines(output, executed, parseGraphiteLine)
	case MetricsInfluxDB:
		return parseLines(output, executed, parseInfluxLine)
	case MetricsOpenTSDB:
		return parseLines(output, executed, parseOpenTSDBLine)
	case MetricsPrometheus:
		return parseLines(output, executed, parsePrometheusLine)
	case "":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown metric format %q", format)
}

// ExtractMetrics parses the output of ev's check into ev.Metrics when the check declares
// an output_metric_format and the event carries no points yet (Sensu agents extract them
// themselves; Picket's agents leave it to the server). It adds the check's
// output_metric_tags, with tokens such as {{ .name }} substituted from the entity, and
// names the check's output_metric_handlers in ev.Metrics.Handlers. It reports what could
// not be parsed; the points that could are kept.
func ExtractMetrics(ev *Event) error {
	c := ev.Check
	if c == nil || c.OutputMetricFormat == "" {
		return nil
	}
	if ev.Metrics != nil && len(ev.Metrics.Points) > 0 {
		if len(ev.Metrics.Handlers) == 0 && len(c.OutputMetricHandlers) > 0 {
			ev.Metrics.Handlers = append([]string(nil), c.OutputMetricHandlers...)
		}
		return nil
	}
	executed := c.Executed
	points, perr := ParseMetrics(c.OutputMetricFormat, c.Output, executed)
	if len(points) == 0 {
		return perr
	}
	var errs []error
	if perr != nil {
		errs = append(errs, perr)
	}
	if len(c.OutputMetricTags) > 0 {
		var entity map[string]any
		tags := make([]MetricTag, 0, len(c.OutputMetricTags))
		for _, t := range c.OutputMetricTags {
			v := t.Value
			if strings.Contains(v, "{{") {
				if entity == nil {
					entity = Synthesize(ev.Entity)
				}
				s, err := SubstituteTokens(v, entity)
				if err != nil {
					errs = append(errs, fmt.Errorf("output_metric_tags %s: %w", t.Name, err))
					continue
				}
				v = s
			}
			tags = append(tags, MetricTag{Name: t.Name, Value: v})
		}
		for i := range points {
			points[i].Tags = append(points[i].Tags, tags...)
		}
	}
	if ev.Metrics == nil {
		ev.Metrics = &Metrics{}
	}
	ev.Metrics.Points = points
	if len(ev.Metrics.Handlers) == 0 {
		ev.Metrics.Handlers = append([]string{}, c.OutputMetricHandlers...)
	}
	return errors.Join(errs...)
}

// parseLines runs parse on every non-blank line that is not a comment.
func parseLines(output string, executed int64, parse func(line string, executed int64) ([]MetricPoint, error)) ([]MetricPoint, error) {
	var points []MetricPoint
	var errs []error
	for n, line := range strings.Split(output, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		p, err := parse(line, executed)
		if err != nil {
			if len(errs) < 5 {
				errs = append(errs, fmt.Errorf("line %d: %w", n+1, err))
			}
			continue
		}
		points = append(points, p...)
	}
	return points, errors.Join(errs...)
}

// parseValue reads a metric value; NaN and infinities are refused, since JSON cannot
// carry them.
func parseValue(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number", s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("value %q is not a finite number", s)
	}
	return v, nil
}

// parseTimestamp reads a unix timestamp and brings it to seconds: values beyond what
// seconds can reasonably be are taken as milli-, micro- or nanoseconds.
func parseTimestamp(s string) (int64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("timestamp %q is not a unix time", s)
	}
	switch {
	case f >= 1e17:
		f /= 1e9
	case f >= 1e14:
		f /= 1e6
	case f >= 1e11:
		f /= 1e3
	}
	if f > math.MaxInt64/2 {
		return 0, fmt.Errorf("timestamp %q is out of range", s)
	}
	return int64(f), nil
}

// parseNagios reads Nagios performance data: everything after the first "|" of the first
// line, and after the first "|" of any later line (long output may carry more), as
// space-separated 'label'=value[UOM];[warn];[crit];[min];[max].
func parseNagios(output string, executed int64) ([]MetricPoint, error) {
	var perf []string
	for _, line := range strings.Split(output, "\n") {
		if _, after, ok := strings.Cut(line, "|"); ok {
			perf = append(perf, after)
		}
	}
	var points []MetricPoint
	var errs []error
	for _, p := range perf {
		for _, item := range splitPerfdata(p) {
			label, rest, ok := cutLastEquals(item)
			if !ok || label == "" {
				if len(errs) < 5 {
					errs = append(errs, fmt.Errorf("perfdata %q is not label=value", item))
				}
				continue
			}
			raw, _, _ := strings.Cut(rest, ";")
			num := strings.TrimRightFunc(raw, func(r rune) bool {
				return !(r >= '0' && r <= '9' || r == '.')
			})
			v, err := parseValue(num)
			if err != nil {
				if len(errs) < 5 {
					errs = append(errs, fmt.Errorf("perfdata %s: %w", label, err))
				}
				continue
			}
			points = append(points, MetricPoint{Name: label, Value: v, Timestamp: executed, Tags: []MetricTag{}})
		}
	}
	return points, errors.Join(errs...)
}

// splitPerfdata splits perfdata at spaces outside single-quoted labels.
func splitPerfdata(s string) []string {
	var out []string
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			// '' inside a quoted label is a literal quote.
			if quoted && i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			quoted = !quoted
		case (c == ' ' || c == '\t' || c == '\r') && !quoted:
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// cutLastEquals splits label=value at the last "=", since a label may contain one.
func cutLastEquals(s string) (string, string, bool) {
	i := strings.LastIndexByte(s, '=')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// parseGraphiteLine reads "metric.path value [timestamp]".
func parseGraphiteLine(line string, executed int64) ([]MetricPoint, error) {
	f := strings.Fields(line)
	if len(f) < 2 || len(f) > 3 {
		return nil, fmt.Errorf("want \"path value timestamp\", got %d fields", len(f))
	}
	v, err := parseValue(f[1])
	if err != nil {
		return nil, err
	}
	ts := executed
	if len(f) == 3 {
		if ts, err = parseTimestamp(f[2]); err != nil {
			return nil, err
		}
	}
	return []MetricPoint{{Name: f[0], Value: v, Timestamp: ts, Tags: []MetricTag{}}}, nil
}

// parseOpenTSDBLine reads "[put] metric timestamp value tag=value ...".
func parseOpenTSDBLine(line string, executed int64) ([]MetricPoint, error) {
	f := strings.Fields(line)
	if len(f) > 0 && f[0] == "put" {
		f = f[1:]
	}
	if len(f) < 3 {
		return nil, fmt.Errorf("want \"metric timestamp value tag=value...\", got %d fields", len(f))
	}
	ts, err := parseTimestamp(f[1])
	if err != nil {
		return nil, err
	}
	v, err := parseValue(f[2])
	if err != nil {
		return nil, err
	}
	tags := make([]MetricTag, 0, len(f)-3)
	for _, t := range f[3:] {
		k, val, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("tag %q is not name=value", t)
		}
		tags = append(tags, MetricTag{Name: k, Value: val})
	}
	return []MetricPoint{{Name: f[0], Value: v, Timestamp: ts, Tags: tags}}, nil
}

// parseInfluxLine reads InfluxDB line protocol,
// "measurement[,tag=value...] field=value[,field=value...] [timestamp]", giving one point
// per numeric or boolean field, named "measurement.field". String fields are skipped.
func parseInfluxLine(line string, executed int64) ([]MetricPoint, error) {
	sections := splitUnescaped(line, ' ', true)
	if len(sections) < 2 || len(sections) > 3 {
		return nil, fmt.Errorf("want \"measurement,tags fields timestamp\", got %d sections", len(sections))
	}
	head := splitUnescaped(sections[0], ',', false)
	measurement := unescapeInflux(head[0])
	if measurement == "" {
		return nil, errors.New("empty measurement")
	}
	tags := make([]MetricTag, 0, len(head)-1)
	for _, t := range head[1:] {
		kv := splitUnescaped(t, '=', false)
		if len(kv) != 2 || kv[0] == "" {
			return nil, fmt.Errorf("tag %q is not name=value", t)
		}
		tags = append(tags, MetricTag{Name: unescapeInflux(kv[0]), Value: unescapeInflux(kv[1])})
	}
	ts := executed
	if len(sections) == 3 {
		var err error
		if ts, err = parseTimestamp(sections[2]); err != nil {
			return nil, err
		}
	}
	var points []MetricPoint
	for _, fv := range splitUnescaped(sections[1], ',', true) {
		kv := splitUnescaped(fv, '=', true)
		if len(kv) != 2 || kv[0] == "" || kv[1] == "" {
			return nil, fmt.Errorf("field %q is not name=value", fv)
		}
		raw := kv[1]
		var v float64
		switch {
		case raw[0] == '"':
			continue // a string field is no measurement
		case raw == "t" || raw == "T" || raw == "true" || raw == "True" || raw == "TRUE":
			v = 1
		case raw == "f" || raw == "F" || raw == "false" || raw == "False" || raw == "FALSE":
			v = 0
		default:
			raw = strings.TrimRight(raw, "iu")
			var err error
			if v, err = parseValue(raw); err != nil {
				return nil, fmt.Errorf("field %s: %w", kv[0], err)
			}
		}
		points = append(points, MetricPoint{
			Name: measurement + "." + unescapeInflux(kv[0]), Value: v, Timestamp: ts,
			Tags: append([]MetricTag{}, tags...),
		})
	}
	if len(points) == 0 {
		return nil, errors.New("no numeric field")
	}
	return points, nil
}

// splitUnescaped splits s at sep where it is not escaped with a backslash and, when
// quotes is set, not inside double quotes. Escapes are kept for unescapeInflux.
func splitUnescaped(s string, sep byte, quotes bool) []string {
	var out []string
	start := 0
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"' && quotes:
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unescapeInflux(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case ',', ' ', '=', '"', '\\':
				i++
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parsePrometheusLine reads a Prometheus exposition sample,
// `name{label="value",...} value [timestamp_ms]`.
func parsePrometheusLine(line string, executed int64) ([]MetricPoint, error) {
	name := line
	var labels string
	rest := ""
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return nil, errors.New("unclosed label set")
		}
		name, labels, rest = line[:i], line[i+1:j], line[j+1:]
	} else {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil, errors.New("empty sample")
		}
		name, rest = f[0], strings.TrimPrefix(line, f[0])
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, errors.New("sample without a name")
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return nil, fmt.Errorf("want \"name{labels} value [timestamp]\", got %q", line)
	}
	v, err := parseValue(f[0])
	if err != nil {
		return nil, err
	}
	ts := executed
	if len(f) == 2 {
		if ts, err = parseTimestamp(f[1]); err != nil {
			return nil, err
		}
	}
	tags := []MetricTag{}
	for _, l := range splitUnescaped(labels, ',', true) {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		k, val, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("label %q is not name=\"value\"", l)
		}
		uq, err := strconv.Unquote(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("label %s: value %s is not quoted", k, val)
		}
		tags = append(tags, MetricTag{Name: strings.TrimSpace(k), Value: uq})
	}
	return []MetricPoint{{Name: name, Value: v, Timestamp: ts, Tags: tags}}, nil
}
