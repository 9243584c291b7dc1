package events

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dop251/goja"
)

// Built-in mutators, which a handler may name without defining them.
const (
	MutatorJSON            = "json"
	MutatorOnlyCheckOutput = "only_check_output"
)

// DefaultCommandTimeout bounds pipe handlers and pipe mutators, and the socket writes of
// tcp and udp handlers, that set no timeout of their own (Sensu's default of 60 s).
const DefaultCommandTimeout = 60 * time.Second

// mutatorDef is a mutator ready to run, with its script compiled once.
type mutatorDef struct {
	def  *Mutator
	prog *goja.Program
	err  error
	pool sync.Pool
}

// compileMutatorScript compiles a javascript mutator's eval, a function body that sees
// the event as `event` and returns the handler's input: a string as it is, anything else
// as JSON, and nothing (undefined or null) the event itself, as it may have changed it.
func compileMutatorScript(eval string) (*goja.Program, error) {
	src := "(function(){ var __r = (function(){\n" + eval +
		"\n})(); if (__r === undefined || __r === null) { __r = event; }" +
		" return typeof __r === 'string' ? __r : JSON.stringify(__r); })()"
	p, err := goja.Compile("eval", src, true)
	if err != nil {
		return nil, cleanJSError(err, jsPlace{src: eval, line: 1}, "script")
	}
	return p, nil
}

func newMutatorDef(m *Mutator) *mutatorDef {
	md := &mutatorDef{def: m}
	if m.Type == MutatorJavaScript {
		md.prog, md.err = compileMutatorScript(m.Eval)
		md.pool.New = func() any { return newRuntime() }
	}
	return md
}

// MutatorError is a mutator that failed; the handler does not run.
type MutatorError struct {
	Mutator string
	Err     error
}

func (e *MutatorError) Error() string { return fmt.Sprintf("mutator %s: %v", e.Mutator, e.Err) }
func (e *MutatorError) Unwrap() error { return e.Err }

// mutate runs m (nil: the built-in json, or the built-in named name) on ev and returns
// the handler's input. enc encodes ev (ev.MarshalJSON, or its result shared by the
// event's handlers); the returned bytes may be shared and must not be changed.
func (md *mutatorDef) mutate(ctx context.Context, name string, ev *Event, enc func() ([]byte, error)) ([]byte, error) {
	if md == nil {
		switch name {
		case "", MutatorJSON:
			return enc()
		case MutatorOnlyCheckOutput:
			if ev.Check == nil {
				return []byte{}, nil
			}
			return []byte(ev.Check.Output), nil
		}
		return nil, &MutatorError{Mutator: name, Err: fmt.Errorf("mutator %s does not exist in namespace %s", name, namespaceOf(ev))}
	}
	if md.err != nil {
		return nil, &MutatorError{Mutator: name, Err: fmt.Errorf("does not compile: %w", md.err)}
	}
	switch md.def.Type {
	case MutatorJavaScript:
		vm := md.pool.Get().(*goja.Runtime)
		defer md.pool.Put(vm)
		if err := vm.Set("event", Synthesize(ev)); err != nil {
			return nil, &MutatorError{Mutator: name, Err: err}
		}
		v, err := runGuarded(vm, md.prog)
		if err != nil {
			return nil, &MutatorError{Mutator: name, Err: err}
		}
		return []byte(v.String()), nil
	default:
		in, err := enc()
		if err != nil {
			return nil, &MutatorError{Mutator: name, Err: err}
		}
		var stderr bytes.Buffer
		res := RunCommand(ctx, CommandSpec{
			Command: md.def.Command, Env: md.def.EnvVars, Stdin: in,
			Timeout: timeoutOf(md.def.Timeout), Stderr: &stderr,
		})
		switch {
		case res.Err != nil:
			return nil, &MutatorError{Mutator: name, Err: res.Err}
		case res.TimedOut:
			return nil, &MutatorError{Mutator: name, Err: fmt.Errorf("timed out after %s", timeoutOf(md.def.Timeout))}
		case res.Status != 0:
			return nil, &MutatorError{Mutator: name, Err: fmt.Errorf("exit status %d: %s", res.Status, strings.TrimSpace(capText(stderr.String(), 512)))}
		}
		return []byte(res.Output), nil
	}
}

// timeoutOf turns a timeout in seconds into a duration, DefaultCommandTimeout for 0.
func timeoutOf(seconds int64) time.Duration {
	if seconds <= 0 {
		return DefaultCommandTimeout
	}
	return time.Duration(seconds) * time.Second
}

// capText cuts s to at most n bytes for a log line.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return string(trimPartialRune([]byte(s[:n]))) + "…"
}

func namespaceOf(ev *Event) string {
	if ev.Entity != nil && ev.Entity.Metadata.Namespace != "" {
		return ev.Entity.Metadata.Namespace
	}
	return ev.Metadata.Namespace
}
