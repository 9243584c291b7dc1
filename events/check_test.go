package events

import (
	"strings"
	"testing"
)

func TestHookNames(t *testing.T) {
	hooks := []map[string][]string{
		{"critical": {"a"}, "2": {"b", "a"}, "non-zero": {"c"}},
		{"ok": {"d"}, "0": {"e"}},
		{"warning": {"f"}, "1": {"g"}},
		{"unknown": {"h"}, "255": {"i"}},
	}
	for _, c := range []struct {
		status uint32
		want   string
	}{
		{0, "e,d"}, {1, "c,g,f"}, {2, "b,a,c"}, {3, "c,h"}, {255, "c,i"}, {7, "c"},
	} {
		if got := strings.Join(HookNames(hooks, c.status), ","); got != c.want {
			t.Errorf("status %d: %s, want %s", c.status, got, c.want)
		}
	}
	if HookNames(nil, 2) != nil {
		t.Error("hooks without check_hooks")
	}
}

func TestCheckHooksValidation(t *testing.T) {
	c := &CheckConfig{Command: "x", Interval: 10, CheckHooks: []map[string][]string{
		{"critical": {"ok-name"}, "256": {"a"}, "fatal": {"b"}},
		{"non-zero": {"bad name"}},
	}}
	c.Metadata.Name = "c"
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid check_hooks accepted")
	}
	for _, want := range []string{`check_hooks[0].256: "256" is not a status`, `check_hooks[0].fatal: "fatal" is not a status`, `check_hooks[1].non-zero[0]: "bad name" is not a valid hook name`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	c.CheckHooks = []map[string][]string{{"0": {"a"}, "255": {"b"}, "ok": {"c"}, "warning": {"d"}, "critical": {"e"}, "unknown": {"f"}, "non-zero": {"g"}}}
	if err := c.Validate(); err != nil {
		t.Errorf("valid check_hooks refused: %v", err)
	}
}

// TestCheckSubdueValidation: a subdue the scheduler could not read is refused, naming
// the window; a valid or absent one passes.
func TestCheckSubdueValidation(t *testing.T) {
	c := &CheckConfig{Command: "x", Interval: 10, Subdue: []byte(`{"days":{"all":[{"begin":"25:00","end":"6:00 PM"}]}}`)}
	c.Metadata.Name = "c"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `subdue: days.all[0].begin: "25:00" is not a time of day`) {
		t.Fatalf("bad subdue: %v", err)
	}
	for _, ok := range []string{``, `null`, `{"days":{"all":[{"begin":"5:00 PM","end":"8:00 AM"}]}}`} {
		c.Subdue = []byte(ok)
		if err := c.Validate(); err != nil {
			t.Errorf("subdue %q refused: %v", ok, err)
		}
	}
}
