package node

import (
	"encoding/json"
	"sort"
	"sync"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// hookCache holds the stored hook definitions, kept in step with etcd like the
// pipeline's definitions (pipelineState.load and follow), so the scheduler reads a
// check's hooks from memory on every tick.
type hookCache struct {
	mu    sync.RWMutex
	byKey map[string]events.HookConfig
}

func (c *hookCache) reset() {
	c.mu.Lock()
	c.byKey = map[string]events.HookConfig{}
	c.mu.Unlock()
}

func (c *hookCache) put(kv etcdx.KV) {
	var h events.HookConfig
	if json.Unmarshal(kv.Value, &h) != nil {
		c.delete(kv.Key) // unreadable: as if absent, which the scheduler logs
		return
	}
	c.mu.Lock()
	c.byKey[kv.Key] = h
	c.mu.Unlock()
}

func (c *hookCache) delete(key string) {
	c.mu.Lock()
	delete(c.byKey, key)
	c.mu.Unlock()
}

// checkHooks returns the definitions of the hooks chk's check_hooks name, which its
// check requests carry for the agent to run, sorted by name. A hook that is not defined
// is logged and left out; the agent runs the others.
func (n *Node) checkHooks(chk *events.CheckConfig) []events.HookConfig {
	hooks := []events.HookConfig{}
	c := n.pipe.hooks
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, name := range events.AllHookNames(chk.CheckHooks) {
		h, ok := c.byKey[etcdx.Key("hooks", chk.Metadata.Namespace, name)]
		if !ok {
			n.log.Warn("check request sent without a hook of its check", "check", chk.Metadata.Name, "namespace", chk.Metadata.Namespace,
				"hook", name, "err", "no such hook")
			continue
		}
		hooks = append(hooks, h)
	}
	sort.Slice(hooks, func(i, j int) bool { return hooks[i].Metadata.Name < hooks[j].Metadata.Name })
	return hooks
}
