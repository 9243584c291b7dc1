package events

import (
	"encoding/json"
	"testing"
)

const benchEventJSON = `{"timestamp":1700000000,"entity":{"metadata":{"name":"web-01","namespace":"default","labels":{"env":"prod"}},"entity_class":"agent","system":{"hostname":"web-01","os":"linux","platform":"debian","platform_family":"debian","platform_version":"12.5","network":{"interfaces":[{"name":"lo","addresses":["127.0.0.1/8","::1/128"]},{"name":"eth0","mac":"52:54:00:12:34:56","addresses":["10.0.0.5/24"]}]},"arch":"amd64"},"subscriptions":["linux","entity:web-01"],"last_seen":1700000000,"deregister":false,"deregistration":{},"user":"agent","redact":["password","secret"],"sensu_agent_version":"6.14.0"},"check":{"metadata":{"name":"check-cpu","namespace":"default"},"command":"check-cpu.sh -w 75 -c 90","handlers":["slack"],"interval":60,"publish":true,"subscriptions":["linux"],"timeout":30,"ttl":0,"status":1,"output":"CPU WARNING: 80%","executed":1700000000,"issued":1700000000,"duration":0.12,"history":[{"status":0,"executed":1699999940},{"status":1,"executed":1700000000}]},"id":"8f8c0e1e-3c1e-4a3c-9f3e-1e2f3a4b5c6d"}`

// BenchmarkEventDecode measures decoding one agent event, the gateway's hottest path.
// Command: go test -run XXX -bench Event -benchmem ./events/
func BenchmarkEventDecode(b *testing.B) {
	data := []byte(benchEventJSON)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventEncode measures encoding one stored event.
func BenchmarkEventEncode(b *testing.B) {
	var ev Event
	if err := json.Unmarshal([]byte(benchEventJSON), &ev); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := json.Marshal(&ev); err != nil {
			b.Fatal(err)
		}
	}
}
