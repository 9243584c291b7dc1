package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func openTestQueue(t *testing.T, dir string, maxCount int, maxBytes int64) *Queue {
	t.Helper()
	q, err := OpenQueue(dir, maxCount, maxBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func payloads(t *testing.T, q *Queue) []string {
	t.Helper()
	var out []string
	var last uint64
	for {
		seq, _, b, ok := q.next(last)
		if !ok {
			return out
		}
		out = append(out, string(b))
		last = seq
	}
}

func TestQueueSurvivesReopenInOrder(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 100, 1<<20)
	var ids []string
	for i := range 12 {
		id := newID()
		ids = append(ids, id)
		if err := q.Push(id, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if !q.Remove(ids[3]) || q.Remove(ids[3]) {
		t.Fatal("Remove should succeed once")
	}
	q2 := openTestQueue(t, dir, 100, 1<<20)
	want := slices.Delete(slices.Clone(ids), 3, 4)
	if got := q2.IDs(); !slices.Equal(got, want) {
		t.Fatalf("ids after reopen = %v, want %v", got, want)
	}
	got := payloads(t, q2)
	if len(got) != 11 || got[0] != `{"n":0}` || got[3] != `{"n":4}` || got[10] != `{"n":11}` {
		t.Fatalf("payloads after reopen = %v", got)
	}
	// New events go after the old ones, even though sequence numbers restart from disk.
	id := newID()
	if err := q2.Push(id, []byte(`{"n":12}`)); err != nil {
		t.Fatal(err)
	}
	if ids := q2.IDs(); ids[len(ids)-1] != id {
		t.Fatalf("new event not last: %v", ids)
	}
	// The events found on disk may have been sent before the agent stopped: written
	// again, they are resends. The new one is not, until it is written.
	for _, e := range q2.entries {
		if q2.wasSent(e.seq) != (e.id != id) {
			t.Fatalf("event %d (%s): sent before = %v", e.seq, e.id, q2.wasSent(e.seq))
		}
	}
	last := q2.entries[len(q2.entries)-1].seq
	q2.markSent(last)
	if !q2.wasSent(last) {
		t.Fatal("an event written is not taken as sent")
	}
}

func TestQueueBounds(t *testing.T) {
	tests := []struct {
		name     string
		maxCount int
		maxBytes int64
		pushes   int
		accepted int
	}{
		{"count bound", 5, 1 << 20, 8, 5},
		{"byte bound", 100, 35, 8, 3}, // 10-byte payloads
		{"within bounds", 10, 1 << 20, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openTestQueue(t, t.TempDir(), tt.maxCount, tt.maxBytes)
			accepted := 0
			var first string
			for i := range tt.pushes {
				id := newID()
				err := q.Push(id, fmt.Appendf(nil, `{"n":%04d}`, i))
				switch {
				case err == nil:
					accepted++
					if first == "" {
						first = id
					}
				case errors.Is(err, ErrQueueFull):
				default:
					t.Fatal(err)
				}
			}
			if accepted != tt.accepted || q.Len() != tt.accepted {
				t.Fatalf("accepted %d (len %d), want %d", accepted, q.Len(), tt.accepted)
			}
			// Room again once one is delivered.
			q.Remove(first)
			if err := q.Push(newID(), []byte(`{"n":9999}`)); err != nil {
				t.Fatalf("push after a removal: %v", err)
			}
		})
	}
}

func TestQueueOpenCleansUp(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 10, 1<<20)
	id := newID()
	if err := q.Push(id, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// An interrupted push, a truncated entry and a stranger.
	for name, content := range map[string]string{
		".tmp-123":                    "half",
		"00000000000000000007_x.json": "",
		"garbage.json":                "{}",
		"README":                      "not ours",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q2 := openTestQueue(t, dir, 10, 1<<20)
	if got := q2.IDs(); !slices.Equal(got, []string{id}) {
		t.Fatalf("ids = %v, want only %s", got, id)
	}
	des, _ := os.ReadDir(dir)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	joined := strings.Join(names, " ")
	if strings.Contains(joined, ".tmp-") || !strings.Contains(joined, "garbage.json.bad") || !strings.Contains(joined, "_x.json.bad") {
		t.Fatalf("directory after open: %v", names)
	}
}

func TestQueueInflightAndInvalidIDs(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), 10, 1<<20)
	for _, bad := range []string{"", "a/b", "a_b", "../x"} {
		if err := q.Push(bad, []byte(`{}`)); err == nil {
			t.Errorf("Push(%q) accepted", bad)
		}
	}
	a, b := newID(), newID()
	_ = q.Push(a, []byte(`{}`))
	_ = q.Push(b, []byte(`{}`))
	if err := q.Push(a, []byte(`{}`)); err == nil {
		t.Error("duplicate id accepted")
	}
	seq, _, _, _ := q.next(0)
	if n := q.inflight(seq); n != 1 {
		t.Fatalf("inflight through first = %d, want 1", n)
	}
	q.Remove(a)
	if n := q.inflight(seq); n != 0 {
		t.Fatalf("inflight after ack = %d, want 0", n)
	}
}
