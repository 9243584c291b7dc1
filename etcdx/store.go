package etcdx

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Prefix is the root of every Picket key.
const Prefix = "/picket/"

// Errors callers branch on. Store methods wrap them with the key concerned, so
// errors.Is works and the message names the key.
var (
	// ErrNotFound reports a key that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists reports a create of a key that already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict reports a compare-and-swap whose key changed since it was read.
	ErrConflict = errors.New("changed since it was read")
	// ErrBadContinue reports a continue token that List did not issue for this prefix.
	ErrBadContinue = errors.New("invalid continue token")
	// ErrCompacted reports a watch whose start revision has been compacted away.
	ErrCompacted = errors.New("revision compacted")
)

// Key joins parts under Prefix with "/", skipping empty parts and trimming slashes
// around each: Key("checks", "default", "cpu") is "/picket/checks/default/cpu" and Key()
// is Prefix. Pass the result to List as a prefix: List adds the trailing "/".
func Key(parts ...string) string {
	size := len(Prefix)
	for _, p := range parts {
		size += len(p) + 1
	}
	var b strings.Builder
	b.Grow(size) // one allocation: keys are built for every event
	b.WriteString(Prefix)
	n := 0
	for _, p := range parts {
		p = strings.Trim(p, "/")
		if p == "" {
			continue
		}
		if n > 0 {
			b.WriteByte('/')
		}
		b.WriteString(p)
		n++
	}
	return b.String()
}

// dirPrefix makes prefix a whole path segment, so that "/picket/checks/default" does not
// match "/picket/checks/default2/...".
func dirPrefix(prefix string) (string, error) {
	if prefix == "" {
		return "", errors.New("list: empty prefix")
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix, nil
}

// KV is a stored key and value with its revisions. ModRevision is what Update compares.
type KV struct {
	Key                         string
	Value                       []byte
	ModRevision, CreateRevision int64
}

// kvFrom converts a stored key and value, decompressing a value stored by Compress.
func kvFrom(kv *mvccpb.KeyValue) KV {
	return KV{Key: string(kv.Key), Value: Decompress(kv.Value), ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision}
}

// Store is Picket's key-value access to etcd. It is safe for concurrent use.
type Store struct {
	c *clientv3.Client
	// fenced: writes through the Store to keys under fencedPrefix also bump fence.
	fencedPrefix string
	fence        *Fence
}

// FenceWrites makes every write through s (Create, Update, Put, Delete, DeleteRev, Txn)
// to a key under prefix also bump f in the same transaction: the keys' usual writer
// then notices it (see Fence). Call it before the Store is shared.
func (s *Store) FenceWrites(prefix string, f *Fence) {
	s.fencedPrefix, s.fence = prefix, f
}

// fenceOps returns the bump to add to a transaction writing key (none when key is not
// fenced).
func (s *Store) fenceOps(key string) []clientv3.Op {
	if s.fence == nil || !strings.HasPrefix(key, s.fencedPrefix) {
		return nil
	}
	return []clientv3.Op{s.fence.BumpOp()}
}

// fencedThen returns op on key followed by the fence's bump when key is fenced, and the
// bump alone (for fenced).
func (s *Store) fencedThen(key string, op clientv3.Op) (then, bumps []clientv3.Op) {
	bumps = s.fenceOps(key)
	return append([]clientv3.Op{op}, bumps...), bumps
}

// fenced records the revision of a committed transaction that bumped the fence.
func (s *Store) fenced(bumps []clientv3.Op, rev int64) {
	if len(bumps) > 0 {
		s.fence.Observe(rev)
	}
}

// NewStore returns a Store using c. The caller keeps ownership of c and closes it.
func NewStore(c *clientv3.Client) *Store {
	return &Store{c: c}
}

// Client returns the underlying client, for elections, leases and membership calls.
func (s *Store) Client() *clientv3.Client {
	return s.c
}

// Get returns the key, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (KV, error) {
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return KV{}, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return kvFrom(resp.Kvs[0]), nil
}

// Create stores val at key if the key does not exist, and returns its mod revision. It
// fails with an error wrapping ErrExists otherwise.
func (s *Store) Create(ctx context.Context, key string, val []byte) (int64, error) {
	then, bumps := s.fencedThen(key, clientv3.OpPut(key, string(val)))
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(then...).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s: %w", key, ErrExists)
	}
	s.fenced(bumps, resp.Header.Revision)
	return resp.Header.Revision, nil
}

// Update replaces the value of key if its mod revision is still modRev (compare and
// swap), and returns the new mod revision. It fails with an error wrapping ErrNotFound if
// the key does not exist and ErrConflict if it changed since modRev.
func (s *Store) Update(ctx context.Context, key string, val []byte, modRev int64) (int64, error) {
	then, bumps := s.fencedThen(key, clientv3.OpPut(key, string(val)))
	resp, err := s.c.Txn(ctx).
		If(
			clientv3.Compare(clientv3.CreateRevision(key), ">", 0),
			clientv3.Compare(clientv3.ModRevision(key), "=", modRev),
		).
		Then(then...).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("update %s: %w", key, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().GetKvs()) == 0 {
			return 0, fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return 0, fmt.Errorf("%s: %w", key, ErrConflict)
	}
	s.fenced(bumps, resp.Header.Revision)
	return resp.Header.Revision, nil
}

// Put stores val at key whether or not it exists, and returns its mod revision.
func (s *Store) Put(ctx context.Context, key string, val []byte) (int64, error) {
	if then, bumps := s.fencedThen(key, clientv3.OpPut(key, string(val))); bumps != nil {
		resp, err := s.c.Txn(ctx).Then(then...).Commit()
		if err != nil {
			return 0, fmt.Errorf("put %s: %w", key, err)
		}
		s.fenced(bumps, resp.Header.Revision)
		return resp.Header.Revision, nil
	}
	resp, err := s.c.Put(ctx, key, string(val))
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return resp.Header.Revision, nil
}

// Delete removes key, or fails with an error wrapping ErrNotFound.
func (s *Store) Delete(ctx context.Context, key string) error {
	if then, bumps := s.fencedThen(key, clientv3.OpDelete(key)); bumps != nil {
		resp, err := s.c.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
			Then(then...).
			Commit()
		if err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		s.fenced(bumps, resp.Header.Revision)
		return nil
	}
	resp, err := s.c.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return nil
}

// List returns the keys under prefix in key order, at most limit of them when limit > 0,
// and a continue token for the next page ("" after the last page). Pass cont "" for the
// first page. prefix is a directory: a missing trailing "/" is added. Pages are read at
// different revisions, so a key changed between two calls may be seen in its old or new
// state, and one created before the current position is not seen; a token that List did
// not issue for this prefix gives an error wrapping ErrBadContinue.
func (s *Store) List(ctx context.Context, prefix string, limit int64, cont string) ([]KV, string, error) {
	prefix, err := dirPrefix(prefix)
	if err != nil {
		return nil, "", err
	}
	start := prefix
	if cont != "" {
		b, err := base64.RawURLEncoding.DecodeString(cont)
		if err != nil || !strings.HasPrefix(string(b), prefix) {
			return nil, "", fmt.Errorf("list %s: %w", prefix, ErrBadContinue)
		}
		start = string(b)
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if limit > 0 {
		// One more than asked tells whether another page exists and where it starts.
		opts = append(opts, clientv3.WithLimit(limit+1))
	}
	resp, err := s.c.Get(ctx, start, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("list %s: %w", prefix, err)
	}
	kvs := resp.Kvs
	next := ""
	if limit > 0 && int64(len(kvs)) > limit {
		next = base64.RawURLEncoding.EncodeToString(kvs[limit].Key)
		kvs = kvs[:limit]
	}
	out := make([]KV, len(kvs))
	for i, kv := range kvs {
		out[i] = kvFrom(kv)
	}
	return out, next, nil
}

// ListAll returns every key under prefix (a directory, as for List) in one consistent
// read, with the store revision it was read at. Watch from that revision + 1 to follow
// the listing without missing or repeating a change.
func (s *Store) ListAll(ctx context.Context, prefix string) ([]KV, int64, error) {
	prefix, err := dirPrefix(prefix)
	if err != nil {
		return nil, 0, err
	}
	resp, err := s.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]KV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = kvFrom(kv)
	}
	return out, resp.Header.Revision, nil
}

// Op is one operation of a Txn, built by PutOp, CreateOp, UpdateOp or DeleteOp.
type Op struct {
	kind   opKind
	key    string
	val    []byte
	modRev int64
}

type opKind int

const (
	opPut opKind = iota
	opCreate
	opUpdate
	opDelete
)

// PutOp stores val at key unconditionally.
func PutOp(key string, val []byte) Op { return Op{kind: opPut, key: key, val: val} }

// CreateOp stores val at key; the Txn fails with ErrExists if the key exists.
func CreateOp(key string, val []byte) Op { return Op{kind: opCreate, key: key, val: val} }

// UpdateOp stores val at key; the Txn fails with ErrNotFound if the key is missing and
// ErrConflict if its mod revision is not modRev.
func UpdateOp(key string, val []byte, modRev int64) Op {
	return Op{kind: opUpdate, key: key, val: val, modRev: modRev}
}

// DeleteOp deletes key if it exists.
func DeleteOp(key string) Op { return Op{kind: opDelete, key: key} }

// Txn applies ops atomically: all of them or, when a condition of a CreateOp or UpdateOp
// fails, none. The error then wraps ErrExists, ErrNotFound or ErrConflict and names the
// first failing key. A key may appear only once per Txn, and etcd limits the number of
// ops (EmbedConfig.MaxTxnOps; 128 on a default external etcd).
func (s *Store) Txn(ctx context.Context, ops ...Op) error {
	if len(ops) == 0 {
		return nil
	}
	var (
		cmps    []clientv3.Cmp
		then    []clientv3.Op
		checks  []clientv3.Op
		checked []Op
		bumps   []clientv3.Op
	)
	for _, op := range ops {
		switch op.kind {
		case opPut:
			then = append(then, clientv3.OpPut(op.key, string(op.val)))
		case opCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(op.key), "=", 0))
			then = append(then, clientv3.OpPut(op.key, string(op.val)))
		case opUpdate:
			cmps = append(cmps,
				clientv3.Compare(clientv3.CreateRevision(op.key), ">", 0),
				clientv3.Compare(clientv3.ModRevision(op.key), "=", op.modRev))
			then = append(then, clientv3.OpPut(op.key, string(op.val)))
		case opDelete:
			then = append(then, clientv3.OpDelete(op.key))
		default:
			return fmt.Errorf("txn: op for %s was not built by an etcdx Op constructor", op.key)
		}
		if op.kind == opCreate || op.kind == opUpdate {
			checks = append(checks, clientv3.OpGet(op.key, clientv3.WithKeysOnly()))
			checked = append(checked, op)
		}
		if bumps == nil {
			bumps = s.fenceOps(op.key)
		}
	}
	then = append(then, bumps...)
	resp, err := s.c.Txn(ctx).If(cmps...).Then(then...).Else(checks...).Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrDuplicateKey) {
			return fmt.Errorf("txn: %w (each key may appear once)", err)
		}
		return fmt.Errorf("txn: %w", err)
	}
	if resp.Succeeded {
		s.fenced(bumps, resp.Header.Revision)
		return nil
	}
	// The else branch read every conditional key at the revision the comparisons saw,
	// so the first failing op can be named.
	for i, op := range checked {
		kvs := resp.Responses[i].GetResponseRange().GetKvs()
		switch {
		case op.kind == opCreate && len(kvs) > 0:
			return fmt.Errorf("%s: %w", op.key, ErrExists)
		case op.kind == opUpdate && len(kvs) == 0:
			return fmt.Errorf("%s: %w", op.key, ErrNotFound)
		case op.kind == opUpdate && kvs[0].ModRevision != op.modRev:
			return fmt.Errorf("%s: %w", op.key, ErrConflict)
		}
	}
	return fmt.Errorf("txn: %w", ErrConflict)
}

// Types of WatchEvent.
const (
	EventPut    = "put"
	EventDelete = "delete"
	EventError  = "error"
)

// WatchEvent is one change seen by Watch. For a delete, KV holds the key and the
// revision of the delete, without a value. An EventError event carries Err and is the
// last event before the channel closes.
type WatchEvent struct {
	Type string
	KV   KV
	Err  error
}

// Watch sends the changes under prefix (a directory, as for List) from revision fromRev
// on (0: changes after now), in revision order, until ctx ends; the channel is then
// closed. Watch does not re-list by itself: when fromRev has been compacted away it sends
// an EventError event whose Err wraps ErrCompacted and closes the channel, and it does the
// same with the error when etcd cancels the watch for another reason (permission denied,
// or the member lost its leader: the watch requires one, so a partitioned member does not
// stall it silently) or the client is closed. The caller then re-reads with ListAll and watches again
// from its revision + 1. Lost connections are retried by the client without losing
// events. The caller must drain the channel or cancel ctx.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan WatchEvent {
	out := make(chan WatchEvent, 64)
	prefix, err := dirPrefix(prefix)
	if err != nil {
		go func() {
			defer close(out)
			send(ctx, out, WatchEvent{Type: EventError, Err: err})
		}()
		return out
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev))
	}
	// The watch gets its own context so that it is cancelled when this goroutine stops
	// for any reason, releasing the server-side watcher.
	wctx, cancel := context.WithCancel(ctx)
	wch := s.c.Watch(clientv3.WithRequireLeader(wctx), prefix, opts...)
	go func() {
		defer close(out)
		defer cancel()
		for {
			var (
				resp clientv3.WatchResponse
				ok   bool
			)
			select {
			case <-ctx.Done():
				return
			case resp, ok = <-wch:
			}
			if !ok {
				if ctx.Err() == nil {
					send(ctx, out, WatchEvent{Type: EventError, Err: fmt.Errorf("watch %s: watch closed (client closed?)", prefix)})
				}
				return
			}
			if resp.CompactRevision != 0 {
				send(ctx, out, WatchEvent{Type: EventError,
					Err: fmt.Errorf("watch %s from revision %d: %w (oldest kept revision is %d)", prefix, fromRev, ErrCompacted, resp.CompactRevision)})
				return
			}
			if err := resp.Err(); err != nil {
				if ctx.Err() == nil {
					send(ctx, out, WatchEvent{Type: EventError, Err: fmt.Errorf("watch %s: %w", prefix, err)})
				}
				return
			}
			for _, ev := range resp.Events {
				we := WatchEvent{Type: EventPut, KV: kvFrom(ev.Kv)}
				if ev.Type == clientv3.EventTypeDelete {
					we.Type = EventDelete
					we.KV.Value = nil
				}
				if !send(ctx, out, we) {
					return
				}
			}
		}
	}()
	return out
}

// send delivers ev unless ctx ends first, and reports whether it did.
func send(ctx context.Context, out chan<- WatchEvent, ev WatchEvent) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
