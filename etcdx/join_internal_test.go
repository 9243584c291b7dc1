package etcdx

import "testing"

func TestOlderThan(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"3.4.0", true}, {"3.5.17", true}, {"3.6.0", false}, {"3.7.0", false}, {"4.0.0", false},
		{"2.3", true}, {"", false}, {"not_decided", false},
	} {
		if got := olderThan(tc.v, MinClusterVersion); got != tc.want {
			t.Errorf("olderThan(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
