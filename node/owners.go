package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/etcdx"
)

// Agent results are stored by the server that holds the agent's session, which keeps
// each check's latest stored state in memory (stateCache). Writes of that cached state
// used to be conditioned, each, on the key's mod revision; that read is the largest
// single cost of etcd's apply loop at 20,000 events/s. Now the session's server owns
// the agent's events while the session lasts, and a write of a state it settled needs
// no condition of its own:
//
//   - A session claims its agent (ownerKey holds the session's ownerValue) before its
//     frames are read. Taking the claim over from another session, here or on another
//     server, bumps the events fence (etcdx.Fence).
//   - Every other write of an event bumps the fence in its own transaction: the API,
//     the keepalive and TTL monitors, deregistration, results for entities other than
//     the session's own agent, and a retry of the owner's write after its condition
//     failed (someone else wrote the key). A result for an entity no session claims
//     (a proxy, an agent not connected) checks instead that the claim does not exist
//     (etcdx.CondPut.Unclaimed), and bumps the fence only when it does.
//   - The owner's writes carry the claim as a condition unless they skip theirs (see
//     below); one refused for that alone (another session took the agent over) is
//     claimed back by the gateway's current session, or else written as another
//     writer's, bumping the fence.
//   - The owner's write of a state it holds settles when it commits while the fence
//     stands at a revision F and the claim is still the session's; later writes of that
//     key by the same session then carry no condition, and their grouped transaction
//     compares the fence to F once instead. Any write by someone else moves the fence,
//     which refuses that transaction; its writes are then committed with their own
//     conditions, as before.
//
// The Unclaimed shortcut rests on this: a claim is removed only by its own session when
// it ends, after its last event was stored (releaseAgent runs after the session's
// handlers are done), or together with a bump of the fence (deregistration, a
// takeover). A new claim gives a new session, which never skips on another session's
// settled state (stateEntry.settledBy).

// ownerKey is the claim on an agent's events.
func ownerKey(ns, name string) string { return etcdx.Key("owners", ns, name) }

// ownerValue is what the claim of session id holds: unique to this process and session.
func (n *Node) ownerValue(id uint64) []byte {
	return strconv.AppendUint([]byte(n.ownerPrefix), id, 10)
}

// newOwnerPrefix starts the claims of this process: its server's name and a random
// nonce, so a restarted server's claims differ from those it left behind.
func newOwnerPrefix(name string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return name + "/" + hex.EncodeToString(b) + "/"
}

// claimAgent records that session from owns its agent's events, and moves the fence
// when another session held them.
func (n *Node) claimAgent(ctx context.Context, from agentgw.Origin) error {
	return n.claim(ctx, from, true)
}

// errClaimed reports a claim held by a session of another server.
var errClaimed = errors.New("claimed by a session on another server")

// reclaimAgent claims the agent's events back for session from when no session holds
// them or another session of this process does; a claim held by another server's
// session is left to it (errClaimed).
func (n *Node) reclaimAgent(ctx context.Context, from agentgw.Origin) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return n.claim(ctx, from, false)
}

func (n *Node) claim(ctx context.Context, from agentgw.Origin, steal bool) error {
	key, val := ownerKey(from.Namespace, from.Agent), string(n.ownerValue(from.Session))
	for attempt := 0; attempt < 8; attempt++ {
		resp, err := n.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return fmt.Errorf("claim agent %s/%s: %w", from.Namespace, from.Agent, err)
		}
		if resp.Succeeded {
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		switch {
		case len(kvs) == 0:
			continue // released in between
		case string(kvs[0].Value) == val:
			return nil // already ours
		case !steal && !strings.HasPrefix(string(kvs[0].Value), n.ownerPrefix):
			return fmt.Errorf("agent %s/%s: %w", from.Namespace, from.Agent, errClaimed)
		}
		resp, err = n.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, val), n.fence.BumpOp()).
			Commit()
		if err != nil {
			return fmt.Errorf("claim agent %s/%s: %w", from.Namespace, from.Agent, err)
		}
		if resp.Succeeded {
			n.fence.Observe(resp.Header.Revision)
			return nil
		}
	}
	return fmt.Errorf("claim agent %s/%s: %w", from.Namespace, from.Agent, etcdx.ErrConflict)
}

// releaseAgent removes session from's claim, if it still holds it. A claim left behind
// (the server stopped first) costs the next session a move of the fence, nothing more.
func (n *Node) releaseAgent(from agentgw.Origin) {
	select {
	case <-n.stop:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	key := ownerKey(from.Namespace, from.Agent)
	_, err := n.client.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", string(n.ownerValue(from.Session)))).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		n.log.Debug("release agent claim", "agent", from.Agent, "namespace", from.Namespace, "err", err)
	}
}
