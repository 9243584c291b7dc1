package app

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/picketmon/picket/agentgw/agent"
)

const agentDescription = `Runs a Picket agent: it connects to a backend's agent gateway, sends keepalives, runs the
checks the backend requests and the standalone checks of its own configuration, and
serves the local agent API (POST /events, GET /healthz, GET /version) on api-host:api-port.
Results are kept in a durable queue under cache-dir until the backend has them.

Configuration is layered: defaults < config file (/etc/picket/agent.yml or -c FILE)
< environment (PICKET_AGENT_<KEY>, e.g. PICKET_AGENT_BACKEND_URL) < flags. Every key
below is also an agent.yml key of the same name. List values take a YAML array or a
space- or comma-separated string; labels and annotations take a YAML mapping or
key=value pairs (region=eu,team=ops). Durations take units (30s, 2m); the other
timeouts and intervals are whole seconds.

agent.yml may also list standalone checks under "checks:", run by the agent itself on
the same cadence grid as published checks (keyed <agent name>:<check name>), or on their
cron. Each is a check definition in the core/v2 shape, where "name" may stand for
metadata.name:

  checks:
    - name: load
      command: /usr/lib/nagios/plugins/check_load -w 4,3,2 -c 8,6,4
      interval: 10
      timeout: 5
    - name: nightly-backup
      command: /usr/local/bin/check-backup
      cron: "CRON_TZ=Europe/Berlin 30 2 * * *"

Examples:
  picket agent --backend-url ws://127.0.0.1:8081 --subscriptions linux
  picket agent -c /etc/picket/agent.yml
  PICKET_AGENT_BACKEND_URL="wss://b1:8081 wss://b2:8081" picket agent`

func runAgent(ctx context.Context, env *Env, args []string) error {
	fs := newModeFlags("agent", "agent [flags]", agentDescription, env)
	configFile := fs.StringP("config-file", "c", "", "config file to read (default /etc/picket/agent.yml when present)")
	addAgentFlags(fs)
	if err := parseModeFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (see 'picket agent --help')", fs.Arg(0))
	}
	cfg, err := loadAgentConfig(env, fs, *configFile)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(env.Stderr, cfg.LogLevel)
	if cfg.ConfigFile != "" {
		log.Info("configuration loaded", "file", cfg.ConfigFile)
	}
	warnAgentConfig(cfg, log)

	acfg := cfg.agentConfig()
	acfg.System = systemInfo()
	acfg.Logger = log.With("component", "agent")
	a := agent.New(acfg)

	start := time.Now()
	go func() {
		select {
		case <-a.Ready():
			log.Info("picket agent ready", "name", cfg.Name, "namespace", cfg.Namespace, "backends", cfg.BackendURLs,
				"took", time.Since(start).Round(time.Millisecond).String())
			notifySystemd("READY=1")
		case <-ctx.Done():
		}
	}()
	err = a.Run(ctx)
	notifySystemd("STOPPING=1")
	if err != nil {
		return err
	}
	log.Info("picket agent stopped")
	return nil
}

// warnAgentConfig logs what is allowed but probably a mistake.
func warnAgentConfig(cfg *AgentConfig, log *slog.Logger) {
	if cfg.Password == agent.DefaultPassword {
		log.Warn("the agent uses Sensu's well-known default password; set password (or PICKET_AGENT_PASSWORD) to the agent user's real one")
	}
	wss := false
	for _, u := range cfg.BackendURLs {
		if strings.HasPrefix(u, "wss://") {
			wss = true
		} else if !isLoopbackURL(strings.Replace(u, "ws://", "http://", 1)) {
			log.Warn("PLAINTEXT backend URL on a non-loopback address: the agent's credentials and events travel unencrypted; use wss://", "url", u)
		}
	}
	if !wss && (cfg.TrustedCAFile != "" || cfg.CertFile != "" || cfg.InsecureSkipTLSVerify) {
		log.Warn("TLS settings are given but no backend-url is wss://, so they are not used")
	}
	if cfg.InsecureSkipTLSVerify && wss {
		log.Warn("insecure-skip-tls-verify is set: the backend's certificate is not checked")
	}
}
