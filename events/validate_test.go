package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func validCheck() *CheckConfig {
	return &CheckConfig{
		Metadata:      ObjectMeta{Name: "cpu", Namespace: "default"},
		Command:       "check-cpu.sh",
		Interval:      60,
		Publish:       true,
		Subscriptions: []string{"linux"},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		r      Resource
		fields []string // the fields Validate must name, sorted; nil means valid
		msg    string   // a fragment of the error text, when set
	}{
		{"check valid", validCheck(), nil, ""},
		{"check negative interval", mod(validCheck(), func(c *CheckConfig) { c.Interval = -5 }),
			[]string{"interval"}, "interval: must be a positive number of seconds (got -5); set interval or cron"},
		{"check missing command", mod(validCheck(), func(c *CheckConfig) { c.Command = "" }),
			[]string{"command"}, "command: required"},
		{"check cron", mod(validCheck(), func(c *CheckConfig) { c.Interval, c.Cron = 0, "CRON_TZ=Asia/Tokyo 0 9 * * MON-FRI" }), nil, ""},
		{"check cron descriptor", mod(validCheck(), func(c *CheckConfig) { c.Interval, c.Cron = 0, "@every 30s" }), nil, ""},
		{"check cron and interval", mod(validCheck(), func(c *CheckConfig) { c.Cron = "* * * * *" }),
			[]string{"cron"}, "cannot be used together with interval"},
		{"check cron four fields", mod(validCheck(), func(c *CheckConfig) { c.Interval, c.Cron = 0, "* * * *" }),
			[]string{"cron"}, "has 4 fields"},
		{"check cron bad zone", mod(validCheck(), func(c *CheckConfig) { c.Interval, c.Cron = 0, "CRON_TZ=Mars/Olympus * * * * *" }),
			[]string{"cron"}, `unknown time zone "Mars/Olympus"`},
		{"check cron out of range", mod(validCheck(), func(c *CheckConfig) { c.Interval, c.Cron = 0, "61 * * * *" }),
			[]string{"cron"}, `minute field "61": out of range 0-59`},
		{"check ttl not above interval", mod(validCheck(), func(c *CheckConfig) { c.Ttl = 60 }),
			[]string{"ttl"}, "must be greater than interval (60)"},
		{"check flap thresholds", mod(validCheck(), func(c *CheckConfig) { c.LowFlapThreshold, c.HighFlapThreshold = 60, 40 }),
			[]string{"low_flap_threshold"}, ""},
		{"check flap over 100", mod(validCheck(), func(c *CheckConfig) { c.LowFlapThreshold, c.HighFlapThreshold = 20, 140 }),
			[]string{"high_flap_threshold"}, ""},
		{"check metric format", mod(validCheck(), func(c *CheckConfig) { c.OutputMetricFormat = "json" }),
			[]string{"output_metric_format"}, `"json" is not a metric format`},
		{"check published without subscriptions", mod(validCheck(), func(c *CheckConfig) { c.Subscriptions = nil }),
			[]string{"subscriptions"}, ""},
		{"check many problems at once", &CheckConfig{Metadata: ObjectMeta{Name: "bad name"}, Interval: -5, Timeout: -1, Publish: true},
			[]string{"command", "interval", "metadata.name", "subscriptions", "timeout"}, ""},

		{"handler pipe", &Handler{Metadata: ObjectMeta{Name: "h"}, Command: "cat"}, nil, ""},
		{"handler bad type", &Handler{Metadata: ObjectMeta{Name: "h"}, Type: "smtp", Command: "x"},
			[]string{"type"}, `"smtp" is not a handler type; use pipe, tcp, udp or set`},
		{"handler pipe without command", &Handler{Metadata: ObjectMeta{Name: "h"}, Type: "pipe"}, []string{"command"}, ""},
		{"handler tcp without socket", &Handler{Metadata: ObjectMeta{Name: "h"}, Type: "tcp"}, []string{"socket"}, ""},
		{"handler udp bad socket", &Handler{Metadata: ObjectMeta{Name: "h"}, Type: "udp", Socket: &Socket{Port: 70000}},
			[]string{"socket.host", "socket.port"}, "socket.port: must be a port from 1 to 65535 (got 70000)"},
		{"handler set with command and no handlers", &Handler{Metadata: ObjectMeta{Name: "h"}, Type: "set", Command: "x"},
			[]string{"command", "handlers"}, ""},

		{"filter valid", &EventFilter{Metadata: ObjectMeta{Name: "f"}, Action: "deny", Expressions: []string{"true"}}, nil, ""},
		{"filter bad action no expressions", &EventFilter{Metadata: ObjectMeta{Name: "f"}, Action: "drop"},
			[]string{"action", "expressions"}, ""},

		{"mutator pipe", &Mutator{Metadata: ObjectMeta{Name: "m"}, Command: "jq ."}, nil, ""},
		{"mutator javascript without eval", &Mutator{Metadata: ObjectMeta{Name: "m"}, Type: "javascript"}, []string{"eval"}, ""},
		{"mutator bad type", &Mutator{Metadata: ObjectMeta{Name: "m"}, Type: "lua"}, []string{"type"}, ""},

		{"entity service class", &Entity{Metadata: ObjectMeta{Name: "db"}, EntityClass: "service"}, nil, ""},
		{"entity without class", &Entity{Metadata: ObjectMeta{Name: "db"}}, []string{"entity_class"}, ""},

		{"silenced wildcard name", &Silenced{Metadata: ObjectMeta{Name: "*:disk"}, Check: "disk", Expire: -1}, nil, ""},
		{"silenced nothing to silence", &Silenced{Metadata: ObjectMeta{Name: "x"}, Expire: -2},
			[]string{"expire", "subscription"}, ""},
		{"silenced ends before it begins", &Silenced{Metadata: ObjectMeta{Name: "x:y"}, Subscription: "x", Check: "y", Begin: 1_900_000_000, ExpireAt: 1_800_000_000},
			[]string{"expire_at"}, "not after begin"},
		{"silenced with begin and later expire_at", &Silenced{Metadata: ObjectMeta{Name: "x:y"}, Subscription: "x", Check: "y", Begin: 1_800_000_000, ExpireAt: 1_900_000_000}, nil, ""},

		{"event valid", &Event{Entity: &Entity{Metadata: ObjectMeta{Name: "web"}}, Check: &Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu"}}}}, nil, ""},
		{"event without entity and check", &Event{}, []string{"check", "entity"}, ""},
		{"event unnamed", &Event{Entity: &Entity{}, Check: &Check{}}, []string{"check.metadata.name", "entity.metadata.name"}, ""},

		{"user with password", &User{Username: "alice", Password: "correct horse", Groups: []string{"ops"}}, nil, ""},
		{"user with hash", &User{Username: "alice", PasswordHash: "$2a$10$x", Groups: []string{"ops"}}, nil, ""},
		{"user short password no groups", &User{Username: "alice", Password: "short"}, []string{"groups", "password"}, "at least 8 characters"},
		{"user no password", &User{Username: "alice", Groups: []string{"ops"}}, []string{"password"}, ""},
		{"apikey without username", &APIKey{Metadata: ObjectMeta{Name: "83abef1e-e7d7-4beb-91fc-79ad90084d5b"}}, []string{"username"}, ""},
		{"namespace bad name", &Namespace{Name: "a/b"}, []string{"name"}, ""},
		{"hook valid", &HookConfig{Metadata: ObjectMeta{Name: "ps"}, Command: "ps aux"}, nil, ""},
		{"asset without url", &Asset{Metadata: ObjectMeta{Name: "a"}}, []string{"sha512", "url"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v (%T), want a ValidationError", err, err)
			}
			var got []string
			for _, fe := range ve {
				got = append(got, fe.Field)
				if fe.Message == "" {
					t.Errorf("field %s has no message", fe.Field)
				}
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tt.fields) {
				t.Errorf("fields = %v, want %v (%v)", got, tt.fields, err)
			}
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func mod[T any](v *T, f func(*T)) *T {
	f(v)
	return v
}

func TestNegativeIntervalDecodes(t *testing.T) {
	ws, err := DecodeWrapped(strings.NewReader("type: CheckConfig\nmetadata: {name: c}\nspec:\n  command: x\n  interval: -5\n  publish: false\n"), "c.yml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Unwrap(ws[0])
	if err != nil {
		t.Fatal(err)
	}
	err = r.Validate()
	var ve ValidationError
	if !errors.As(err, &ve) || len(ve) != 1 || ve[0].Field != "interval" {
		t.Fatalf("Validate() = %v, want one problem naming interval", err)
	}
}

// TestUnsupportedFields: the Sensu fields Picket reads but does not act on are named, so
// that create -f and the server's log can say so; a resource without them has none.
func TestUnsupportedFields(t *testing.T) {
	h := &Handler{Type: HandlerPipe, Command: "notify", RuntimeAssets: []string{"sensu-slack"}, Secrets: []Secret{{Name: "TOKEN", Secret: "slack"}}}
	got := strings.Join(UnsupportedFields(h), "\n")
	if !strings.Contains(got, "runtime_assets: assets are not supported; the command runs without sensu-slack") || !strings.Contains(got, "secrets: ") {
		t.Fatalf("handler with assets and secrets: %q", got)
	}
	var c CheckConfig
	if err := json.Unmarshal([]byte(`{"metadata":{"name":"cpu"},"command":"x","interval":10,"subdues":[{"begin":"x"}]}`), &c); err != nil {
		t.Fatal(err)
	}
	if got := UnsupportedFields(&c); len(got) != 1 || !strings.HasPrefix(got[0], "subdues: not supported") {
		t.Fatalf("check with subdues: %q", got)
	}
	if got := UnsupportedFields(&Handler{Type: HandlerPipe, Command: "cat"}); len(got) != 0 {
		t.Fatalf("plain handler: %q", got)
	}
}
