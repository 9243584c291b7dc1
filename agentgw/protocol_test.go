package agentgw

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestFrameCodec(t *testing.T) {
	tests := []struct {
		frame   string
		typ     string
		payload string
		bad     bool
	}{
		{"keepalive\n{}", "keepalive", "{}", false},
		{"event\n{\"a\":\"b\\nc\"}\nmore", "event", "{\"a\":\"b\\nc\"}\nmore", false},
		{"check_request\n", "check_request", "", false},
		{"\n{}", "", "", true},
		{"no newline", "", "", true},
		{"Event\n{}", "", "", true},
		{"\x00\xff\n{}", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		typ, payload, err := Decode([]byte(tt.frame))
		if tt.bad {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode(%q): err %v, want ErrMalformed", tt.frame, err)
			}
			continue
		}
		if err != nil || typ != tt.typ || string(payload) != tt.payload {
			t.Errorf("Decode(%q) = %q, %q, %v", tt.frame, typ, payload, err)
		}
		if got := Encode(typ, payload); !bytes.Equal(got, []byte(tt.frame)) {
			t.Errorf("Encode(Decode(%q)) = %q", tt.frame, got)
		}
	}
}

func FuzzFrameCodec(f *testing.F) {
	f.Add([]byte("keepalive\n{}"))
	f.Add([]byte("event\n{\"check\":{}}"))
	f.Add([]byte("\n"))
	f.Add([]byte{0xff, '\n'})
	f.Fuzz(func(t *testing.T, frame []byte) {
		typ, payload, err := Decode(frame)
		if err != nil {
			return
		}
		if !bytes.Equal(Encode(typ, payload), frame) {
			t.Fatalf("round trip of %q changed it", frame)
		}
	})
}

// TestAckFrame: the hand-written ack frame is what encoding the Ack gives, for plain IDs
// and for IDs that need escaping.
func TestAckFrame(t *testing.T) {
	for _, id := range []string{"", "8f8c0e1e-3c1e-4a3c-9f3e-1e2f3a4b5c6d", "abc123", `q"uote`, `back\slash`, "<&>", "é", "tab\t", "\x00", "\x7f"} {
		payload, _ := json.Marshal(Ack{ID: id})
		want := Encode(TypeAck, payload)
		if got := AckFrame(id); !bytes.Equal(got, want) {
			t.Errorf("AckFrame(%q) = %q, want %q", id, got, want)
		}
	}
}
