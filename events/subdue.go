package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Windows are the parsed time windows of a check's subdue (or of a filter's when).
type Windows []subdueWindow

// Contains reports whether t falls in one of the windows.
func (ws Windows) Contains(t time.Time) bool {
	for _, w := range ws {
		if w.contains(t) {
			return true
		}
	}
	return false
}

// subdueWindow is one parsed window: [begin, end) seconds after midnight in loc, on day
// (or every day when day is -1), running into the next day when end <= begin.
type subdueWindow struct {
	day        int
	begin, end int
	loc        *time.Location
}

var subdueDays = map[string]int{
	"all": -1, "sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3,
	"thursday": 4, "friday": 5, "saturday": 6,
}

// windowsExample is the shape of a subdue or when, for messages.
const windowsExample = `{"days": {"all": [{"begin": "5:00 PM", "end": "8:00 AM"}]}}`

// checkWindowKeys reports, for validation, a key a subdue or when does not have and a
// value of the wrong shape, in the resource's terms rather than Go's. ParseSubdue
// ignores unknown keys (a resource stored before keeps working), but on a write a typo
// such as "day" for "days" would leave no window: the filter or subdue would apply at
// all hours.
func checkWindowKeys(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return fmt.Errorf("must be an object like %s", windowsExample)
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		if k != "days" {
			return fmt.Errorf("unknown key %q; the only key is days, e.g. %s", k, windowsExample)
		}
	}
	var days map[string]json.RawMessage
	if json.Unmarshal(top["days"], &days) != nil {
		return fmt.Errorf("days must be an object of day names (all, sunday … saturday) to lists of windows, e.g. %s", windowsExample)
	}
	for _, day := range slices.Sorted(maps.Keys(days)) {
		var ws []map[string]json.RawMessage
		if json.Unmarshal(days[day], &ws) != nil {
			return fmt.Errorf(`days.%s must be a list of windows, e.g. [{"begin": "9:00 AM", "end": "5:00 PM"}]`, day)
		}
		for i, w := range ws {
			for _, k := range slices.Sorted(maps.Keys(w)) {
				if k != "begin" && k != "end" {
					return fmt.Errorf("days.%s[%d]: unknown key %q; a window has begin and end", day, i, k)
				}
			}
		}
	}
	return nil
}

// ParseSubdue parses the time windows of a check's subdue, the Sensu Go shape
//
//	{"days": {"all": [{"begin": "5:00 PM", "end": "8:00 AM"}], "monday": [...], ...}}
//
// in which a scheduler publishes no requests for the check (Windows.Contains). An empty
// or null subdue subdues nothing. Times are "3:04 PM", "3:04PM", "3PM" or "15:04",
// optionally followed by a zone ("5:00 PM UTC", "5:00 PM Europe/Berlin", "17:00 +02:00");
// a window without a zone is in UTC, as in Sensu. A window includes its begin and
// excludes its end; one whose end is not after its begin crosses midnight, so a "friday"
// window from 10:00 PM to 2:00 AM lasts until Saturday 2:00 AM (Sensu reads it as two
// pieces of Friday), and one that begins and ends at the same time lasts a whole day. A
// malformed window is an error, whichever the others are.
func ParseSubdue(raw json.RawMessage) (Windows, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var spec struct {
		Days map[string][]struct {
			Begin string `json:"begin"`
			End   string `json:"end"`
		} `json:"days"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("subdue: %w; use {\"days\": {\"all\": [{\"begin\": \"5:00 PM\", \"end\": \"8:00 AM\"}]}}", err)
	}
	var out []subdueWindow
	// In a fixed order, so that the same subdue always reports the same error.
	for _, name := range slices.Sorted(maps.Keys(spec.Days)) {
		ranges := spec.Days[name]
		day, ok := subdueDays[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("subdue: days: unknown day %q; use all, sunday, monday, tuesday, wednesday, thursday, friday or saturday", name)
		}
		for i, r := range ranges {
			field := fmt.Sprintf("subdue: days.%s[%d]", name, i)
			begin, bloc, err := parseClock(r.Begin)
			if err != nil {
				return nil, fmt.Errorf("%s.begin: %w", field, err)
			}
			end, eloc, err := parseClock(r.End)
			if err != nil {
				return nil, fmt.Errorf("%s.end: %w", field, err)
			}
			loc := bloc
			switch {
			case bloc == nil:
				loc = eloc
			case eloc != nil && eloc.String() != bloc.String():
				return nil, fmt.Errorf("%s: begin is in %s but end is in %s; use one zone", field, bloc, eloc)
			}
			if loc == nil {
				loc = time.UTC
			}
			out = append(out, subdueWindow{day: day, begin: begin, end: end, loc: loc})
		}
	}
	return out, nil
}

// parseClock reads a time of day with an optional zone and returns seconds after
// midnight and the zone, nil when none was given.
func parseClock(s string) (int, *time.Location, error) {
	text := strings.TrimSpace(s)
	var loc *time.Location
	if fields := strings.Fields(text); len(fields) > 1 {
		last := fields[len(fields)-1]
		if u := strings.ToUpper(last); u != "AM" && u != "PM" {
			l, err := parseZone(last)
			if err != nil {
				return 0, nil, fmt.Errorf("%q: %w", s, err)
			}
			loc = l
			text = strings.TrimSpace(strings.TrimSuffix(text, last))
		}
	}
	compact := strings.ToUpper(strings.ReplaceAll(text, " ", ""))
	for _, layout := range []string{"3:04PM", "3PM", "15:04"} {
		if c, err := time.Parse(layout, compact); err == nil {
			return c.Hour()*3600 + c.Minute()*60, loc, nil
		}
	}
	return 0, nil, fmt.Errorf("%q is not a time of day; write it like \"5:00 PM\", \"5:00 PM UTC\" or \"17:00\"", s)
}

// parseZone reads UTC, GMT, Z, an IANA zone name or a numeric offset such as +02:00.
// Abbreviations such as CET or PST are refused: they are ambiguous and carry no DST rules.
func parseZone(z string) (*time.Location, error) {
	switch strings.ToUpper(z) {
	case "UTC", "GMT", "Z":
		return time.UTC, nil
	}
	if z[0] == '+' || z[0] == '-' {
		for _, layout := range []string{"-07:00", "-0700", "-07"} {
			if t, err := time.Parse(layout, z); err == nil {
				_, off := t.Zone()
				return time.FixedZone(z, off), nil
			}
		}
		return nil, fmt.Errorf("%q is not a UTC offset such as +02:00", z)
	}
	if strings.Contains(z, "/") {
		if loc, err := time.LoadLocation(z); err == nil {
			return loc, nil
		}
	}
	return nil, fmt.Errorf("unknown time zone %q; use UTC, an offset such as +02:00, or an IANA name such as Europe/Paris", z)
}

func (w subdueWindow) contains(t time.Time) bool {
	lt := t.In(w.loc)
	tod := lt.Hour()*3600 + lt.Minute()*60 + lt.Second()
	today := int(lt.Weekday())
	onDay := func(d int) bool { return w.day < 0 || w.day == d }
	if w.begin < w.end {
		return onDay(today) && tod >= w.begin && tod < w.end
	}
	yesterday := (today + 6) % 7
	return (onDay(today) && tod >= w.begin) || (onDay(yesterday) && tod < w.end)
}
