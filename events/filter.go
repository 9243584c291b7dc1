package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/dop251/goja"
)

// Built-in filters, which a handler may name in its filters without defining them.
const (
	FilterIsIncident  = "is_incident"
	FilterNotSilenced = "not_silenced"
	FilterHasMetrics  = "has_metrics"
)

// IsBuiltinFilter reports whether name is a built-in filter.
func IsBuiltinFilter(name string) bool {
	switch name {
	case FilterIsIncident, FilterNotSilenced, FilterHasMetrics:
		return true
	}
	return false
}

// Filter is an EventFilter ready to run: its expressions compiled and its time windows
// parsed, once, then evaluated against many events from many goroutines.
type Filter struct {
	// Def is the definition the filter was compiled from. Treat it as read-only.
	Def     *EventFilter
	exprs   *Expressions
	windows Windows
	// err is why the definition could not be compiled; evaluating reports it.
	err error
}

// CompileFilter compiles f's expressions and parses its when windows. A filter that does
// not compile is still returned, with the error: Evaluate reports that error for every
// event, and the event continues, as for any error at run time.
func CompileFilter(f *EventFilter) (*Filter, error) {
	cf := &Filter{Def: f}
	var errs []error
	if len(f.Expressions) > 0 {
		exprs, err := CompileExpressions(f.Expressions)
		if err != nil {
			errs = append(errs, err)
		}
		cf.exprs = exprs
	}
	if w, err := parseWhen(f.When); err != nil {
		errs = append(errs, err)
	} else {
		cf.windows = w
	}
	cf.err = errors.Join(errs...)
	return cf, cf.err
}

// parseWhen reads a filter's when, which has the shape of a check's subdue.
func parseWhen(raw json.RawMessage) (Windows, error) {
	w, err := ParseSubdue(raw)
	if err != nil {
		return nil, errors.New("when: " + strings.TrimPrefix(err.Error(), "subdue: "))
	}
	return w, nil
}

// Removes reports whether the filter removes ev at now. Expressions see the event as
// Synthesize would present it, read lazily: only the fields they touch are converted.
//
// An allow filter lets an event through only when every expression is true, a deny filter
// removes it when any is true. With when windows, the expressions run only inside them;
// outside, an allow filter removes every event and a deny filter none, as in Sensu. An error (an
// expression that throws, or a filter that does not compile) is returned with
// removed false: the event continues, and the caller logs the error with the filter's
// name.
func (f *Filter) Removes(ev *Event, now time.Time) (removed bool, err error) {
	if f.err != nil {
		return false, f.err
	}
	allow := f.Def.Action != FilterDeny
	if f.Def.When != nil && len(f.windows) > 0 && !f.windows.Contains(now) {
		// Outside its windows a filter does not apply: an allow filter removes the
		// event, a deny filter lets it through (Sensu's evaluateEventFilter).
		return allow, nil
	}
	if f.exprs == nil {
		return false, nil
	}
	// allow stops at the first false expression, deny at the first true one.
	return f.exprs.firstIs(ev, !allow)
}

// firstIs evaluates the expressions with event bound to ev, in order, and reports
// whether one of them has the truth value want, stopping there.
func (e *Expressions) firstIs(ev *Event, want bool) (bool, error) {
	if e.native != nil {
		if is, ok := e.native.firstIs(ev, want); ok {
			return is, nil
		}
	}
	vm := e.pool.Get().(*goja.Runtime)
	defer e.pool.Put(vm)
	if err := vm.Set("event", jsValue(vm, reflect.ValueOf(ev))); err != nil {
		return false, err
	}
	for i, p := range e.progs {
		v, err := runGuarded(vm, p)
		if err != nil {
			return false, &JSError{Index: i, Expression: e.src[i], Err: err}
		}
		if v.ToBoolean() == want {
			return true, nil
		}
	}
	return false, nil
}

// BuiltinRemoves reports whether the built-in filter name removes ev: is_incident lets
// through non-OK results and resolutions, not_silenced events no silence covers, and
// has_metrics events with metrics.
func BuiltinRemoves(name string, ev *Event) bool {
	switch name {
	case FilterIsIncident:
		return !(ev.IsIncident() || ev.IsResolution())
	case FilterNotSilenced:
		return ev.IsSilenced()
	case FilterHasMetrics:
		return !ev.HasMetrics()
	}
	return false
}

// validateExpressions compiles every expression on its own, so that each one that fails
// is reported at expressions[i] with the parser's position.
func validateExpressions(p *problems, field string, exprs []string) {
	for i, s := range exprs {
		if s == "" {
			continue // reported as empty
		}
		if _, err := CompileExpressions([]string{s}); err != nil {
			var je *JSError
			msg := err.Error()
			if errors.As(err, &je) {
				msg = je.Err.Error()
			}
			p.add(fmt.Sprintf("%s[%d]", field, i), "does not compile: %s", msg)
		}
	}
}
