// Package agentgw is the agent wire protocol of Sensu Go 6 (JSON payloads): message
// framing, the server-side gateway that accepts agents, and the client side used by
// `picket agent`.
//
// A message is one binary WebSocket frame: the message type, one '\n', then the
// payload. Picket adds two extensions, each asked for by a request header and granted by
// the same header in the response; plain Sensu agents never ask and never see either:
//   - acknowledged delivery (AckHeader): the agent receives an "ack" frame
//     {"id": <event id>} for every event once it is persisted, and keeps unacknowledged
//     events on disk until then;
//   - marked resends (ResendHeader): an event the agent sent before, on an earlier
//     connection or before it restarted, goes out again as a "resent_event" frame, so
//     that a server that did not store it itself can tell it from a new result (see
//     node's writeEvent).
package agentgw

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/picketmon/picket/events"
)

// Message types of the protocol.
const (
	TypeKeepalive    = "keepalive"
	TypeEvent        = "event"
	TypeCheckRequest = "check_request"
	TypeEntityConfig = "entity_config"
	// TypeAck is Picket's extension: server → agent, {"id": "<event id>"}.
	TypeAck = "ack"
	// TypeResentEvent is Picket's extension: an event, as TypeEvent, that its agent
	// sent before and never saw acknowledged.
	TypeResentEvent = "resent_event"
)

// Handshake headers.
const (
	HeaderAgentName     = "Sensu-AgentName"
	HeaderNamespace     = "Sensu-Namespace"
	HeaderSubscriptions = "Sensu-Subscriptions"
	HeaderUser          = "Sensu-User"
	HeaderBackendID     = "Backend-ID"
	// AckHeader asks for (request) and grants (response) acknowledged delivery.
	AckHeader = "Picket-Ack"
	// ResendHeader asks for (request) and grants (response) marked resends.
	ResendHeader = "Picket-Resend"
)

// MaxFrameSize is the largest frame the gateway and agent accept: 1 MiB more than the
// API's body limit leaves room for large outputs; bigger frames close the session with
// StatusMessageTooBig and a reason naming the limit.
const MaxFrameSize = 1536 * 1024

// ErrMalformed reports a frame that is not "type\npayload".
var ErrMalformed = errors.New("malformed frame")

// Encode frames a message.
func Encode(typ string, payload []byte) []byte {
	b := make([]byte, 0, len(typ)+1+len(payload))
	b = append(b, typ...)
	b = append(b, '\n')
	return append(b, payload...)
}

// Decode splits a frame at its first newline into the type and the payload.
func Decode(frame []byte) (string, []byte, error) {
	i := bytes.IndexByte(frame, '\n')
	if i <= 0 {
		return "", nil, fmt.Errorf("%w: no message type before the first newline", ErrMalformed)
	}
	// The types agents send most are returned as constants: the conversion of the
	// others allocates, and this runs for every frame.
	switch string(frame[:i]) {
	case TypeEvent:
		return TypeEvent, frame[i+1:], nil
	case TypeKeepalive:
		return TypeKeepalive, frame[i+1:], nil
	case TypeResentEvent:
		return TypeResentEvent, frame[i+1:], nil
	}
	typ := string(frame[:i])
	for _, c := range typ {
		if !(c >= 'a' && c <= 'z' || c == '_') {
			return "", nil, fmt.Errorf("%w: message type %q is not lower-case letters and '_'", ErrMalformed, truncate(typ, 40))
		}
	}
	return typ, frame[i+1:], nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CheckRequest asks an agent to run a check.
type CheckRequest struct {
	Config     *events.CheckConfig `json:"config"`
	Assets     []any               `json:"assets"`
	Hooks      []events.HookConfig `json:"hooks"`
	Issued     int64               `json:"issued"`
	HookAssets map[string]any      `json:"hook_assets,omitempty"`
	Secrets    map[string]string   `json:"secrets,omitempty"`
}

// Ack is the payload of an ack frame.
type Ack struct {
	ID string `json:"id"`
}

// AckFrame is the ack frame for an event ID: what Encode(TypeAck, json.Marshal(Ack{id}))
// gives, written directly for IDs that need no JSON escaping (UUIDs, hex), as one is
// written for every event.
func AckFrame(id string) []byte {
	plain := true
	for i := 0; i < len(id) && plain; i++ {
		c := id[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	if !plain {
		payload, _ := json.Marshal(Ack{ID: id})
		return Encode(TypeAck, payload)
	}
	b := make([]byte, 0, len(TypeAck)+len(id)+12)
	b = append(b, TypeAck+"\n{\"id\":\""...)
	b = append(b, id...)
	return append(b, `"}`...)
}
