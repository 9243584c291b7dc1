package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/dop251/goja"
)

// Synthesize turns a resource into the plain map that JavaScript expressions and
// command tokens see: its JSON form, with the metadata fields (name, namespace, labels,
// annotations) also lifted to the top level of every object that has metadata, as Sensu
// does, so both entity.labels.x and entity.metadata.labels.x work.
func Synthesize(v any) map[string]any {
	raw, err := json.Marshal(v)
	if err != nil {
		return map[string]any{}
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return map[string]any{}
	}
	lift(m)
	return m
}

func lift(v any) {
	switch x := v.(type) {
	case map[string]any:
		if meta, ok := x["metadata"].(map[string]any); ok {
			for k, mv := range meta {
				if _, taken := x[k]; !taken {
					x[k] = mv
				}
			}
		}
		for _, c := range x {
			lift(c)
		}
	case []any:
		for _, c := range x {
			lift(c)
		}
	}
}

// JSError is an expression that does not compile, with its index and position.
type JSError struct {
	Index      int
	Expression string
	Err        error
}

func (e *JSError) Error() string {
	return fmt.Sprintf("expression %d (%q): %v", e.Index, e.Expression, e.Err)
}

func (e *JSError) Unwrap() error { return e.Err }

// Expressions is a compiled set of ECMAScript 5 boolean expressions, compiled once and
// evaluated many times. It is safe for concurrent use: each evaluation borrows a
// runtime from a pool.
type Expressions struct {
	src   []string
	progs []*goja.Program
	pool  sync.Pool
	// native evaluates the expressions without JavaScript when all are of the simple
	// kind (filter_native.go); nil otherwise.
	native nativeExprs
}

// CompileExpressions compiles every expression, reporting the first that fails with its
// index and the parser's position.
func CompileExpressions(src []string) (*Expressions, error) {
	e := &Expressions{src: src}
	for i, s := range src {
		// The closing parenthesis on a line of its own: an expression that ends too soon
		// is then told apart from one with a stray token, and a trailing // comment
		// does not swallow it.
		p, err := goja.Compile(fmt.Sprintf("expression[%d]", i), "("+s+"\n)", true)
		if err != nil {
			err = cleanJSError(err, jsPlace{src: s, col: 1}, "expression")
			if errors.Is(err, errEndsTooSoon) {
				// At the closing parenthesis: the expression ended too soon, or a stray
				// ")" of its own closed ours. Compiled alone, it shows which.
				if _, aerr := goja.Compile("", s, true); aerr != nil {
					if alone := cleanJSError(aerr, jsPlace{src: s}, "expression"); !errors.Is(alone, errEndsTooSoon) {
						err = alone
					}
				}
			}
			return nil, &JSError{Index: i, Expression: s, Err: err}
		}
		e.progs = append(e.progs, p)
	}
	e.pool.New = func() any { return newRuntime() }
	e.native = compileNative(src)
	return e, nil
}

// parserPosRE reads the position and message out of a goja parser error such as
// "expression[0]: Line 1:23 Unexpected token ) (and 1 more errors)".
var parserPosRE = regexp.MustCompile(`Line (\d+):(\d+) (.*?)(?: \(and \d+ more errors\))?$`)

// errEndsTooSoon marks a syntax error found past the end of the user's script.
var errEndsTooSoon = errors.New("unexpected end")

// jsPlace is where a user's script sits in the text compiled around it: after line
// whole lines, and on its first line after col characters.
type jsPlace struct {
	src       string
	line, col int
}

// cleanJSError turns a goja compile error into one whose position is in the user's own
// script (what, e.g. "expression"), not in the text wrapped around it. An error past
// the script's end, in the wrapper's closing text, is reported as the script ending too
// soon: the parser's message would name a token the user never wrote.
func cleanJSError(err error, at jsPlace, what string) error {
	var ce *goja.CompilerSyntaxError
	if !errors.As(err, &ce) {
		return err
	}
	var line, col int
	msg := ce.Message
	if ce.File != nil {
		pos := ce.File.Position(int(ce.Offset))
		line, col = pos.Line, pos.Column
	} else if m := parserPosRE.FindStringSubmatch(ce.Message); m != nil {
		// The parser's own errors carry no file; their message has the position.
		line, _ = strconv.Atoi(m[1])
		col, _ = strconv.Atoi(m[2])
		msg = m[3]
	} else {
		return fmt.Errorf("syntax error: %s", ce.Message)
	}
	lines := strings.Split(at.src, "\n")
	line -= at.line
	if line == 1 {
		col -= at.col
	}
	if line > len(lines) || line < 1 || (line == len(lines) && col > len([]rune(lines[len(lines)-1]))) {
		last := lines[len(lines)-1]
		return fmt.Errorf("syntax error at line %d, column %d: %w", len(lines), len([]rune(last))+1,
			fmt.Errorf("%w: the %s ends too soon, or closes a bracket it did not open", errEndsTooSoon, what))
	}
	return fmt.Errorf("syntax error at line %d, column %d: %s", line, max(col, 1), msg)
}

// newRuntime makes a runtime with Sensu's filter helpers bound.
func newRuntime() *goja.Runtime {
	vm := goja.New()
	vm.SetFieldNameMapper(goja.TagFieldNameMapper("json", true))
	_ = vm.Set("seconds_since", func(ts int64) int64 { return time.Now().Unix() - ts })
	_ = vm.Set("hour", func(ts int64) int { return time.Unix(ts, 0).UTC().Hour() })
	_ = vm.Set("weekday", func(ts int64) int { return int(time.Unix(ts, 0).UTC().Weekday()) })
	return vm
}

// Eval evaluates every expression with the bindings (e.g. "event" or "entity" to a
// Synthesize'd map) and returns each truth value. A run-time error names the expression.
func (e *Expressions) Eval(bindings map[string]any) ([]bool, error) {
	vm := e.pool.Get().(*goja.Runtime)
	defer e.pool.Put(vm)
	for k, v := range bindings {
		if err := vm.Set(k, v); err != nil {
			return nil, err
		}
	}
	out := make([]bool, len(e.progs))
	for i, p := range e.progs {
		v, err := runGuarded(vm, p)
		if err != nil {
			return nil, &JSError{Index: i, Expression: e.src[i], Err: err}
		}
		out[i] = v.ToBoolean()
	}
	return out, nil
}

// runGuarded runs a program with a time limit, so a runaway expression cannot hang the
// caller.
func runGuarded(vm *goja.Runtime, p *goja.Program) (goja.Value, error) {
	t := time.AfterFunc(time.Second, func() { vm.Interrupt("expression ran longer than 1s") })
	defer t.Stop()
	v, err := vm.RunProgram(p)
	vm.ClearInterrupt()
	if err != nil {
		msg := err.Error()
		if i := strings.Index(msg, " at expression["); i > 0 {
			msg = msg[:i]
		}
		return nil, errors.New(msg)
	}
	return v, nil
}

// tokenTemplates caches parsed token templates by their text: the same check commands
// and metric tags come back with every result and every proxy tick. A template executes
// safely from several goroutines at once. The texts come from definitions, so there
// are few; tokenTemplatesMax bounds the cache should definitions churn.
var (
	tokenTemplates    sync.Map // string -> *template.Template
	tokenTemplatesLen atomic.Int64
)

const tokenTemplatesMax = 10_000

func tokenTemplate(s string) (*template.Template, error) {
	if t, ok := tokenTemplates.Load(s); ok {
		return t.(*template.Template), nil
	}
	t, err := template.New("tokens").Option("missingkey=zero").Funcs(template.FuncMap{
		"default": func(def any, v any) any {
			if v == nil || v == "" {
				return def
			}
			return v
		},
	}).Parse(s)
	if err != nil {
		return nil, fmt.Errorf("tokens in %q: %w", s, err)
	}
	if tokenTemplatesLen.Load() < tokenTemplatesMax {
		if _, loaded := tokenTemplates.LoadOrStore(s, t); !loaded {
			tokenTemplatesLen.Add(1)
		}
	}
	return t, nil
}

// SubstituteTokens replaces Sensu tokens such as {{ .name }}, {{ .labels.url }} or
// {{ .labels.port | default "80" }} in s with values from a Synthesize'd entity. A token
// with no value and no default is an error naming it.
func SubstituteTokens(s string, entity map[string]any) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	t, err := tokenTemplate(s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, entity); err != nil {
		return "", fmt.Errorf("tokens in %q: %w", s, err)
	}
	out := b.String()
	if strings.Contains(out, "<no value>") {
		return "", fmt.Errorf("tokens in %q: a token has no value for entity %v and no default", s, entity["name"])
	}
	return out, nil
}
