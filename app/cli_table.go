package app

// This file renders resources as text: aligned tables for `list`, a key/value view for
// `get`. Both work on the JSON the API returns, so they show what the server has,
// including fields this version of Picket does not know.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// tableWidth is the width tables are made to fit.
const tableWidth = 80

// columnGap is the space between two table columns.
const columnGap = 2

// column is one column of a list table.
type column struct {
	header string
	// min is the narrowest the column may be cut to when the table is too wide (the
	// header's width when smaller).
	min   int
	value func(o jsonObject) string
}

// jsonObject is one resource as the API returned it.
type jsonObject map[string]any

// path returns the value at a dotted path such as "metadata.name", or nil.
func (o jsonObject) path(p string) any {
	var cur any = map[string]any(o)
	for _, seg := range strings.Split(p, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[seg]
	}
	return cur
}

// str returns the value at p as text: strings as they are, numbers and booleans
// spelled out, lists of scalars joined with commas.
func (o jsonObject) str(p string) string { return scalarText(o.path(p)) }

// num returns the value at p as an integer, 0 when absent.
func (o jsonObject) num(p string) int64 {
	switch v := o.path(p).(type) {
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			f, _ := v.Float64()
			return int64(f)
		}
		return n
	case float64:
		return int64(v)
	}
	return 0
}

// list returns the strings of the list at p.
func (o jsonObject) list(p string) []string {
	arr, _ := o.path(p).([]any)
	out := make([]string, 0, len(arr))
	for _, v := range arr {
		out = append(out, scalarText(v))
	}
	return out
}

// name is the resource's name, wherever its kind keeps it.
func (o jsonObject) name() string {
	for _, p := range []string{"metadata.name", "name", "username"} {
		if s := o.str(p); s != "" {
			return s
		}
	}
	if e, c := o.str("entity.metadata.name"), o.str("check.metadata.name"); e != "" || c != "" {
		return e + "/" + c
	}
	return ""
}

// namespace is the resource's namespace ("" for cluster-wide kinds).
func (o jsonObject) namespace() string {
	if ns := o.str("metadata.namespace"); ns != "" {
		return ns
	}
	return o.str("entity.metadata.namespace")
}

func scalarText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case []any:
		parts := make([]string, 0, len(v))
		for _, x := range v {
			parts = append(parts, scalarText(x))
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// decodeObjects decodes raw resources, keeping numbers exact.
func decodeObjects(raws []json.RawMessage) ([]jsonObject, error) {
	out := make([]jsonObject, 0, len(raws))
	for _, raw := range raws {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var o jsonObject
		if err := dec.Decode(&o); err != nil {
			return nil, fmt.Errorf("decode the server's answer: %w", err)
		}
		out = append(out, o)
	}
	return out, nil
}

// columnsFor returns the list columns of a kind, chosen to fit 80 columns.
func columnsFor(plural string, now time.Time) []column {
	name := column{"NAME", 12, jsonObject.name}
	switch plural {
	case "checks":
		return []column{name,
			{"COMMAND", 12, func(o jsonObject) string { return o.str("command") }},
			{"INTERVAL/CRON", 9, func(o jsonObject) string {
				if c := o.str("cron"); c != "" {
					return c
				}
				if n := o.num("interval"); n > 0 {
					return fmt.Sprintf("%ds", n)
				}
				return ""
			}},
			{"SUBSCRIPTIONS", 10, func(o jsonObject) string { return o.str("subscriptions") }},
			{"HANDLERS", 8, func(o jsonObject) string { return o.str("handlers") }},
		}
	case "entities":
		return []column{name,
			{"CLASS", 5, func(o jsonObject) string { return o.str("entity_class") }},
			{"OS", 5, func(o jsonObject) string {
				return strings.TrimSpace(o.str("system.os") + " " + o.str("system.platform"))
			}},
			{"SUBSCRIPTIONS", 12, func(o jsonObject) string {
				// Every entity has its own entity:NAME subscription; it says nothing here.
				var subs []string
				for _, s := range o.list("subscriptions") {
					if s != "entity:"+o.name() {
						subs = append(subs, s)
					}
				}
				return strings.Join(subs, ",")
			}},
			{"LAST SEEN", 9, func(o jsonObject) string { return ago(o.num("last_seen"), now) }},
		}
	case "events":
		return []column{
			{"ENTITY", 12, func(o jsonObject) string { return o.str("entity.metadata.name") }},
			{"CHECK", 12, func(o jsonObject) string { return o.str("check.metadata.name") }},
			{"STATUS", 6, func(o jsonObject) string {
				if o.path("check") == nil {
					return "" // a metrics-only event
				}
				return statusText(o.num("check.status"))
			}},
			{"LAST SEEN", 9, func(o jsonObject) string { return ago(o.num("timestamp"), now) }},
			{"SILENCED", 8, func(o jsonObject) string { return yesNo(o.path("check.is_silenced") == true) }},
		}
	case "handlers":
		return []column{name,
			{"TYPE", 4, func(o jsonObject) string { return o.str("type") }},
			{"FILTERS", 8, func(o jsonObject) string { return o.str("filters") }},
			{"MUTATOR", 7, func(o jsonObject) string { return o.str("mutator") }},
			{"EXECUTES", 12, func(o jsonObject) string {
				switch o.str("type") {
				case "tcp", "udp":
					return fmt.Sprintf("%s:%s", o.str("socket.host"), o.str("socket.port"))
				case "set":
					return o.str("handlers")
				}
				return o.str("command")
			}},
		}
	case "filters":
		return []column{name,
			{"ACTION", 6, func(o jsonObject) string { return o.str("action") }},
			{"EXPRESSIONS", 16, func(o jsonObject) string { return strings.Join(o.list("expressions"), " && ") }},
		}
	case "mutators":
		return []column{name,
			{"TYPE", 4, func(o jsonObject) string {
				if t := o.str("type"); t != "" {
					return t
				}
				return "pipe"
			}},
			{"COMMAND", 16, func(o jsonObject) string {
				if c := o.str("command"); c != "" {
					return c
				}
				return o.str("eval")
			}},
			{"TIMEOUT", 7, func(o jsonObject) string { return seconds(o.num("timeout")) }},
		}
	case "silenced":
		return []column{name,
			{"BEGIN", 10, func(o jsonObject) string { return clock(o.num("begin")) }},
			{"EXPIRES", 10, func(o jsonObject) string {
				if at := o.num("expire_at"); at > 0 {
					return clock(at)
				}
				if o.num("expire") > 0 {
					return fmt.Sprintf("in %ds", o.num("expire"))
				}
				if o.path("expire_on_resolve") == true {
					return "on resolve"
				}
				return "never"
			}},
			{"CREATOR", 7, func(o jsonObject) string { return o.str("creator") }},
			{"REASON", 10, func(o jsonObject) string { return o.str("reason") }},
		}
	case "hooks":
		return []column{name,
			{"COMMAND", 16, func(o jsonObject) string { return o.str("command") }},
			{"TIMEOUT", 7, func(o jsonObject) string { return seconds(o.num("timeout")) }},
			{"STDIN", 5, func(o jsonObject) string { return yesNo(o.path("stdin") == true) }},
		}
	case "assets":
		return []column{name,
			{"URL", 16, func(o jsonObject) string { return o.str("url") }},
			{"SHA512", 10, func(o jsonObject) string { return o.str("sha512") }},
		}
	case "namespaces":
		return []column{name}
	case "users":
		return []column{
			{"USERNAME", 16, func(o jsonObject) string { return o.str("username") }},
			{"GROUPS", 16, func(o jsonObject) string { return o.str("groups") }},
			{"DISABLED", 8, func(o jsonObject) string { return yesNo(o.path("disabled") == true) }},
		}
	case "apikeys":
		return []column{
			{"KEY", 12, jsonObject.name},
			{"USERNAME", 12, func(o jsonObject) string { return o.str("username") }},
			{"CREATED", 16, func(o jsonObject) string { return clock(o.num("created_at")) }},
		}
	}
	return []column{name,
		{"LABELS", 16, func(o jsonObject) string {
			labels, _ := o.path("metadata.labels").(map[string]any)
			parts := make([]string, 0, len(labels))
			for k, v := range labels {
				parts = append(parts, k+"="+scalarText(v))
			}
			sort.Strings(parts)
			return strings.Join(parts, ",")
		}},
	}
}

func statusText(s int64) string {
	switch s {
	case 0:
		return "0 OK"
	case 1:
		return "1 WARNING"
	case 2:
		return "2 CRITICAL"
	}
	return fmt.Sprintf("%d UNKNOWN", s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func seconds(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%ds", n)
}

// ago renders a unix time as an age such as "42s ago", "never" for 0.
func ago(unix int64, now time.Time) string {
	if unix <= 0 {
		return "never"
	}
	d := now.Sub(time.Unix(unix, 0)).Round(time.Second)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// clock renders a unix time as local date and time, "" for 0.
func clock(unix int64) string {
	if unix <= 0 {
		return ""
	}
	return time.Unix(unix, 0).Format("2006-01-02 15:04")
}

// cellText makes a value fit on one table line.
func cellText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// truncate cuts s to width runes, marking the cut with "…".
func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	if width <= 1 {
		return "…"
	}
	return string([]rune(s)[:width-1]) + "…"
}

// writeTable writes a header row and rows, columns aligned and separated by two spaces.
// When the table is wider than width, the widest columns are cut first, never below
// their minimum; cut cells end in "…".
func writeTable(w io.Writer, headers []string, mins []int, rows [][]string, width int) error {
	n := len(headers)
	widths := make([]int, n)
	for i, h := range headers {
		widths[i] = utf8.RuneCountInString(h)
	}
	for r := range rows {
		for i := range rows[r] {
			rows[r][i] = cellText(rows[r][i])
			if l := utf8.RuneCountInString(rows[r][i]); l > widths[i] {
				widths[i] = l
			}
		}
	}
	floor := make([]int, n)
	for i := range widths {
		floor[i] = max(mins[i], utf8.RuneCountInString(headers[i]))
		floor[i] = min(floor[i], widths[i])
	}
	total := func() int {
		t := columnGap * (n - 1)
		for _, x := range widths {
			t += x
		}
		return t
	}
	for over := total() - width; over > 0; over-- {
		widest := -1
		for i := range widths {
			if widths[i] > floor[i] && (widest < 0 || widths[i] > widths[widest]) {
				widest = i
			}
		}
		if widest < 0 {
			break // every column is at its minimum: let the line run long
		}
		widths[widest]--
	}
	var b strings.Builder
	line := func(cells []string) {
		b.Reset()
		for i, c := range cells {
			c = truncate(c, widths[i])
			b.WriteString(c)
			if i < n-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+columnGap))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(headers)
	for _, r := range rows {
		line(r)
	}
	return nil
}

// writeKeyValues writes a resource as "Key: value" lines for `get`: metadata first, then
// the other fields in the server's order, leaving out empty values and zeros; nested
// mappings are flattened to "Parent Child" keys, and long values wrap under the value
// column.
func writeKeyValues(w io.Writer, raw json.RawMessage, width int) error {
	fields, err := orderedFields(raw)
	if err != nil {
		return err
	}
	var pairs [][2]string
	var walk func(prefix string, fields []orderedField)
	walk = func(prefix string, fields []orderedField) {
		for _, f := range fields {
			key := strings.TrimSpace(prefix + " " + humanKey(f.key))
			if prefix == "" && f.key == "metadata" {
				key = ""
			}
			if sub, err := orderedFields(f.value); err == nil && isObject(f.value) {
				if len(sub) > 0 && (isLabelMap(f.key) || allScalar(sub) && f.key != "metadata" && prefix != "") {
					// Small maps of strings read best on one line.
					parts := make([]string, 0, len(sub))
					for _, s := range sub {
						parts = append(parts, s.key+"="+valueText(s.value))
					}
					pairs = append(pairs, [2]string{key, strings.Join(parts, ", ")})
					continue
				}
				walk(key, sub)
				continue
			}
			v := valueText(f.value)
			if v == "" || v == "0" || f.key == "password_hash" {
				// Zeros are unset settings, and a password hash is no use on a screen
				// (the json and yaml formats keep both).
				continue
			}
			pairs = append(pairs, [2]string{key, v})
		}
	}
	walk("", fields)
	keyWidth := 0
	for _, p := range pairs {
		keyWidth = max(keyWidth, utf8.RuneCountInString(p[0])+1)
	}
	keyWidth = min(keyWidth, 28)
	valueWidth := max(width-keyWidth-1, 20)
	for _, p := range pairs {
		lines := wrapText(p[1], valueWidth)
		label := p[0] + ":"
		pad := keyWidth - utf8.RuneCountInString(label)
		if pad < 0 {
			// A long key gets its value on the next line.
			fmt.Fprintln(w, label)
			label, pad = "", keyWidth
		}
		for i, l := range lines {
			if i > 0 {
				label, pad = "", keyWidth
			}
			fmt.Fprintf(w, "%s%s %s\n", label, strings.Repeat(" ", pad), l)
		}
	}
	return nil
}

// isLabelMap reports keys whose values are free-form string maps.
func isLabelMap(key string) bool {
	return key == "labels" || key == "annotations"
}

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

func allScalar(fields []orderedField) bool {
	for _, f := range fields {
		t := bytes.TrimSpace(f.value)
		if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return false
		}
	}
	return true
}

// valueText renders a JSON value for the key/value view: "" for empty values, lists of
// scalars joined with ", ", anything else as compact JSON.
func valueText(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []any:
		if len(v) == 0 {
			return ""
		}
		parts := make([]string, 0, len(v))
		for _, x := range v {
			switch x.(type) {
			case map[string]any, []any:
				var b bytes.Buffer
				_ = json.Compact(&b, raw)
				return b.String()
			}
			parts = append(parts, scalarText(x))
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		if len(v) == 0 {
			return ""
		}
		var b bytes.Buffer
		_ = json.Compact(&b, raw)
		return b.String()
	}
	return scalarText(v)
}

// wrapText splits s into lines of at most width runes, at spaces where it can.
func wrapText(s string, width int) []string {
	var lines []string
	for _, para := range strings.Split(s, "\n") {
		for utf8.RuneCountInString(para) > width {
			r := []rune(para)
			cut := width
			for i := width; i > width/2; i-- {
				if r[i] == ' ' {
					cut = i
					break
				}
			}
			lines = append(lines, strings.TrimRight(string(r[:cut]), " "))
			para = strings.TrimLeft(string(r[cut:]), " ")
		}
		lines = append(lines, strings.TrimRight(para, " "))
	}
	return lines
}

// humanKey turns a JSON key such as "round_robin" into "Round Robin".
func humanKey(k string) string {
	words := strings.Split(k, "_")
	for i, w := range words {
		switch w {
		case "ttl", "id", "os", "url", "api", "sha512", "cpu", "vm", "mac", "pid":
			words[i] = strings.ToUpper(w)
		default:
			if w != "" {
				words[i] = strings.ToUpper(w[:1]) + w[1:]
			}
		}
	}
	return strings.Join(words, " ")
}

// orderedField is one key of a JSON object with its raw value.
type orderedField struct {
	key   string
	value json.RawMessage
}

// orderedFields lists the keys of a JSON object in the order they appear, metadata first.
func orderedFields(raw json.RawMessage) ([]orderedField, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []orderedField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, orderedField{key, v})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].key == "metadata" && out[j].key != "metadata" })
	return out, nil
}
