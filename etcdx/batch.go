package etcdx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// CondPut is one write of a grouped commit: put Value at Key if the key's mod revision
// is still ModRev (0: the key must not exist; -1: unconditional). Other writes of the
// same group commit regardless of this one's condition.
type CondPut struct {
	Key    string
	Value  []byte
	ModRev int64
	// Compress tells that Value is plain and is to be stored compressed (Compress). The
	// batcher compresses the values of a transaction one after the other in the
	// goroutine that commits it, where S2's 64 KB hash table, cleared for every value,
	// stays in the CPU's cache; cleared instead in each of hundreds of writers' stacks
	// it missed the cache and cost twice the compression itself (BENCHMARKS.md,
	// sixteenth session). The batcher keeps Value's memory from then on.
	Compress bool
	// Extra are unconditional puts committed with this write (and only with it).
	Extra []Write

	// Fence, when nonzero, is the revision of the Batcher's Fence (Fence.Current) the
	// writer saw: the write is its keys' owner's, and settles under it when it commits in
	// a transaction that compared the fence (CondResult.Settled).
	Fence int64
	// Skip tells that the writer's copy of the key settled under Fence: a transaction
	// that compares the fence to Fence drops this write's own conditions.
	Skip bool
	// Owner and OwnerValue, when Owner is set, are a second condition of the write: the
	// key Owner holds OwnerValue (the writer still owns the keys it writes without
	// moving the fence). CondResult.NotOwner reports a write refused for that alone.
	Owner      string
	OwnerValue []byte
	// Unclaimed, when set, is a condition for a writer that owns nothing: the key
	// Unclaimed does not exist (no one's writes of these keys skip their conditions). A
	// write refused for that alone is reported as CondResult.NotOwner too.
	Unclaimed string
}

// Write is an unconditional put of Value at Key.
type Write struct {
	Key   string
	Value []byte
}

// Op is w as a clientv3 operation.
func (w Write) Op() clientv3.Op { return clientv3.OpPut(w.Key, string(w.Value)) }

// TxnFunc commits one etcd transaction: ClientTxn's through a client, or an embedded
// member's Embedded.ServerTxn by direct calls.
type TxnFunc func(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)

// ClientTxn commits transactions through c's connection (its TLS, auth token and
// retry settings included), with the call options clientv3 gives its own: wait for a
// ready connection rather than fail during a reconnect, send up to 2 MiB, receive any
// size (a nested commit returns the current values of the keys whose conditions failed).
func ClientTxn(c *clientv3.Client) TxnFunc {
	kv := pb.NewKVClient(c.ActiveConnection())
	opts := []grpc.CallOption{grpc.WaitForReady(true), grpc.MaxCallSendMsgSize(2 << 20), grpc.MaxCallRecvMsgSize(math.MaxInt32)}
	return func(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
		return kv.Txn(ctx, r, opts...)
	}
}

// CondResult is the outcome of one CondPut.
type CondResult struct {
	// Written is false when the condition failed; Current then holds the key's value
	// and mod revision as they are (Current.ModRevision 0: the key does not exist).
	Written bool
	// Rev is the mod revision of the write when Written.
	Rev     int64
	Current KV
	// Settled, when nonzero, is the fence revision the write settled under: it was
	// committed while the fence stood there, by the owner (see CondPut.Fence).
	Settled int64
	// NotOwner is true when the write was refused because its Owner condition failed
	// while its own condition held.
	NotOwner bool
}

// BatchStats are a Batcher's counters.
type BatchStats struct {
	Commits, Writes int64
	// Skipped counts the writes committed without their own condition (CondPut.Skip);
	// Fenced counts the transactions refused because the fence had moved (their writes
	// were then committed with their own conditions).
	Skipped, Fenced int64
}

// Batcher groups many concurrent writes into few etcd transactions, so the cost per
// write is far below one raft round trip. Each write is a nested transaction whose
// condition is checked on its own, so writers keep compare-and-swap semantics: no
// write silently overwrites a value its writer did not read. A write returns only
// after its transaction committed.
type Batcher struct {
	txnFn    TxnFunc
	maxOps   int
	maxDelay time.Duration
	in       chan *batchReq
	fence    *Fence
	wg       sync.WaitGroup
	stop     chan struct{}
	once     sync.Once

	mu    sync.Mutex
	stats BatchStats
}

type batchReq struct {
	put  CondPut
	done chan batchDone
}

type batchDone struct {
	res CondResult
	err error
}

// NewBatcher starts workers committers that each gather up to maxOps etcd operations
// (the server's max-txn-ops; etcd's default is 128) or wait at most maxDelay for more,
// and commit them through txn. The requests are built as etcd's own protobuf messages:
// a grouped transaction carries hundreds of event-sized values, and clientv3's
// operations would copy each value into a string and convert every operation again.
func NewBatcher(txn TxnFunc, workers, maxOps int, maxDelay time.Duration) *Batcher {
	if workers < 1 {
		workers = 1
	}
	if maxOps < 4 {
		maxOps = 4
	}
	b := &Batcher{txnFn: txn, maxOps: maxOps, maxDelay: maxDelay, in: make(chan *batchReq, 4*maxOps), stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

// SetFence makes b compare f once per transaction for the writes that carry its
// revision (CondPut.Fence); call it before the first Put.
func (b *Batcher) SetFence(f *Fence) { b.fence = f }

// The settings a server gives its event Batcher: EmbeddedBatchOps operations per
// transaction with an embedded member (which accepts DefaultMaxTxnOps), etcd's default
// limit of ExternalBatchOps with an external cluster.
const (
	BatchWorkers     = 6
	BatchDelay       = 5 * time.Millisecond
	EmbeddedBatchOps = 400
	ExternalBatchOps = 128
)

// ErrBatcherClosed is returned for writes submitted after Close.
var ErrBatcherClosed = errors.New("batcher closed")

// Put submits one conditional write and waits until it committed or failed.
func (b *Batcher) Put(ctx context.Context, p CondPut) (CondResult, error) {
	if p.Compress && len(p.Value) > compressLater {
		// A large value is compressed now: its size then counts as stored, and the
		// cache matters little next to its length.
		p.Value, p.Compress = Compress(p.Value), false
	}
	if n := sizeOf(p); n > MaxBatchBytes {
		return CondResult{}, fmt.Errorf("%s (%d bytes, limit %d): %w", p.Key, n, MaxBatchBytes, ErrTooLarge)
	}
	r := &batchReq{put: p, done: make(chan batchDone, 1)}
	select {
	case b.in <- r:
	case <-b.stop:
		return CondResult{}, ErrBatcherClosed
	case <-ctx.Done():
		return CondResult{}, ctx.Err()
	}
	// Once queued the write may commit; wait for the outcome even if ctx ends, so a
	// caller never reports a write as failed that was in fact stored.
	d := <-r.done
	return d.res, d.err
}

// Stats returns how many transactions and writes were committed.
func (b *Batcher) Stats() BatchStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Close stops the workers after the queued writes are committed.
func (b *Batcher) Close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}

// opsOf counts a write's operations in a transaction: its conditions, its put and its
// extras. One more is kept for the fence's condition.
func opsOf(p CondPut) int {
	n := 2 + len(p.Extra)
	if p.Owner != "" || p.Unclaimed != "" {
		n++
	}
	return n
}

// compressLater is the largest plain value of a CondPut with Compress that the batcher
// compresses when it commits; until then the plain size counts towards MaxBatchBytes.
const compressLater = 16 << 10

// MaxBatchBytes bounds one grouped transaction: etcd refuses requests over 1.5 MiB by
// default, and one refused transaction would fail every write in it.
const MaxBatchBytes = 1 << 20

// ErrTooLarge reports a single write larger than MaxBatchBytes.
var ErrTooLarge = errors.New("write is too large for one etcd transaction")

// sizeOf estimates the bytes a write adds to a transaction.
func sizeOf(p CondPut) int {
	n := 2*len(p.Key) + len(p.Value) + 64 + len(p.Owner) + len(p.OwnerValue) + len(p.Unclaimed)
	for _, w := range p.Extra {
		n += len(w.Key) + len(w.Value) + 16
	}
	return n
}

// keysOf lists every key a write touches; etcd refuses a transaction that writes one
// key twice.
func keysOf(p CondPut) []string {
	keys := []string{p.Key}
	for _, w := range p.Extra {
		keys = append(keys, w.Key)
	}
	return keys
}

func overlaps(seen map[string]bool, keys []string) bool {
	for _, k := range keys {
		if seen[k] {
			return true
		}
	}
	return false
}

func (b *Batcher) loop() {
	defer b.wg.Done()
	for {
		var first *batchReq
		select {
		case first = <-b.in:
		case <-b.stop:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-b.in:
					b.commit([]*batchReq{r})
				default:
					return
				}
			}
		}
		batch := []*batchReq{first}
		keys := map[string]bool{}
		for _, k := range keysOf(first.put) {
			keys[k] = true
		}
		ops := opsOf(first.put)
		size := sizeOf(first.put)
		timer := time.NewTimer(b.maxDelay)
	gather:
		for ops < b.maxOps-1 {
			select {
			case r := <-b.in:
				rk := keysOf(r.put)
				if overlaps(keys, rk) || ops+opsOf(r.put) > b.maxOps-1 || size+sizeOf(r.put) > MaxBatchBytes {
					// The same key twice in one transaction is refused by etcd: commit
					// what we have, then this one.
					b.commit(batch)
					batch, keys, ops, size = nil, map[string]bool{}, 0, 0
				}
				batch = append(batch, r)
				for _, k := range rk {
					keys[k] = true
				}
				ops += opsOf(r.put)
				size += sizeOf(r.put)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		b.commit(batch)
	}
}

func (b *Batcher) commit(batch []*batchReq) {
	if len(batch) == 0 {
		return
	}
	for _, r := range batch {
		if r.put.Compress {
			r.put.Value, r.put.Compress = Compress(r.put.Value), false
		}
	}
	// A single write goes flat too when it carries the fence: it settles only so.
	if (len(batch) > 1 || (b.fence != nil && batch[0].put.Fence > 0)) && b.commitFlat(batch) {
		return
	}
	b.commitNested(batch)
}

// commitFlat tries batch as one flat transaction: every write's conditions in the If,
// every put in the Then. etcd applies that for about two thirds of the cost of one
// nested transaction per write, and the conditions hold nearly always (the writers read
// what they overwrite). It reports false, having written nothing, when a condition
// failed; the caller then commits the batch in nested transactions, which settles each
// write on its own. An error fails every write of the batch, as in commitNested.
//
// Writes that carry the fence's revision (CondPut.Fence) add one condition for the
// transaction: the fence key is still at the highest revision they carry. Those of
// them settled under it (CondPut.Skip) then need no condition of their own, and all of
// them settle under it.
func (b *Batcher) commitFlat(batch []*batchReq) bool {
	n := 0
	var fence int64
	for _, r := range batch {
		n += 1 + len(r.put.Extra)
		if b.fence != nil {
			fence = max(fence, r.put.Fence)
		}
	}
	cmps := make([]*pb.Compare, 0, len(batch)+1)
	then := make([]*pb.RequestOp, 0, n)
	skipped := 0
	var owners map[string]bool // owner conditions already in cmps
	for _, r := range batch {
		if fence > 0 && r.put.Skip && r.put.Fence == fence {
			skipped++
		} else {
			if r.put.ModRev >= 0 {
				cmps = append(cmps, modRevIs(r.put))
			}
			if r.put.Owner != "" || r.put.Unclaimed != "" {
				ok := r.put.Owner + "\x00" + string(r.put.OwnerValue) + "\x00" + r.put.Unclaimed
				if !owners[ok] {
					if owners == nil {
						owners = map[string]bool{}
					}
					owners[ok] = true
					cmps = append(cmps, ownerIs(r.put))
				}
			}
		}
		then = appendWriteOps(then, r.put)
	}
	var orElse []*pb.RequestOp
	if fence > 0 {
		cmps = append(cmps, &pb.Compare{Key: []byte(b.fence.Key), Result: pb.Compare_EQUAL, Target: pb.Compare_MOD,
			TargetUnion: &pb.Compare_ModRevision{ModRevision: fence}})
		// Refused, it answers where the fence stands now.
		orElse = []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(b.fence.Key), KeysOnly: true}}}}
	}
	resp, ok := b.txnElse(batch, cmps, then, orElse)
	if !ok {
		return true // failed: every write was told, none is retried (it may have applied)
	}
	if !resp.Succeeded {
		if fence > 0 && len(resp.Responses) > 0 {
			kvs := resp.Responses[0].GetResponseRange().GetKvs()
			switch {
			case len(kvs) == 0:
				b.fence.Lost(fence) // deleted: unknown until it is created again
				b.count(func(s *BatchStats) { s.Fenced++ })
			case kvs[0].ModRevision != fence:
				b.fence.Observe(kvs[0].ModRevision)
				b.count(func(s *BatchStats) { s.Fenced++ })
			}
		}
		return false
	}
	if skipped > 0 {
		b.count(func(s *BatchStats) { s.Skipped += int64(skipped) })
	}
	for _, r := range batch {
		res := CondResult{Written: true, Rev: resp.Header.Revision}
		// Settled: skipped under this fence, or committed on its owner condition.
		if fence > 0 && r.put.Fence > 0 && ((r.put.Skip && r.put.Fence == fence) || r.put.Owner != "") {
			res.Settled = fence
		}
		r.done <- batchDone{res: res}
	}
	return true
}

// ownerIs is the owner condition of p: its Owner holds its OwnerValue, or its
// Unclaimed key does not exist.
func ownerIs(p CondPut) *pb.Compare {
	if p.Owner == "" {
		return &pb.Compare{Key: []byte(p.Unclaimed), Result: pb.Compare_EQUAL, Target: pb.Compare_CREATE,
			TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}}
	}
	return &pb.Compare{Key: []byte(p.Owner), Result: pb.Compare_EQUAL, Target: pb.Compare_VALUE,
		TargetUnion: &pb.Compare_Value{Value: p.OwnerValue}}
}

// commitNested commits batch as one transaction of nested transactions, each with its
// own conditions, so each write succeeds or fails on its own.
func (b *Batcher) commitNested(batch []*batchReq) {
	ops := make([]*pb.RequestOp, 0, len(batch))
	for _, r := range batch {
		p := r.put
		t := &pb.TxnRequest{Success: appendWriteOps(nil, p)}
		if p.ModRev >= 0 || p.Owner != "" || p.Unclaimed != "" {
			t.Failure = []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(p.Key)}}}}
		}
		if p.ModRev >= 0 {
			t.Compare = append(t.Compare, modRevIs(p))
		}
		if p.Owner != "" || p.Unclaimed != "" {
			t.Compare = append(t.Compare, ownerIs(p))
		}
		ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}})
	}
	resp, ok := b.txn(batch, nil, ops)
	if !ok {
		return
	}
	for i, r := range batch {
		tr := resp.Responses[i].GetResponseTxn()
		if tr.GetSucceeded() {
			r.done <- batchDone{res: CondResult{Written: true, Rev: resp.Header.Revision}}
			continue
		}
		cur := KV{Key: r.put.Key}
		if rr := tr.GetResponses(); len(rr) > 0 {
			if kvs := rr[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
				cur = kvFrom(kvs[0])
			}
		}
		res := CondResult{Current: cur}
		if r.put.ModRev < 0 || cur.ModRevision == r.put.ModRev {
			// The key is as the writer read it: only the owner condition failed.
			res = CondResult{NotOwner: true}
		}
		r.done <- batchDone{res: res}
	}
}

// txn commits one transaction for batch and counts it. When the commit fails it tells
// every write of the batch and reports false.
func (b *Batcher) txn(batch []*batchReq, cmps []*pb.Compare, then []*pb.RequestOp) (*pb.TxnResponse, bool) {
	return b.txnElse(batch, cmps, then, nil)
}

// txnElse is txn with operations for when the conditions fail.
func (b *Batcher) txnElse(batch []*batchReq, cmps []*pb.Compare, then, orElse []*pb.RequestOp) (*pb.TxnResponse, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	resp, err := b.txnFn(ctx, &pb.TxnRequest{Compare: cmps, Success: then, Failure: orElse})
	if err != nil {
		// As clientv3 reports them: etcd's own errors (rpctypes), or the context's.
		err = clientv3.ContextError(ctx, err)
	}
	cancel()
	if err != nil {
		err = fmt.Errorf("grouped commit of %d writes: %w", len(batch), err)
		for _, r := range batch {
			r.done <- batchDone{err: err}
		}
		return nil, false
	}
	if resp.Succeeded {
		b.count(func(s *BatchStats) { s.Commits++; s.Writes += int64(len(batch)) })
	}
	return resp, true
}

func (b *Batcher) count(f func(*BatchStats)) {
	b.mu.Lock()
	f(&b.stats)
	b.mu.Unlock()
}

// appendWriteOps appends the puts of one write to ops: its key, then its extras. The
// values are not copied: a write's value is not changed once submitted.
func appendWriteOps(ops []*pb.RequestOp, p CondPut) []*pb.RequestOp {
	ops = append(ops, putOp(p.Key, p.Value))
	for _, w := range p.Extra {
		ops = append(ops, putOp(w.Key, w.Value))
	}
	return ops
}

func putOp(key string, val []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: val}}}
}

// modRevIs is the condition of one write.
func modRevIs(p CondPut) *pb.Compare {
	return &pb.Compare{Key: []byte(p.Key), Result: pb.Compare_EQUAL, Target: pb.Compare_MOD,
		TargetUnion: &pb.Compare_ModRevision{ModRevision: p.ModRev}}
}
