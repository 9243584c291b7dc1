package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ErrQueueFull is returned by Queue.Push when the queue holds its maximum.
var ErrQueueFull = errors.New("event queue full")

// Queue is the agent's durable outbox: one file per event in a directory, named
// <sequence>_<id>.json, so that the directory listing is the queue order and no
// compaction is ever needed.
//
// Fsync policy: Push writes the event to a temporary file, fsyncs it, renames it into
// place and fsyncs the directory before it returns, so an event Push accepted survives a
// crash or power loss. Remove unlinks without fsync: after a crash an event already
// delivered may come back and be sent again, which is at-least-once delivery (events
// keep their id, so a backend may drop the duplicate). Leftover temporary files of an
// interrupted Push are deleted on open; unreadable entries are moved aside to
// <name>.bad with a log line.
type Queue struct {
	dir      string
	maxCount int
	maxBytes int64
	log      *slog.Logger

	mu      sync.Mutex
	entries []*queueEntry // in sequence order
	byID    map[string]*queueEntry
	bytes   int64
	nextSeq uint64
	// sentThrough is the highest sequence number written to a backend: those up to it
	// may have been stored, and are resends when written again. At open, every event
	// found on disk counts as written (the agent may have sent it before it stopped).
	sentThrough uint64
	full        bool // logged once per full spell
	// changed is signalled (without blocking) on every Push and Remove.
	changed chan struct{}
}

type queueEntry struct {
	seq  uint64
	id   string
	size int64
}

// OpenQueue opens (creating it if needed) the queue in dir, bounded to maxCount events
// and maxBytes bytes.
func OpenQueue(dir string, maxCount int, maxBytes int64, log *slog.Logger) (*Queue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("event queue: %w; set cache-dir to a writable directory", err)
	}
	q := &Queue{dir: dir, maxCount: maxCount, maxBytes: maxBytes, log: log,
		byID: map[string]*queueEntry{}, nextSeq: 1, changed: make(chan struct{}, 1)}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("event queue: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		if de.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		seqStr, id, ok := strings.Cut(strings.TrimSuffix(name, ".json"), "_")
		seq, perr := strconv.ParseUint(seqStr, 10, 64)
		info, ierr := de.Info()
		if !ok || perr != nil || id == "" || ierr != nil || info.Size() == 0 {
			log.Warn("unreadable entry in the event queue moved aside", "file", name)
			_ = os.Rename(filepath.Join(dir, name), filepath.Join(dir, name+".bad"))
			continue
		}
		e := &queueEntry{seq: seq, id: id, size: info.Size()}
		q.entries = append(q.entries, e)
		q.byID[id] = e
		q.bytes += e.size
		if seq >= q.nextSeq {
			q.nextSeq = seq + 1
		}
	}
	sort.Slice(q.entries, func(i, j int) bool { return q.entries[i].seq < q.entries[j].seq })
	q.sentThrough = q.nextSeq - 1
	return q, nil
}

func (q *Queue) path(e *queueEntry) string {
	return filepath.Join(q.dir, fmt.Sprintf("%020d_%s.json", e.seq, e.id))
}

// Push stores payload, the JSON of the event with the given id, durably at the end of
// the queue. It returns ErrQueueFull when the queue is at its bound (nothing is dropped
// to make room: older events keep their place).
func (q *Queue) Push(id string, payload []byte) error {
	if id == "" || strings.ContainsAny(id, "/_.\\") {
		return fmt.Errorf("event queue: invalid id %q", id)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, dup := q.byID[id]; dup {
		return fmt.Errorf("event queue: duplicate id %s", id)
	}
	if len(q.entries) >= q.maxCount || q.bytes+int64(len(payload)) > q.maxBytes {
		if !q.full {
			q.full = true
			q.log.Error("event queue full: new events are refused until the backend takes the queued ones; check the agent's connection to its backends",
				"dir", q.dir, "events", len(q.entries), "bytes", q.bytes, "max_events", q.maxCount, "max_bytes", q.maxBytes)
		}
		return ErrQueueFull
	}
	e := &queueEntry{seq: q.nextSeq, id: id, size: int64(len(payload))}
	if err := q.writeFile(e, payload); err != nil {
		return fmt.Errorf("event queue: %w", err)
	}
	q.nextSeq++
	q.entries = append(q.entries, e)
	q.byID[id] = e
	q.bytes += e.size
	q.signal()
	return nil
}

// writeFile writes payload to the entry's file: temp file, fsync, rename, fsync dir.
func (q *Queue) writeFile(e *queueEntry, payload []byte) error {
	tmp, err := os.CreateTemp(q.dir, ".tmp-")
	if err != nil {
		return err
	}
	_, err = tmp.Write(payload)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), q.path(e))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	d, err := os.Open(q.dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	return err
}

// Remove deletes the event with the given id; false when it is not queued.
func (q *Queue) Remove(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.byID[id]
	if !ok {
		return false
	}
	if err := os.Remove(q.path(e)); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.log.Warn("remove delivered event from the queue", "id", id, "err", err)
	}
	delete(q.byID, id)
	q.bytes -= e.size
	for i, x := range q.entries {
		if x == e {
			q.entries = append(q.entries[:i], q.entries[i+1:]...)
			break
		}
	}
	if q.full && len(q.entries) < q.maxCount {
		q.full = false
		q.log.Info("event queue accepts events again", "events", len(q.entries))
	}
	q.signal()
	return true
}

func (q *Queue) signal() {
	select {
	case q.changed <- struct{}{}:
	default:
	}
}

// next returns the first event after sequence number after, with its payload read from
// disk; ok is false when there is none.
func (q *Queue) next(after uint64) (seq uint64, id string, payload []byte, ok bool) {
	for {
		q.mu.Lock()
		var e *queueEntry
		i := sort.Search(len(q.entries), func(i int) bool { return q.entries[i].seq > after })
		if i < len(q.entries) {
			e = q.entries[i]
		}
		q.mu.Unlock()
		if e == nil {
			return 0, "", nil, false
		}
		b, err := os.ReadFile(q.path(e))
		if err == nil {
			return e.seq, e.id, b, true
		}
		if q.Remove(e.id) || errors.Is(err, os.ErrNotExist) {
			// Delivered (acked) while we looked it up, or lost: go on with the next one.
			after = e.seq
			continue
		}
		return 0, "", nil, false
	}
}

// markSent records that the event with sequence number seq is being written to a backend.
func (q *Queue) markSent(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sentThrough = max(q.sentThrough, seq)
}

// wasSent reports whether the event with sequence number seq was written to a backend
// before (or was queued when the agent started).
func (q *Queue) wasSent(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return seq <= q.sentThrough
}

// inflight counts the queued events with a sequence number up to through.
func (q *Queue) inflight(through uint64) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return sort.Search(len(q.entries), func(i int) bool { return q.entries[i].seq > through })
}

// Len returns how many events are queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// IDs returns the ids of the queued events, oldest first.
func (q *Queue) IDs() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, len(q.entries))
	for i, e := range q.entries {
		out[i] = e.id
	}
	return out
}

// newID returns a random UUID (version 4), the form Sensu gives event ids.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
