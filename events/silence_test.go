package events

import (
	"testing"
	"time"
)

func silence(sub, check string, mod func(s *Silenced)) *Silenced {
	s := &Silenced{Subscription: sub, Check: check}
	SetDefaults(s, "default")
	if mod != nil {
		mod(s)
	}
	return s
}

func TestSilencedBy(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ev := testEvent(2) // entity web1 subscribed to linux, check disk published to linux
	cases := []struct {
		name string
		s    *Silenced
		want bool
	}{
		{"subscription", silence("linux", "", nil), true},
		{"check", silence("", "disk", nil), true},
		{"both", silence("linux", "disk", nil), true},
		{"entity subscription", silence("entity:web1", "", nil), true},
		{"other check", silence("linux", "cpu", nil), false},
		{"other subscription", silence("windows", "", nil), false},
		{"entity not subscribed", silence("db", "disk", nil), false},
		{"other namespace", silence("linux", "", func(s *Silenced) { s.Metadata.Namespace = "prod" }), false},
		{"not begun", silence("linux", "", func(s *Silenced) { s.Begin = now.Unix() + 60 }), false},
		{"begun", silence("linux", "", func(s *Silenced) { s.Begin = now.Unix() - 60 }), true},
		{"expired", silence("linux", "", func(s *Silenced) { s.ExpireAt = now.Unix() - 1 }), false},
		{"not expired", silence("linux", "", func(s *Silenced) { s.ExpireAt = now.Unix() + 1 }), true},
	}
	for _, c := range cases {
		got := SilencedBy(ev, []*Silenced{c.s}, now)
		if (len(got) == 1) != c.want {
			t.Errorf("%s (%s): silenced by %v, want %v", c.name, c.s.Metadata.Name, got, c.want)
		}
	}
	// A check published to another subscription is not silenced by the entity's.
	other := testEvent(2)
	other.Check.Subscriptions = []string{"web"}
	if got := SilencedBy(other, []*Silenced{silence("linux", "", nil)}, now); len(got) != 0 {
		t.Fatalf("silenced through a subscription the check is not published to: %v", got)
	}
}

func TestSilenceExpireAt(t *testing.T) {
	before := time.Now().Unix()
	s := silence("linux", "", func(s *Silenced) {})
	if s.ExpireAt != 0 {
		t.Fatalf("no expire, expire_at %d", s.ExpireAt)
	}
	s = &Silenced{Subscription: "linux", Expire: 60}
	SetDefaults(s, "")
	if s.ExpireAt < before+60 || s.ExpireAt > time.Now().Unix()+60 {
		t.Fatalf("expire_at %d, want now+60", s.ExpireAt)
	}
	if s.Expired(time.Unix(s.ExpireAt-1, 0)) || !s.Expired(time.Unix(s.ExpireAt, 0)) {
		t.Fatal("Expired does not follow expire_at")
	}
	begin := time.Now().Unix() + 3600
	s = &Silenced{Check: "disk", Expire: 60, Begin: begin}
	SetDefaults(s, "")
	if s.ExpireAt != begin+60 {
		t.Fatalf("expire_at %d, want begin+60 = %d", s.ExpireAt, begin+60)
	}
	s = &Silenced{Check: "disk", Expire: -1}
	SetDefaults(s, "")
	if s.ExpireAt != 0 || s.Expired(time.Now().Add(1e6*time.Hour)) {
		t.Fatal("expire -1 must never expire")
	}
}
