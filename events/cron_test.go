package events

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestCronNext(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	tests := []struct {
		name string
		expr string
		from time.Time
		want []time.Time // successive runs
	}{
		{"every minute", "* * * * *", utc(2026, 5, 17, 10, 11, 12),
			[]time.Time{utc(2026, 5, 17, 10, 12, 0), utc(2026, 5, 17, 10, 13, 0)}},
		{"step", "*/15 * * * *", utc(2026, 5, 17, 10, 11, 12),
			[]time.Time{utc(2026, 5, 17, 10, 15, 0), utc(2026, 5, 17, 10, 30, 0), utc(2026, 5, 17, 10, 45, 0), utc(2026, 5, 17, 11, 0, 0)}},
		{"start and step", "5/20 * * * *", utc(2026, 5, 17, 10, 11, 0),
			[]time.Time{utc(2026, 5, 17, 10, 25, 0), utc(2026, 5, 17, 10, 45, 0), utc(2026, 5, 17, 11, 5, 0)}},
		{"range and step", "10-30/10 9 * * *", utc(2026, 5, 17, 9, 15, 0),
			[]time.Time{utc(2026, 5, 17, 9, 20, 0), utc(2026, 5, 17, 9, 30, 0), utc(2026, 5, 18, 9, 10, 0)}},
		{"list", "0 8,12,18 * * *", utc(2026, 5, 17, 12, 0, 0),
			[]time.Time{utc(2026, 5, 17, 18, 0, 0), utc(2026, 5, 18, 8, 0, 0)}},
		{"names", "0 9 * JAN-MAR mon-FRI", utc(2026, 3, 31, 10, 0, 0),
			[]time.Time{utc(2027, 1, 1, 9, 0, 0), utc(2027, 1, 4, 9, 0, 0)}},
		{"day of month or day of week", "0 0 13 * MON", utc(2026, 2, 1, 0, 0, 0),
			[]time.Time{utc(2026, 2, 2, 0, 0, 0), utc(2026, 2, 9, 0, 0, 0), utc(2026, 2, 13, 0, 0, 0), utc(2026, 2, 16, 0, 0, 0)}},
		{"day of month only", "0 0 13 * *", utc(2026, 2, 1, 0, 0, 0),
			[]time.Time{utc(2026, 2, 13, 0, 0, 0), utc(2026, 3, 13, 0, 0, 0)}},
		{"question mark means any day", "0 0 ? * FRI", utc(2026, 2, 1, 0, 0, 0),
			[]time.Time{utc(2026, 2, 6, 0, 0, 0), utc(2026, 2, 13, 0, 0, 0)}},
		{"star day of month ands", "0 0 * * 5", utc(2026, 2, 1, 0, 0, 0),
			[]time.Time{utc(2026, 2, 6, 0, 0, 0)}},
		{"leap day", "0 12 29 2 *", utc(2026, 3, 1, 0, 0, 0),
			[]time.Time{utc(2028, 2, 29, 12, 0, 0), utc(2032, 2, 29, 12, 0, 0)}},
		{"last day of short month skipped", "0 0 31 * *", utc(2026, 4, 1, 0, 0, 0),
			[]time.Time{utc(2026, 5, 31, 0, 0, 0), utc(2026, 7, 31, 0, 0, 0)}},
		{"hourly", "@hourly", utc(2026, 5, 17, 10, 11, 0), []time.Time{utc(2026, 5, 17, 11, 0, 0)}},
		{"daily", "@daily", utc(2026, 5, 17, 10, 11, 0), []time.Time{utc(2026, 5, 18, 0, 0, 0)}},
		{"midnight", "@midnight", utc(2026, 5, 17, 0, 0, 0), []time.Time{utc(2026, 5, 18, 0, 0, 0)}},
		{"weekly", "@weekly", utc(2026, 5, 17, 10, 11, 0), []time.Time{utc(2026, 5, 24, 0, 0, 0)}},
		{"monthly", "@monthly", utc(2026, 5, 17, 10, 11, 0), []time.Time{utc(2026, 6, 1, 0, 0, 0)}},
		{"yearly", "@yearly", utc(2026, 5, 17, 10, 11, 0), []time.Time{utc(2027, 1, 1, 0, 0, 0)}},
		{"annually", "@annually", utc(2026, 5, 17, 10, 11, 0), []time.Time{utc(2027, 1, 1, 0, 0, 0)}},
		{"every", "@every 30s", time.Date(2026, 5, 17, 10, 11, 12, 500, time.UTC),
			[]time.Time{utc(2026, 5, 17, 10, 11, 30), utc(2026, 5, 17, 10, 12, 0)}},
		{"no zone reads the fields in the time's location", "0 9 * * *", time.Date(2026, 5, 17, 10, 0, 0, 0, ny),
			[]time.Time{time.Date(2026, 5, 18, 9, 0, 0, 0, ny)}},
		{"CRON_TZ", "CRON_TZ=Asia/Tokyo 0 9 * * *", utc(2026, 5, 17, 0, 30, 0),
			[]time.Time{utc(2026, 5, 18, 0, 0, 0)}},
		{"TZ", "TZ=Asia/Tokyo 0 9 * * *", utc(2026, 5, 16, 23, 59, 0),
			[]time.Time{utc(2026, 5, 17, 0, 0, 0)}},
		{"zone and descriptor", "CRON_TZ=America/New_York @daily", utc(2026, 5, 17, 0, 0, 0),
			[]time.Time{utc(2026, 5, 17, 4, 0, 0), utc(2026, 5, 18, 4, 0, 0)}},

		// Europe/Berlin jumps from 02:00 CET to 03:00 CEST on 2026-03-29 (01:00 UTC) and
		// back from 03:00 CEST to 02:00 CET on 2026-10-25 (01:00 UTC).
		{"fixed time in the spring gap runs at the jump", "CRON_TZ=Europe/Berlin 30 2 * * *", utc(2026, 3, 28, 12, 0, 0),
			[]time.Time{utc(2026, 3, 29, 1, 0, 0), utc(2026, 3, 30, 0, 30, 0)}},
		{"fixed time in the repeated hour runs once", "CRON_TZ=Europe/Berlin 30 2 * * *", utc(2026, 10, 24, 12, 0, 0),
			[]time.Time{utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 26, 1, 30, 0)}},
		{"start of the repeated hour runs once", "CRON_TZ=Europe/Berlin 0 2 * * *", utc(2026, 10, 24, 12, 0, 0),
			[]time.Time{utc(2026, 10, 25, 0, 0, 0), utc(2026, 10, 26, 1, 0, 0)}},
		{"time right after the jump", "CRON_TZ=Europe/Berlin 0 3 * * *", utc(2026, 3, 28, 12, 0, 0),
			[]time.Time{utc(2026, 3, 29, 1, 0, 0), utc(2026, 3, 30, 1, 0, 0)}},
		{"daily keeps wall time across spring", "CRON_TZ=Europe/Berlin 0 9 * * *", utc(2026, 3, 28, 8, 0, 0),
			[]time.Time{utc(2026, 3, 29, 7, 0, 0)}},
		{"hourly runs in both copies of the repeated hour", "CRON_TZ=Europe/Berlin 30 * * * *", utc(2026, 10, 24, 23, 0, 0),
			[]time.Time{utc(2026, 10, 24, 23, 30, 0), utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 25, 1, 30, 0), utc(2026, 10, 25, 2, 30, 0)}},
		{"hourly skips the missing hour", "CRON_TZ=Europe/Berlin 30 * * * *", utc(2026, 3, 29, 0, 0, 0),
			[]time.Time{utc(2026, 3, 29, 0, 30, 0), utc(2026, 3, 29, 1, 30, 0)}},
		{"every 20 minutes keeps real spacing in the fall", "CRON_TZ=Europe/Berlin */20 * * * *", utc(2026, 10, 25, 0, 30, 0),
			[]time.Time{utc(2026, 10, 25, 0, 40, 0), utc(2026, 10, 25, 1, 0, 0), utc(2026, 10, 25, 1, 20, 0)}},
		{"every 20 minutes keeps real spacing in the spring", "CRON_TZ=Europe/Berlin */20 * * * *", utc(2026, 3, 29, 0, 30, 0),
			[]time.Time{utc(2026, 3, 29, 0, 40, 0), utc(2026, 3, 29, 1, 0, 0), utc(2026, 3, 29, 1, 20, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseCron(tt.expr)
			if err != nil {
				t.Fatalf("ParseCron(%q): %v", tt.expr, err)
			}
			at := tt.from
			for i, want := range tt.want {
				got := s.Next(at)
				if !got.Equal(want) {
					t.Fatalf("run %d after %v = %v, want %v", i, at, got.UTC(), want.UTC())
				}
				if got.Location() != tt.from.Location() {
					t.Fatalf("Next returned a time in %v, want the caller's %v", got.Location(), tt.from.Location())
				}
				at = got
			}
		})
	}
}

func TestCronEveryIsAligned(t *testing.T) {
	s, err := ParseCron("@every 7m")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 1000 {
		from := utc(2026, 1, 1, 0, 0, 0).Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
		got := s.Next(from)
		if d := got.Sub(from); d <= 0 || d > 7*time.Minute {
			t.Fatalf("Next(%v) = %v, not within (0, 7m]", from, got)
		}
		if got.UnixNano()%int64(7*time.Minute) != 0 {
			t.Fatalf("Next(%v) = %v, not a multiple of 7m since the epoch", from, got)
		}
	}
}

// TestCronNextBruteForce compares Next with a minute-by-minute scan, in a zone without
// offset changes and in Berlin away from them.
func TestCronNextBruteForce(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	exprs := []string{
		"* * * * *", "*/7 * * * *", "0 */5 * * *", "15,45 9-17 * * MON-FRI", "0 0 1,15 * *",
		"30 6 * * 0", "0 0 13 * 5", "0 12 */3 * *", "59 23 30 6,7 *", "0 0 ? JAN,JUL *", "5-10/2 3 * * 1-5",
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, loc := range []*time.Location{time.UTC, berlin} {
		for _, expr := range exprs {
			s, err := ParseCron(expr)
			if err != nil {
				t.Fatalf("ParseCron(%q): %v", expr, err)
			}
			fields := strings.Fields(expr)
			for range 20 {
				// June and July: no offset change within reach in Berlin.
				from := time.Date(2026, 6, 1, 0, 0, 0, 0, loc).Add(time.Duration(rng.Int64N(int64(20 * 24 * time.Hour))))
				got := s.Next(from)
				want := bruteNext(t, fields, from)
				if !got.Equal(want) {
					t.Fatalf("%s in %v: Next(%v) = %v, want %v", expr, loc, from, got, want)
				}
			}
		}
	}
}

func bruteNext(t *testing.T, fields []string, from time.Time) time.Time {
	t.Helper()
	var sets [5]uint64
	var stars [5]bool
	for i, f := range fields {
		b, star, err := cronFields[i].parse(f)
		if err != nil {
			t.Fatal(err)
		}
		sets[i], stars[i] = b, star
	}
	has := func(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }
	m := from.Truncate(time.Minute).Add(time.Minute)
	for range 60 * 24 * 400 {
		dom, dow := has(sets[2], m.Day()), has(sets[4], int(m.Weekday()))
		day := dom || dow
		if stars[2] || stars[4] {
			day = dom && dow
		}
		if has(sets[0], m.Minute()) && has(sets[1], m.Hour()) && has(sets[3], int(m.Month())) && day {
			return m
		}
		m = m.Add(time.Minute)
	}
	return time.Time{}
}

func TestCronNeverFires(t *testing.T) {
	// Next returns the zero time when nothing matches within its horizon; ParseCron
	// rejects the impossible dates it can see, so build one that it lets through.
	s, err := ParseCron("0 0 29 2 *")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Next(utc(2097, 3, 1, 0, 0, 0)); !got.Equal(utc(2104, 2, 29, 0, 0, 0)) {
		t.Fatalf("Next leap day after 2097 = %v, want 2104-02-29 (2100 is not a leap year)", got)
	}
	var zero Schedule
	if got := zero.Next(utc(2026, 1, 1, 0, 0, 0)); !got.IsZero() {
		t.Fatalf("the zero Schedule fired at %v", got)
	}
}

func TestParseCronErrors(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{"0 25 * * *", `cron: hour field "25": out of range 0-23`},
		{"0 1,25 * * *", `cron: hour field "1,25": 25 is out of range 0-23`},
		{"61 * * * *", `cron: minute field "61": out of range 0-59`},
		{"0 0 0 * *", `cron: day of month field "0": out of range 1-31`},
		{"0 0 * 13 *", `cron: month field "13": out of range 1-12`},
		{"0 0 * * 7", `cron: day of week field "7": out of range 0-6`},
		{"0 0 * * MON-XYZ", `cron: day of week field "MON-XYZ": "XYZ" is neither a number nor a day of week name`},
		{"0 0 * FOO *", `cron: month field "FOO": "FOO" is neither a number nor a month name`},
		{"x * * * *", `cron: minute field "x": "x" is not a number`},
		{"? * * * *", `cron: minute field "?": "?" is not a number`},
		{"*/0 * * * *", `cron: minute field "*/0": step "0" must be a positive number`},
		{"*/x * * * *", `cron: minute field "*/x": step "x" must be a positive number`},
		{"1,,2 * * * *", `cron: minute field "1,,2": empty value in "1,,2"`},
		{"0 0 5-1 * *", `cron: day of month field "5-1": range "5-1" ends before it starts`},
		{"0 0 30 2 *", `cron: day of month field "30": never occurs in month field "2"`},
		{"0 0 31 4,6 *", `cron: day of month field "31": never occurs in month field "4,6"`},
		{"* * * *", `cron: "* * * *" has 4 fields`},
		{"* * * * * *", `cron: "* * * * * *" has 6 fields`},
		{"", `cron: "" has 0 fields`},
		{"CRON_TZ=Mars/Olympus * * * * *", `cron: unknown time zone "Mars/Olympus"`},
		{"CRON_TZ= * * * * *", `cron: unknown time zone ""`},
		{"CRON_TZ=UTC", `cron: "CRON_TZ=UTC" has a time zone but no schedule after it`},
		{"@every 0s", `@every needs a duration of at least 1s`},
		{"@every 500ms", `@every needs a duration of at least 1s`},
		{"@every", `@every needs a duration`},
		{"@every tuesday", `@every needs a duration`},
		{"@fortnightly", `unknown descriptor`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := ParseCron(tt.expr)
			if err == nil {
				t.Fatalf("ParseCron(%q) succeeded, want %q", tt.expr, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "cron: ") {
				t.Fatalf("ParseCron(%q) = %q, want it to contain %q", tt.expr, err, tt.want)
			}
		})
	}
}

func TestParseCronAccepts(t *testing.T) {
	for _, expr := range []string{
		"0 0 31 4 MON", // day 31 never comes in April, but Mondays do
		"0 0 29 2 *",
		"0 0 1-31 * *",
		"  0   0 * * *  ",
		"*,5 * * * *",
		"CRON_TZ=Local 0 0 * * *",
	} {
		if _, err := ParseCron(expr); err != nil {
			t.Errorf("ParseCron(%q): %v", expr, err)
		}
	}
}
