package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	// Embedded so CRON_TZ zones validate the same way on hosts without a zoneinfo database.
	_ "time/tzdata"
)

var cronDescriptors = map[string]bool{
	"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
	"@daily": true, "@midnight": true, "@hourly": true,
}

type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}},
	{name: "day of week", min: 0, max: 6, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	}},
}

// validateCron checks a cron schedule the way Sensu's scheduler reads it: five fields
// (minute hour day-of-month month day-of-week), or a descriptor such as @hourly or
// "@every 30s", optionally preceded by "CRON_TZ=Zone " (or "TZ=Zone ").
func validateCron(expr string) error {
	s := strings.TrimSpace(expr)
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		_, rest, _ := strings.Cut(s, "=")
		zone, sched, ok := strings.Cut(rest, " ")
		if !ok || strings.TrimSpace(sched) == "" {
			return fmt.Errorf("%q has a time zone but no schedule after it", expr)
		}
		if _, err := time.LoadLocation(zone); err != nil || zone == "" {
			return fmt.Errorf("unknown time zone %q; use an IANA name such as Europe/Paris", zone)
		}
		s = strings.TrimSpace(sched)
	}
	if strings.HasPrefix(s, "@") {
		if strings.HasPrefix(s, "@every ") {
			d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(s, "@every ")))
			if err != nil || d <= 0 {
				return fmt.Errorf("%q: @every needs a positive duration such as 30s or 5m", expr)
			}
			return nil
		}
		if !cronDescriptors[s] {
			return fmt.Errorf("%q: unknown descriptor; use @yearly, @monthly, @weekly, @daily, @hourly or @every <duration>", expr)
		}
		return nil
	}
	parts := strings.Fields(s)
	if len(parts) != len(cronFields) {
		return fmt.Errorf("%q has %d fields; a schedule has 5 (minute hour day-of-month month day-of-week)", expr, len(parts))
	}
	for i, part := range parts {
		if err := cronFields[i].check(part); err != nil {
			return fmt.Errorf("%q: %s field: %v", expr, cronFields[i].name, err)
		}
	}
	return nil
}

func (f cronField) check(spec string) error {
	for _, item := range strings.Split(spec, ",") {
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n <= 0 {
				return fmt.Errorf("step %q must be a positive number", step)
			}
		}
		// "?" means "any" in the day fields only, as in the cron library Sensu uses.
		if rng == "*" || (rng == "?" && strings.HasPrefix(f.name, "day")) {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := f.value(lo)
		if err != nil {
			return err
		}
		b := a
		if isRange {
			if b, err = f.value(hi); err != nil {
				return err
			}
			if b < a {
				return fmt.Errorf("range %q ends before it starts", rng)
			}
		}
	}
	return nil
}

func (f cronField) value(s string) (int, error) {
	if n, ok := f.names[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}
