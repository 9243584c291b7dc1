package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSubdued(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	// 2026-06-01 is a Monday.
	mon := func(h, m int) time.Time { return utc(2026, 6, 1, h, m, 0) }
	tue := func(h, m int) time.Time { return utc(2026, 6, 2, h, m, 0) }
	fri := func(h, m int) time.Time { return utc(2026, 6, 5, h, m, 0) }
	sat := func(h, m int) time.Time { return utc(2026, 6, 6, h, m, 0) }
	const overnight = `{"days":{"all":[{"begin":"5:00 PM","end":"8:00 AM"}]}}`
	const office = `{"days":{"monday":[{"begin":"9:00 AM","end":"5:00 PM"}]}}`
	const friNight = `{"days":{"friday":[{"begin":"10:00 PM","end":"2:00 AM"}]}}`
	tests := []struct {
		name string
		raw  string
		at   time.Time
		want bool
	}{
		{"no subdue", ``, mon(12, 0), false},
		{"null subdue", `null`, mon(12, 0), false},
		{"no days", `{"days":{}}`, mon(12, 0), false},
		{"overnight evening", overnight, mon(18, 0), true},
		{"overnight at begin", overnight, mon(17, 0), true},
		{"overnight just before begin", overnight, mon(16, 59), false},
		{"overnight early morning", overnight, mon(7, 59), true},
		{"overnight at end", overnight, mon(8, 0), false},
		{"overnight midday", overnight, mon(12, 0), false},
		{"weekday window on its day", office, mon(10, 0), true},
		{"weekday window on another day", office, tue(10, 0), false},
		{"weekday window before it", office, mon(8, 59), false},
		{"crossing midnight, evening", friNight, fri(23, 0), true},
		{"crossing midnight, next morning", friNight, sat(1, 59), true},
		{"crossing midnight, its own morning", friNight, fri(1, 0), false},
		{"crossing midnight, next evening", friNight, sat(23, 0), false},
		{"crossing midnight, after it", friNight, sat(2, 0), false},
		{"several windows", `{"days":{"monday":[{"begin":"1:00 AM","end":"2:00 AM"},{"begin":"3:00 PM","end":"4:00 PM"}]}}`, mon(15, 30), true},
		{"all and a day", `{"days":{"all":[{"begin":"1:00 AM","end":"2:00 AM"}],"tuesday":[{"begin":"3:00 PM","end":"4:00 PM"}]}}`, tue(15, 30), true},
		{"same begin and end is a whole day", `{"days":{"monday":[{"begin":"12:00 AM","end":"12:00 AM"}]}}`, mon(23, 59), true},
		{"same begin and end ends after a day", `{"days":{"monday":[{"begin":"12:00 AM","end":"12:00 AM"}]}}`, tue(0, 0), false},
		{"capitalised day and compact times", `{"days":{"Monday":[{"begin":"9:00AM","end":"5PM"}]}}`, mon(16, 0), true},
		{"24-hour times", `{"days":{"all":[{"begin":"09:00","end":"17:30"}]}}`, mon(17, 29), true},
		{"noon and midnight", `{"days":{"all":[{"begin":"12:00 PM","end":"12:30 PM"}]}}`, mon(12, 15), true},
		{"UTC suffix", `{"days":{"all":[{"begin":"5:00 PM UTC","end":"6:00 PM UTC"}]}}`, mon(17, 30), true},
		{"zone suffix", `{"days":{"all":[{"begin":"9:00 AM Europe/Berlin","end":"5:00 PM Europe/Berlin"}]}}`, mon(7, 30), true},
		{"zone suffix, outside", `{"days":{"all":[{"begin":"9:00 AM Europe/Berlin","end":"5:00 PM Europe/Berlin"}]}}`, mon(6, 30), false},
		{"zone on one end only", `{"days":{"all":[{"begin":"9:00 AM","end":"5:00 PM Europe/Berlin"}]}}`, mon(15, 30), false},
		{"offset suffix", `{"days":{"all":[{"begin":"9:00 AM +02:00","end":"10:00 AM +02:00"}]}}`, mon(7, 30), true},
		{"zone decides the day", `{"days":{"tuesday":[{"begin":"12:00 AM Europe/Berlin","end":"1:00 AM Europe/Berlin"}]}}`, mon(22, 30), true},
		{"caller's location does not matter", overnight, time.Date(2026, 6, 1, 18, 30, 0, 0, berlin), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := subdued(json.RawMessage(tt.raw), tt.at)
			if err != nil {
				t.Fatalf("Subdued: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Subdued(%s, %v) = %v, want %v", tt.raw, tt.at, got, tt.want)
			}
		})
	}
}

func TestSubduedErrors(t *testing.T) {
	tests := []struct {
		raw  string
		want string
	}{
		{`[1,2]`, "subdue: json: cannot unmarshal"},
		{`{"days":{"mon":[{"begin":"5:00 PM","end":"6:00 PM"}]}}`, `unknown day "mon"`},
		{`{"days":{"all":[{"begin":"25:00","end":"6:00 PM"}]}}`, `days.all[0].begin: "25:00" is not a time of day`},
		{`{"days":{"all":[{"begin":"5:00 PM","end":""}]}}`, `days.all[0].end: "" is not a time of day`},
		{`{"days":{"all":[{"begin":"5:00 PM CET","end":"6:00 PM CET"}]}}`, `unknown time zone "CET"`},
		{`{"days":{"all":[{"begin":"5:00 PM +25:00","end":"6:00 PM"}]}}`, `not a UTC offset`},
		{`{"days":{"all":[{"begin":"5:00 PM UTC","end":"6:00 PM Europe/Berlin"}]}}`, `begin is in UTC but end is in Europe/Berlin`},
		// The window that errs is reported even when an earlier one already matches.
		{`{"days":{"all":[{"begin":"12:00 AM","end":"12:00 AM"}],"sunday":[{"begin":"x","end":"y"}]}}`, `days.sunday[0].begin`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := subdued(json.RawMessage(tt.raw), utc(2026, 6, 1, 12, 0, 0))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Subdued(%s) error = %v, want it to contain %q", tt.raw, err, tt.want)
			}
		})
	}
}

// subdued is whether t falls in raw's windows, as the scheduler asks on every tick.
func subdued(raw json.RawMessage, t time.Time) (bool, error) {
	ws, err := ParseSubdue(raw)
	return ws.Contains(t), err
}
