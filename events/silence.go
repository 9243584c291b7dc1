package events

import (
	"slices"
	"sort"
	"time"
)

// Begun reports whether the silence is in effect by its begin time at now.
func (s *Silenced) Begun(now time.Time) bool { return s.Begin <= now.Unix() }

// Expired reports whether the silence has passed its expire_at at now. A silence without
// expire_at (expire 0 or -1) never expires by time; expire_on_resolve may still end it.
func (s *Silenced) Expired(now time.Time) bool {
	return s.ExpireAt > 0 && now.Unix() >= s.ExpireAt
}

// setExpireAt computes expire_at from expire when it is not set: expire seconds after
// begin, or after now when begin is unset, as Sensu's store does (a begin in the past
// counts from then).
func (s *Silenced) setExpireAt(now time.Time) {
	if s.Expire <= 0 || s.ExpireAt != 0 {
		return
	}
	base := now.Unix()
	if s.Begin > 0 {
		base = s.Begin
	}
	s.ExpireAt = base + s.Expire
}

// SilenceSubscriptions lists the subscriptions by which a silence can match ev, as Sensu
// does: the check's subscriptions kept only when the entity has them (every one of the
// entity's for a proxy entity's result, check.proxy_entity_name set), and
// "entity:<name>".
func SilenceSubscriptions(ev *Event) []string {
	if ev.Entity == nil {
		return nil
	}
	own := "entity:" + ev.Entity.Metadata.Name
	var out []string
	add := func(s string) {
		if slices.Contains(ev.Entity.Subscriptions, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	switch {
	case ev.Check != nil && ev.Check.ProxyEntityName != "":
		// A proxy entity's result is run by agents of other subscriptions than the
		// entity's: every subscription of the entity counts.
		for _, s := range ev.Entity.Subscriptions {
			add(s)
		}
	case ev.Check != nil:
		for _, s := range ev.Check.Subscriptions {
			add(s)
		}
	}
	add(own)
	if !slices.Contains(out, own) {
		// An entity always has its own subscription, even one stored without it.
		out = append(out, own)
	}
	return out
}

// Matches reports whether the silence covers ev, whose silence subscriptions are subs
// (SilenceSubscriptions), ignoring begin and expiry: its check is "*"/empty or ev's check,
// and its subscription is "*"/empty or one of subs.
func (s *Silenced) Matches(ev *Event, subs []string) bool {
	if ev.Check == nil {
		return false
	}
	if s.Metadata.Namespace != "" && ev.Entity != nil && s.Metadata.Namespace != ev.Entity.Metadata.Namespace {
		return false
	}
	if s.Check != "" && s.Check != "*" && s.Check != ev.Check.Metadata.Name {
		return false
	}
	if s.Subscription == "" || s.Subscription == "*" {
		return true
	}
	return slices.Contains(subs, s.Subscription)
}

// SilencedBy returns the names of the silences among entries that silence ev at now
// (begun, not expired, matching), sorted.
func SilencedBy(ev *Event, entries []*Silenced, now time.Time) []string {
	if ev.Check == nil || len(entries) == 0 {
		return nil
	}
	subs := SilenceSubscriptions(ev)
	var out []string
	for _, s := range entries {
		if s.Begun(now) && !s.Expired(now) && s.Matches(ev, subs) {
			out = append(out, s.Metadata.Name)
		}
	}
	sort.Strings(out)
	return out
}

// IsIncident reports whether the event's check is not OK.
func (e *Event) IsIncident() bool { return e.Check != nil && e.Check.Status != 0 }

// IsResolution reports whether the event's check just became OK after a non-OK result.
func (e *Event) IsResolution() bool {
	if e.Check == nil || e.Check.Status != 0 {
		return false
	}
	h := e.Check.History
	return len(h) > 1 && h[len(h)-2].Status != 0
}

// IsSilenced reports whether a silence covered the event when it was stored.
func (e *Event) IsSilenced() bool { return e.Check != nil && e.Check.IsSilenced }
