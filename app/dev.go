package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/picketmon/picket/agentgw/agent"
	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node"
)

// devExampleCheck is the check a dev server creates for its own agent: a real Nagios
// plugin when one is installed, a shell command otherwise.
func devExampleCheck() *events.CheckConfig {
	chk := &events.CheckConfig{
		Command:       `echo "picket dev check: OK"`,
		Interval:      10,
		Publish:       true,
		Subscriptions: []string{"dev"},
		Handlers:      []string{},
	}
	if p := "/usr/lib/nagios/plugins/check_load"; fileExists(p) {
		chk.Command = p + " -w 8,6,4 -c 16,12,8"
	}
	chk.Metadata = events.ObjectMeta{Name: "dev-example", Namespace: "default", CreatedBy: "admin"}
	return chk
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// devAgent runs the dev server's own agent in-process until ctx ends. It returns the
// agent's name and a function that waits for it to stop.
func devAgent(ctx context.Context, n *node.Node, stateDir, agentPassword string, log *slog.Logger) (string, string, func(), error) {
	chk := devExampleCheck()
	if _, err := etcdx.PutJSON(ctx, n.Store(), etcdx.Key("checks", "default", chk.Metadata.Name), chk); err != nil {
		return "", "", nil, fmt.Errorf("create example check: %w", err)
	}
	url := strings.NewReplacer("[::]", "127.0.0.1", "0.0.0.0", "127.0.0.1").Replace(n.AgentURL())
	cfg := agent.Config{
		Name:          "dev-agent",
		Namespace:     "default",
		Subscriptions: []string{"dev"},
		User:          "agent",
		Password:      agentPassword,
		BackendURLs:   []string{url},
		CacheDir:      filepath.Join(stateDir, "..", "agent-cache"),
		APIHost:       "127.0.0.1",
		APIPort:       3031,
		System:        systemInfo(),
		Version:       Version(),
		Logger:        log.With("component", "dev-agent"),
	}
	api := "http://127.0.0.1:3031"
	// The local agent API is a convenience here; a busy port must not stop the demo.
	if l, err := net.Listen("tcp", "127.0.0.1:3031"); err != nil {
		cfg.DisableAPI = true
		api = "off (127.0.0.1:3031 is in use)"
	} else {
		l.Close()
	}
	a := agent.New(cfg)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("dev agent stopped", "err", err)
		}
	}()
	return cfg.Name, api, wg.Wait, nil
}
