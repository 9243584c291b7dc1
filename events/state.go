package events

import "time"

// historyLen is how many results a check's history keeps, as in Sensu.
const historyLen = 21

// UpdateEventState fills in the state of next's check, a new result for an entity and
// check, from prev, the event stored for them before (nil for the first result). It sets
// the check's history (prev's plus this result, the last 21), occurrences,
// occurrences_watermark, total_state_change, state and last_ok the way Sensu Go 6 does,
// and leaves the rest of the result, including is_silenced and silenced, as it came. An
// executed time or event timestamp of zero becomes now. A next without a check (metrics
// only) is left alone; a prev without one counts as no previous event.
//
// State is flapping while the check's status changes often: when total_state_change
// reaches high_flap_threshold, until it falls below low_flap_threshold; a check with
// either threshold at zero never flaps. Otherwise it is passing for status 0 and failing
// for any other. last_ok is the executed time of the latest result with status 0, also
// while flapping (Sensu leaves it behind then).
func UpdateEventState(prev, next *Event, now time.Time) {
	if p, ok := StateOf(prev); ok {
		UpdateState(&p, next, now)
		return
	}
	UpdateState(nil, next, now)
}

// CheckState is what a result's state is computed from: the history, state, last_ok and
// occurrences of the check stored before it.
type CheckState struct {
	History                        []History
	State                          string
	LastOK, Occurrences, Watermark int64
}

// Holds reports whether the history holds a result like c's: executed at the same
// second, with the same status, and no later than the latest result. A result the
// history holds was stored already, if it is one its agent sent before.
func (s *CheckState) Holds(c *Check) bool {
	if c == nil || c.Executed == 0 || len(s.History) == 0 || c.Executed > s.History[len(s.History)-1].Executed {
		return false
	}
	for _, h := range s.History {
		if h.Executed == c.Executed && h.Status == c.Status {
			return true
		}
	}
	return false
}

// StateOf returns the state of ev's check; false when ev or its check is nil.
func StateOf(ev *Event) (CheckState, bool) {
	if ev == nil || ev.Check == nil {
		return CheckState{}, false
	}
	c := ev.Check
	return CheckState{History: c.History, State: c.State, LastOK: c.LastOK,
		Occurrences: c.Occurrences, Watermark: c.OccurrencesWatermark}, true
}

// UpdateState is UpdateEventState from the state of the previous event alone (nil for
// the first result).
func UpdateState(p *CheckState, next *Event, now time.Time) {
	if next == nil || next.Check == nil {
		return
	}
	c := next.Check
	if c.Executed == 0 {
		c.Executed = now.Unix()
	}
	if next.Timestamp == 0 {
		next.Timestamp = now.Unix()
	}
	// Start from the stored result only: what a client sends in these fields is not its
	// to decide.
	var history []History
	wasFlapping := false
	c.LastOK, c.Occurrences, c.OccurrencesWatermark = 0, 0, 0
	if p != nil {
		history = p.History
		wasFlapping = p.State == CheckStateFlapping
		c.LastOK, c.Occurrences, c.OccurrencesWatermark = p.LastOK, p.Occurrences, p.Watermark
	}
	if len(history) > historyLen-1 {
		history = history[len(history)-(historyLen-1):]
	}
	// A fresh slice, so the new event never shares an array with the stored one.
	c.History = append(append(make([]History, 0, len(history)+1), history...), History{Status: c.Status, Executed: c.Executed})

	c.TotalStateChange = totalStateChange(c.History)
	switch {
	case isFlapping(c, wasFlapping):
		c.State = CheckStateFlapping
	case c.Status == 0:
		c.State = CheckStatePassing
	default:
		c.State = CheckStateFailing
	}
	if c.Status == 0 {
		c.LastOK = c.Executed
	}
	updateOccurrences(c)
}

// totalStateChange is the weighted percentage of status changes over a full history, as
// Nagios and Sensu compute it: each of the 20 changes counts from 0.80 (oldest) to 1.18
// (newest). A history shorter than 21 results has no flapping to measure and gives 0.
func totalStateChange(h []History) uint32 {
	if len(h) < historyLen {
		return 0
	}
	changes, weight := 0.0, 0.80
	for i := 1; i < len(h); i++ {
		if h[i].Status != h[i-1].Status {
			changes += weight
		}
		weight += 0.02
	}
	// Sensu's exact arithmetic, float32 and truncation included, so that both report the
	// same number for the same history.
	return uint32(float32(changes) / 20 * 100)
}

func isFlapping(c *Check, wasFlapping bool) bool {
	if c.LowFlapThreshold == 0 || c.HighFlapThreshold == 0 {
		return false
	}
	if wasFlapping {
		return c.TotalStateChange > c.LowFlapThreshold // Sensu: stays flapping only above low
	}
	return c.TotalStateChange >= c.HighFlapThreshold
}

// updateOccurrences counts the results in a row with the current status (1 after a
// change) and the watermark, the highest count since the check last went from OK to
// non-OK, so that a resolution still says how long the incident lasted.
func updateOccurrences(c *Check) {
	n := len(c.History)
	if n > 1 && c.History[n-1].Status == c.History[n-2].Status {
		c.Occurrences++
	} else {
		c.Occurrences = 1
	}
	switch {
	case n > 1 && c.History[n-1].Status != 0 && c.History[n-2].Status == 0:
		c.OccurrencesWatermark = 1
	case c.Occurrences > c.OccurrencesWatermark:
		c.OccurrencesWatermark = c.Occurrences
	}
}
