package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/picketmon/picket/agentgw"
	"github.com/picketmon/picket/events"
)

// Reasons a check request is not run.
var (
	errStale   = errors.New("not newer than the last run of this check")
	errRunning = errors.New("the check is still running")
)

// claim decides whether a run of check issued at issued may start, and if so marks the
// check running and remembers issued. Requests not newer than the last run (duplicates
// delivered twice, or stale ones) and requests for a running check are refused.
func (a *Agent) claim(check string, issued int64) error {
	a.checksMu.Lock()
	defer a.checksMu.Unlock()
	if a.running[check] {
		return errRunning
	}
	if last, ok := a.lastRun[check]; ok && issued <= last {
		return errStale
	}
	a.running[check] = true
	a.lastRun[check] = issued
	return nil
}

func (a *Agent) release(check string) {
	a.checksMu.Lock()
	defer a.checksMu.Unlock()
	delete(a.running, check)
}

// handleRequest runs a check request from the backend in the background.
// Checks run under the agent's context, not the session's: a result of a check that
// outlives its session is queued and sent on the next one.
func (a *Agent) handleRequest(req *agentgw.CheckRequest) {
	ctx := a.runCtx
	cfg := *req.Config
	name := cfg.Metadata.Name
	if name == "" || cfg.Command == "" {
		a.log.Warn("check request without a name or command dropped", "check", name)
		return
	}
	if err := a.claim(name, req.Issued); err != nil {
		a.log.Info("check request dropped", "check", name, "issued", req.Issued, "reason", err.Error())
		return
	}
	a.checksWG.Add(1)
	go func() {
		defer a.checksWG.Done()
		defer a.release(name)
		a.execute(ctx, cfg, req.Issued, req.Hooks...)
	}()
}

// execute runs a check, then the hooks its check_hooks select for the result's status
// (their definitions come with the check request), and queues the result. A run cut
// short by the agent shutting down reports nothing.
func (a *Agent) execute(ctx context.Context, cfg events.CheckConfig, issued int64, hooks ...events.HookConfig) {
	if cfg.Metadata.Namespace == "" {
		cfg.Metadata.Namespace = a.cfg.Namespace
	}
	chk := events.NewCheck(cfg)
	chk.Issued = issued
	ev := &events.Event{Entity: a.entity.Entity(), Check: chk}
	ev.Metadata.Namespace = a.cfg.Namespace

	// Tokens such as {{ .name }} or {{ .labels.disk | default "80" }} take the agent's
	// entity's values, as a Sensu agent substitutes them before it runs the check. A
	// token without a value fails the check with status 3 and says why.
	entity := events.Synthesize(ev.Entity) // for the check's tokens and its hooks
	command, err := events.SubstituteTokens(cfg.Command, entity)
	if err != nil {
		chk.Executed, chk.Status = time.Now().Unix(), uint32(events.StatusUnknown)
		chk.Output = fmt.Sprintf("error while substituting check tokens: %v", err)
		ev.Timestamp = chk.Executed
		if err := a.enqueue(ev); err != nil {
			a.log.Error("check result lost: cannot queue it", "check", cfg.Metadata.Name, "err", err)
		}
		return
	}
	chk.Command = command // the event shows the command that ran, as Sensu's does
	spec := events.CommandSpec{
		Command:   command,
		Env:       cfg.EnvVars,
		Timeout:   time.Duration(cfg.Timeout) * time.Second,
		MaxOutput: int(cfg.MaxOutputSize),
	}
	if cfg.Stdin {
		b, err := json.Marshal(ev)
		if err != nil {
			a.log.Error("encode check stdin", "check", cfg.Metadata.Name, "err", err)
			return
		}
		spec.Stdin = b
	}
	start := time.Now()
	res := events.RunCommand(ctx, spec)
	if ctx.Err() != nil {
		return
	}
	chk.Executed = start.Unix()
	chk.Duration = res.Duration.Seconds()
	chk.Status = uint32(res.Status)
	chk.Output = res.Output
	if res.Err != nil {
		chk.Output = fmt.Sprintf("failed to run check %q: %v", cfg.Metadata.Name, res.Err)
		chk.Status = uint32(events.StatusUnknown)
	}
	if cfg.DiscardOutput {
		chk.Output = ""
	}
	if names := events.HookNames(cfg.CheckHooks, chk.Status); len(names) > 0 {
		chk.Hooks = a.runHooks(ctx, ev, entity, names, hooks, issued)
		if ctx.Err() != nil {
			return
		}
	}
	ev.Timestamp = time.Now().Unix()
	ev.Entity = a.entity.Entity()
	if err := a.enqueue(ev); err != nil {
		a.log.Error("check result lost: cannot queue it", "check", cfg.Metadata.Name, "err", err)
		return
	}
	a.log.Debug("check ran", "check", cfg.Metadata.Name, "status", chk.Status, "duration", res.Duration)
}

// defaultHookTimeout is a hook's timeout when its definition sets none, as in Sensu.
const defaultHookTimeout = 60 * time.Second

// runHooks runs the named hooks one after another for ev, whose check has just run, and
// returns their results. A hook without a definition in the request is logged and left
// out. Tokens in a hook's command take their values from entity (ev's entity as
// events.Synthesize presents it), as the check's command did; a hook whose tokens have
// no value does not run and reports status 3 and why.
func (a *Agent) runHooks(ctx context.Context, ev *events.Event, entity map[string]any, names []string, defs []events.HookConfig, issued int64) []events.Hook {
	var out []events.Hook
	stdin := sync.OnceValues(func() ([]byte, error) { return json.Marshal(ev) }) // ev does not change here
	for _, name := range names {
		i := slices.IndexFunc(defs, func(h events.HookConfig) bool { return h.Metadata.Name == name })
		if i < 0 {
			a.log.Warn("check hook not run: the check request carries no definition of it", "check", ev.Check.Metadata.Name, "hook", name)
			continue
		}
		def := defs[i]
		command, err := events.SubstituteTokens(def.Command, entity)
		if err != nil {
			out = append(out, events.Hook{HookConfig: def, Executed: time.Now().Unix(), Issued: issued,
				Output: fmt.Sprintf("error while substituting hook tokens: %v", err), Status: int32(events.StatusUnknown)})
			a.log.Warn("check hook not run: its tokens have no value", "check", ev.Check.Metadata.Name, "hook", name, "err", err)
			continue
		}
		def.Command = command
		spec := events.CommandSpec{Command: def.Command, Timeout: time.Duration(def.Timeout) * time.Second, MaxOutput: int(ev.Check.MaxOutputSize)}
		if def.Timeout == 0 {
			spec.Timeout = defaultHookTimeout
		}
		if def.Stdin {
			b, err := stdin()
			if err != nil {
				a.log.Error("encode hook stdin", "hook", name, "err", err)
				continue
			}
			spec.Stdin = b
		}
		start := time.Now()
		res := events.RunCommand(ctx, spec)
		if ctx.Err() != nil {
			return out
		}
		h := events.Hook{HookConfig: def, Executed: start.Unix(), Issued: issued, Duration: res.Duration.Seconds(), Output: res.Output, Status: int32(res.Status)}
		if res.Err != nil {
			h.Output = fmt.Sprintf("failed to run hook %q: %v", name, res.Err)
			h.Status = int32(events.StatusUnknown)
		}
		out = append(out, h)
		a.log.Debug("check hook ran", "check", ev.Check.Metadata.Name, "hook", name, "status", h.Status)
	}
	return out
}

// runStandalone runs a check of the agent's own configuration on its cadence until ctx
// ends: on the grid of events.NextRun keyed agentname:checkname, or on its cron.
func (a *Agent) runStandalone(ctx context.Context, cfg events.CheckConfig) {
	name := cfg.Metadata.Name
	key := events.AgentCheckKey(a.cfg.Name, name)
	interval := time.Duration(cfg.Interval) * time.Second
	var next func(time.Time) time.Time
	if strings.TrimSpace(cfg.Cron) != "" {
		sched, err := events.ParseCron(cfg.Cron)
		if err != nil {
			a.log.Error("standalone check not scheduled", "check", name, "err", err)
			return
		}
		next = sched.Next
	} else if interval > 0 {
		next = func(t time.Time) time.Time { return events.NextRun(key, interval, t) }
	} else {
		a.log.Error("standalone check not scheduled: it needs an interval or a cron", "check", name)
		return
	}
	at := next(time.Now())
	for {
		if at.IsZero() {
			a.log.Warn("standalone check never runs again: its cron does not fire", "check", name)
			return
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := a.claim(key, at.Unix()); err != nil {
			a.log.Info("standalone check run skipped", "check", name, "reason", err.Error())
		} else {
			a.checksWG.Add(1)
			go func(issued int64) {
				defer a.checksWG.Done()
				defer a.release(key)
				a.execute(ctx, cfg, issued)
			}(at.Unix())
		}
		// Computed from the clock and past the run just started, so late wake-ups skip
		// rather than bunch up and the grid never drifts.
		after := time.Now()
		if !after.After(at) {
			after = at.Add(time.Nanosecond)
		}
		at = next(after)
	}
}
