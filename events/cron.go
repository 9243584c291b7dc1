package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	// Embedded so CRON_TZ zones resolve the same way on hosts without a zoneinfo database.
	_ "time/tzdata"
)

// Schedule is a parsed cron schedule: five fields (minute hour day-of-month month
// day-of-week), a descriptor such as @daily, or "@every <duration>", optionally in a time
// zone. It is a value; the zero Schedule never fires.
type Schedule struct {
	// loc is the CRON_TZ zone; nil means the location of the time given to Next.
	loc *time.Location
	// every is the period of an "@every" schedule; the fields below are unused then.
	every time.Duration

	minute, hour, dom, month, dow uint64 // bit i set: value i matches
	// domStar and dowStar record a field written as * or ?, which turns the day rule
	// from "day of month OR day of week" into AND, as in the cron library Sensu uses.
	domStar, dowStar bool
	// hourStar records an hour field starting with *: such a schedule follows real time
	// across DST changes (it runs in both copies of a repeated hour and skips a missing
	// one), while a schedule at fixed hours runs once on those days (see Next).
	hourStar bool
}

// cronSearchYears bounds how far Next looks ahead; a leap day falls within it.
const cronSearchYears = 9

// dstMargin exceeds any offset change a time zone makes at once.
const dstMargin = 3 * time.Hour

var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

type cronField struct {
	name     string
	min, max int
	names    map[string]int
	// question allows "?" for "any", as the day fields do in the cron library Sensu uses.
	question bool
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31, question: true},
	{name: "month", min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}},
	{name: "day of week", min: 0, max: 6, question: true, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	}},
}

// ParseCron parses a check's cron schedule the way Sensu's scheduler reads it: five
// fields (minute hour day-of-month month day-of-week) with *, lists, ranges, steps
// ("*/15", "5/20" meaning 5-59/20, "1-10/2") and month and weekday names (JAN, MON); or a
// descriptor (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly) or
// "@every <duration>"; optionally preceded by "CRON_TZ=Zone " or "TZ=Zone " with an IANA
// zone name. When both day fields are restricted a day matching either one fires (standard
// cron); when either is * or ?, both must match. Errors start with "cron:" and name the
// field at fault, e.g. `cron: hour field "25": out of range 0-23`.
func ParseCron(expr string) (Schedule, error) {
	var s Schedule
	spec := strings.TrimSpace(expr)
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		_, rest, _ := strings.Cut(spec, "=")
		zone, sched, _ := strings.Cut(rest, " ")
		sched = strings.TrimSpace(sched)
		if sched == "" {
			return Schedule{}, fmt.Errorf("cron: %q has a time zone but no schedule after it", expr)
		}
		loc, err := time.LoadLocation(zone)
		if err != nil || zone == "" {
			return Schedule{}, fmt.Errorf("cron: unknown time zone %q; use an IANA name such as Europe/Paris", zone)
		}
		s.loc, spec = loc, sched
	}
	if spec == "@every" || strings.HasPrefix(spec, "@every ") {
		d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(spec, "@every")))
		if err != nil || d < time.Second {
			return Schedule{}, fmt.Errorf("cron: %q: @every needs a duration of at least 1s, such as 30s or 5m", expr)
		}
		s.every = d
		return s, nil
	}
	if strings.HasPrefix(spec, "@") {
		fields, ok := cronDescriptors[spec]
		if !ok {
			return Schedule{}, fmt.Errorf("cron: %q: unknown descriptor; use @yearly, @monthly, @weekly, @daily, @hourly or @every <duration>", expr)
		}
		spec = fields
	}
	parts := strings.Fields(spec)
	if len(parts) != len(cronFields) {
		return Schedule{}, fmt.Errorf("cron: %q has %d fields; a schedule has 5 (minute hour day-of-month month day-of-week)", expr, len(parts))
	}
	bits := [5]uint64{}
	stars := [5]bool{}
	for i, part := range parts {
		b, star, err := cronFields[i].parse(part)
		if err != nil {
			return Schedule{}, fmt.Errorf("cron: %s field %q: %w", cronFields[i].name, part, err)
		}
		bits[i], stars[i] = b, star
	}
	s.minute, s.hour, s.dom, s.month, s.dow = bits[0], bits[1], bits[2], bits[3], bits[4]
	s.domStar, s.dowStar = stars[2], stars[4]
	s.hourStar = strings.HasPrefix(parts[1], "*")
	if err := s.checkReachable(parts); err != nil {
		return Schedule{}, err
	}
	return s, nil
}

// validateCron checks a cron schedule for CheckConfig.Validate, whose field error already
// names the cron field.
func validateCron(expr string) error {
	if _, err := ParseCron(expr); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "cron: "))
	}
	return nil
}

// parse reads one field: a comma-separated list of *, ?, values, ranges, each with an
// optional step.
func (f cronField) parse(spec string) (bits uint64, star bool, err error) {
	for _, item := range strings.Split(spec, ",") {
		rng, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 {
				return 0, false, fmt.Errorf("step %q must be a positive number", stepText)
			}
			step = n
		}
		var lo, hi int
		switch {
		case rng == "*" || (rng == "?" && f.question):
			lo, hi = f.min, f.max
			// As in Sensu's cron library, "*/2" is a restriction, not a wildcard.
			star = star || step == 1
		case rng == "":
			return 0, false, fmt.Errorf("empty value in %q", spec)
		default:
			first, last, isRange := strings.Cut(rng, "-")
			if lo, err = f.value(first, spec); err != nil {
				return 0, false, err
			}
			switch {
			case isRange:
				if hi, err = f.value(last, spec); err != nil {
					return 0, false, err
				}
				if hi < lo {
					return 0, false, fmt.Errorf("range %q ends before it starts", rng)
				}
			case hasStep:
				hi = f.max // "5/20" means 5-max/20
			default:
				hi = lo
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, star, nil
}

// value reads a number or a name; field is the whole field, for a shorter message when
// the value is all there is.
func (f cronField) value(s, field string) (int, error) {
	if n, ok := f.names[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%q is neither a number nor a %s name", s, f.name)
		}
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < f.min || n > f.max {
		if s == field {
			return 0, fmt.Errorf("out of range %d-%d", f.min, f.max)
		}
		return 0, fmt.Errorf("%d is out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}

// checkReachable rejects day-of-month and month combinations that never occur, such as
// "0 0 30 2 *", which would otherwise be accepted and never run.
func (s Schedule) checkReachable(parts []string) error {
	if s.domStar || !s.dowStar {
		return nil // every day, or weekdays OR days of month: some day always matches
	}
	longest := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if s.month&(1<<uint(m)) != 0 && s.dom&(1<<uint(longest[m]+1)-1) != 0 {
			return nil
		}
	}
	return fmt.Errorf("cron: day of month field %q: never occurs in month field %q, so the schedule never runs", parts[2], parts[3])
}

// Next returns the first time after t that the schedule fires, in t's location, or the
// zero time if it does not fire within nine years. Without CRON_TZ the fields are read in
// t's location.
//
// Across daylight-saving changes a schedule with fixed hours (such as "30 2 * * *") runs
// once on every day: at the first of two repeated 2:30s, and at the moment of the jump
// when 2:30 does not exist that day. A schedule whose hour field starts with * follows real
// time instead: it runs in both copies of a repeated hour and skips minutes that do not
// exist. This is the rule of Vixie cron.
//
// "@every d" fires at the multiples of d since the Unix epoch, so that late wake-ups do
// not drift and every server agrees; Sensu's library adds d to the time given instead.
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		n, d := t.UnixNano(), int64(s.every)
		r := n % d
		if r < 0 {
			r += d
		}
		return time.Unix(0, n-r+d).In(t.Location())
	}
	if s.minute == 0 {
		return time.Time{}
	}
	loc := s.loc
	if loc == nil {
		loc = t.Location()
	}
	lt := t.In(loc)
	if next, ok := s.nextSimple(t, lt); ok {
		return next.In(t.Location())
	}
	// Near an offset change, wall-clock order and real-time order differ: look at wall
	// times from a little before t and keep the earliest instant after t.
	var best time.Time
	c := civil(lt).Add(-dstMargin)
	for {
		c = s.nextCivil(c)
		if c.IsZero() || (!best.IsZero() && c.Sub(civil(best.In(loc))) > dstMargin) {
			break
		}
		for _, at := range s.instants(c, loc) {
			if at.After(t) && (best.IsZero() || at.Before(best)) {
				best = at
			}
		}
	}
	if best.IsZero() {
		return time.Time{}
	}
	return best.In(t.Location())
}

// nextSimple is Next when no offset change is near t or the next wall time: the common
// case, where wall time maps to real time one to one.
func (s Schedule) nextSimple(t, lt time.Time) (time.Time, bool) {
	start, end := lt.ZoneBounds()
	if !start.IsZero() && start.After(t.Add(-dstMargin)) {
		return time.Time{}, false
	}
	c := s.nextCivil(civil(lt))
	if c.IsZero() {
		return time.Time{}, true
	}
	_, off := lt.Zone()
	at := c.Add(-time.Duration(off) * time.Second)
	if !end.IsZero() && !at.Before(end.Add(-dstMargin)) {
		return time.Time{}, false
	}
	return at, true
}

// civil is the wall-clock minute of t, as a UTC time so that arithmetic on it ignores
// offset changes.
func civil(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
}

// nextCivil returns the first wall-clock minute after c that matches the fields, or the
// zero time if none comes within cronSearchYears.
func (s Schedule) nextCivil(c time.Time) time.Time {
	t := c.Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(cronSearchYears, 0, 0)
	for t.Before(limit) {
		switch {
		case s.month&(1<<uint(t.Month())) == 0:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case s.hour&(1<<uint(t.Hour())) == 0:
			t = t.Truncate(time.Hour).Add(time.Hour)
		case s.minute&(1<<uint(t.Minute())) == 0:
			t = t.Add(time.Minute)
		default:
			return t
		}
	}
	return time.Time{}
}

func (s Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// instants returns the real times at which the wall-clock minute c happens in loc and the
// schedule runs: one normally, the first or both of a repeated minute, and the moment of
// the jump (or none) for a minute skipped by the clock.
func (s Schedule) instants(c time.Time, loc *time.Location) []time.Time {
	// The offsets in force a day either side; real zones change at most once in between.
	_, before := c.Add(-24 * time.Hour).In(loc).Zone()
	_, after := c.Add(24 * time.Hour).In(loc).Zone()
	var out []time.Time
	for i, off := range []int{before, after} {
		if i == 1 && off == before {
			break
		}
		at := c.Add(-time.Duration(off) * time.Second)
		if _, got := at.In(loc).Zone(); got == off {
			out = append(out, at)
		}
	}
	switch {
	case len(out) == 2:
		if out[1].Before(out[0]) {
			out[0], out[1] = out[1], out[0]
		}
		if !s.hourStar {
			out = out[:1]
		}
	case len(out) == 0 && !s.hourStar:
		// c falls in the gap of a forward jump: run when the clock jumps.
		_, jump := c.Add(-time.Duration(after) * time.Second).In(loc).ZoneBounds()
		out = append(out, jump)
	}
	return out
}
