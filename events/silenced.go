package events

import (
	"encoding/json"
	"time"
)

// Silenced suppresses handling of events for a subscription, a check, or both. Its name is
// always "<subscription>:<check>", with "*" for the part not given.
type Silenced struct {
	Metadata        ObjectMeta `json:"metadata"`
	Expire          int64      `json:"expire"`
	ExpireOnResolve bool       `json:"expire_on_resolve"`
	Creator         string     `json:"creator"`
	Check           string     `json:"check"`
	Reason          string     `json:"reason"`
	Subscription    string     `json:"subscription"`
	Begin           int64      `json:"begin"`
	ExpireAt        int64      `json:"expire_at"`

	extra map[string]json.RawMessage
}

// SilencedName derives a silence's name from its subscription and check.
func SilencedName(subscription, check string) string {
	if subscription == "" {
		subscription = "*"
	}
	if check == "" {
		check = "*"
	}
	return subscription + ":" + check
}

// Meta returns the silence's metadata.
func (s *Silenced) Meta() *ObjectMeta { return &s.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (s Silenced) MarshalJSON() ([]byte, error) { return marshalKeeping(&s, s.extra) }

// UnmarshalJSON reads a silence and keeps keys it does not know.
func (s *Silenced) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, s)
	s.extra = extra
	return err
}

// Validate reports every problem with the silence.
func (s *Silenced) Validate() error {
	var p problems
	if s.Subscription == "" && s.Check == "" {
		p.add("subscription", "set subscription, check, or both to say what to silence")
	} else {
		p.name("metadata.name", s.Metadata.Name, silencedNameRE)
	}
	p.namespace("", s.Metadata)
	if s.Expire < -1 {
		p.add("expire", "must be -1 (never expires) or a number of seconds (got %d)", s.Expire)
	}
	if s.Begin < 0 {
		p.add("begin", "must be a unix time in seconds (got %d)", s.Begin)
	}
	if s.ExpireAt < 0 {
		p.add("expire_at", "must be a unix time in seconds or 0 (got %d)", s.ExpireAt)
	} else if s.ExpireAt > 0 && s.Begin > 0 && s.ExpireAt <= s.Begin {
		p.add("expire_at", "%s is not after begin %s: the silence would never be in effect; move begin earlier or expire_at later",
			time.Unix(s.ExpireAt, 0).UTC().Format(time.RFC3339), time.Unix(s.Begin, 0).UTC().Format(time.RFC3339))
	}
	return p.err()
}
