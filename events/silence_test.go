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
	past := time.Now().Unix() - 600
	s = &Silenced{Check: "disk", Expire: 3600, Begin: past}
	SetDefaults(s, "")
	if s.ExpireAt != past+3600 {
		t.Fatalf("begin 10 min ago, expire 1 h: expire_at %d, want begin+3600 = %d (Sensu counts from begin)", s.ExpireAt, past+3600)
	}
	s = &Silenced{Check: "disk", Expire: -1}
	SetDefaults(s, "")
	if s.ExpireAt != 0 || s.Expired(time.Now().Add(1e6*time.Hour)) {
		t.Fatal("expire -1 must never expire")
	}
}

// TestSilencedProxyEntity: a proxy entity's result is matched by every subscription of
// the entity, not only those it shares with the check (which agents of another
// subscription run), as Sensu does.
func TestSilencedProxyEntity(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ev := testEvent(2)
	ev.Entity.Metadata.Name = "router1"
	ev.Entity.EntityClass = EntityProxy
	ev.Entity.Subscriptions = []string{"network", "entity:router1"}
	ev.Check.Subscriptions = []string{"proxy-runner"}
	ev.Check.ProxyEntityName = "router1"
	for _, c := range []struct {
		s    *Silenced
		want bool
	}{
		{silence("network", "", nil), true},
		{silence("network", "disk", nil), true},
		{silence("entity:router1", "", nil), true},
		{silence("proxy-runner", "", nil), false},
		{silence("linux", "", nil), false},
	} {
		if got := len(SilencedBy(ev, []*Silenced{c.s}, now)) == 1; got != c.want {
			t.Errorf("proxy result, silence %s: silenced %v, want %v", c.s.Metadata.Name, got, c.want)
		}
	}
	// The same entity and check without proxy_entity_name: only shared subscriptions.
	ev.Check.ProxyEntityName = ""
	if got := SilencedBy(ev, []*Silenced{silence("network", "", nil)}, now); len(got) != 0 {
		t.Errorf("non-proxy result silenced by a subscription the check does not have: %v", got)
	}
}
