package events

import (
	"cmp"
	"math"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/parser"
	"github.com/dop251/goja/token"
)

// A filter expression of the common simple kind, such as "event.check.occurrences == 1"
// or "event.check.occurrences >= 3 && event.check.status != 0", is evaluated here in Go
// instead of in the JavaScript runtime: comparisons (== != === !== < <= > >=) of event
// fields with literals or other fields of the same type, !, && and ||, and the truth of a
// field, where a field may also be a key of a map of strings (event.entity.labels.env).
// The result is what goja gives for the same expression on the same event, as
// the lazy view (view.go) presents it: fields read by their JSON names, an omitted
// empty field undefined, the metadata fields lifted, the computed event fields
// (is_silenced …). Anything else (calls, assignments, other identifiers, comparisons
// that coerce between types) leaves the filter to JavaScript, and so does any event on
// which a path cannot be followed the plain way (a null on the way, which throws in
// JavaScript; a kept unknown key that would shadow a lifted field; a string whose
// JavaScript order differs from Go's). TestNativeMatchesJavaScript checks both agree.
//
// A filter runs on every event of a pipeline; the JavaScript runtime costs about 2 µs
// and a dozen allocations per evaluation, this a few field reads.

// nativeExprs are a filter's expressions, all of them in the simple kind.
type nativeExprs []nativeNode

// compileNative compiles every expression of src natively, or returns nil when one of
// them is not of the simple kind. The expressions have compiled as JavaScript already.
func compileNative(src []string) nativeExprs {
	out := make(nativeExprs, 0, len(src))
	for _, s := range src {
		prog, err := parser.ParseFile(nil, "", "("+s+"\n)", 0)
		if err != nil || len(prog.Body) != 1 || len(prog.DeclarationList) > 0 {
			return nil
		}
		st, ok := prog.Body[0].(*ast.ExpressionStatement)
		if !ok {
			return nil
		}
		n, ok := nativeCompile(st.Expression)
		if !ok {
			return nil
		}
		out = append(out, n)
	}
	return out
}

// firstIs is Expressions.firstIs natively; ok is false when an expression cannot be
// evaluated natively on ev, and JavaScript must decide.
func (ne nativeExprs) firstIs(ev *Event, want bool) (is, ok bool) {
	root := reflect.ValueOf(ev).Elem()
	for _, n := range ne {
		v, ok := n.truth(root)
		if !ok {
			return false, false
		}
		if v == want {
			return true, true
		}
	}
	return false, true
}

// nativeNode is an expression whose truth value can be computed on an event (a Value of
// type Event); ok false means JavaScript must decide.
type nativeNode interface {
	truth(ev reflect.Value) (v, ok bool)
}

type (
	nativeNot struct{ x nativeNode }
	nativeAnd struct{ a, b nativeNode }
	nativeOr  struct{ a, b nativeNode }
	nativeCmp struct {
		op   token.Token
		a, b nativeOperand
	}
	// nativeTruth is a bare operand, as a truth value.
	nativeTruth struct{ x nativeOperand }
)

func (n nativeNot) truth(ev reflect.Value) (bool, bool) {
	v, ok := n.x.truth(ev)
	return !v, ok
}

// && and || give one of their operands, whose truth is the truth of the whole.
func (n nativeAnd) truth(ev reflect.Value) (bool, bool) {
	a, ok := n.a.truth(ev)
	if !ok || !a {
		return false, ok
	}
	return n.b.truth(ev)
}

func (n nativeOr) truth(ev reflect.Value) (bool, bool) {
	a, ok := n.a.truth(ev)
	if !ok || a {
		return a, ok
	}
	return n.b.truth(ev)
}

func (n nativeTruth) truth(ev reflect.Value) (bool, bool) {
	v, ok := n.x.value(ev)
	if !ok {
		return false, false
	}
	switch v.kind {
	case jsUndefined:
		return false, true
	case jsBool:
		return v.b, true
	case jsString:
		return v.s != "", true
	}
	if v.isInt {
		return v.i != 0, true
	}
	return v.f != 0 && !math.IsNaN(v.f), true
}

func (n nativeCmp) truth(ev reflect.Value) (bool, bool) {
	a, ok := n.a.value(ev)
	if !ok {
		return false, false
	}
	b, ok := n.b.value(ev)
	if !ok {
		return false, false
	}
	switch n.op {
	case token.EQUAL, token.STRICT_EQUAL:
		return a.equals(b), true
	case token.NOT_EQUAL, token.STRICT_NOT_EQUAL:
		return !a.equals(b), true
	}
	if a.kind == jsUndefined || b.kind == jsUndefined {
		return false, true // NaN compares false
	}
	c, ok := a.compare(b)
	if !ok {
		return false, true // NaN
	}
	switch n.op {
	case token.LESS:
		return c < 0, true
	case token.LESS_OR_EQUAL:
		return c <= 0, true
	case token.GREATER:
		return c > 0, true
	default: // GREATER_OR_EQUAL
		return c >= 0, true
	}
}

// jsKind is the JavaScript type of a native value.
type jsKind uint8

const (
	jsUndefined jsKind = iota
	jsNumber
	jsString
	jsBool
)

// jsScalar is a number, string, boolean or undefined as goja holds it: a number is an
// integer (isInt) or a float, as goja's valueInt and valueFloat.
type jsScalar struct {
	kind  jsKind
	isInt bool
	i     int64
	f     float64
	s     string
	b     bool
}

func (v jsScalar) float() float64 {
	if v.isInt {
		return float64(v.i)
	}
	return v.f
}

// equals is === for operands of the same static type (and so == as well); undefined
// equals only undefined.
func (v jsScalar) equals(w jsScalar) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case jsUndefined:
		return true
	case jsString:
		return v.s == w.s
	case jsBool:
		return v.b == w.b
	}
	if v.isInt && w.isInt {
		return v.i == w.i
	}
	return v.float() == w.float()
}

// compare orders two numbers or two strings; ok is false when either is NaN.
func (v jsScalar) compare(w jsScalar) (int, bool) {
	if v.kind == jsString {
		return strings.Compare(v.s, w.s), true
	}
	if v.isInt && w.isInt {
		return cmp.Compare(v.i, w.i), true
	}
	x, y := v.float(), w.float()
	switch {
	case math.IsNaN(x) || math.IsNaN(y):
		return 0, false
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

// nativeOperand is a literal or a path into the event.
type nativeOperand interface {
	value(ev reflect.Value) (jsScalar, bool)
	// static is the operand's type as far as it is known before evaluation: a path's
	// value may also be undefined.
	static() jsKind
}

type nativeLit jsScalar

func (l nativeLit) value(reflect.Value) (jsScalar, bool) { return jsScalar(l), true }
func (l nativeLit) static() jsKind                       { return l.kind }

// nativePath is event.a.b…: the steps from the event to a scalar field, or to a map of
// strings (labels, annotations) and one of its keys.
type nativePath struct {
	steps  []pathStep
	kind   jsKind
	mapKey reflect.Value // the key read from the map the steps end at; invalid if none
}

// pathStep reads one key of a struct value.
type pathStep struct {
	key  reflect.Value // the key, for a lookup in the struct's kept unknown keys
	info *structInfo
	// how: the struct's own field (field indexes info.fields), a computed event field,
	// or a field of its metadata lifted (meta is the index of the ObjectMeta field,
	// field indexes objectMetaInfo.fields).
	how   stepHow
	field int
	meta  []int
}

type stepHow uint8

const (
	stepField stepHow = iota
	stepEventExtra
	stepLifted
)

func (p nativePath) static() jsKind { return p.kind }

func (p nativePath) value(ev reflect.Value) (jsScalar, bool) {
	v := ev
	for i, st := range p.steps {
		last := i == len(p.steps)-1
		if st.how != stepField {
			// Looked up past the struct's own fields: a kept unknown key of that name
			// comes first.
			if ef := st.info.extraOf(v); ef.IsValid() && ef.Kind() == reflect.Map && ef.Len() > 0 &&
				ef.MapIndex(st.key).IsValid() {
				return jsScalar{}, false
			}
		}
		fields := st.info.fields
		switch st.how {
		case stepEventExtra:
			b, _ := eventExtra(*v.Addr().Interface().(*Event), st.key.String())
			return jsScalar{kind: jsBool, b: b}, true
		case stepLifted:
			v, fields = v.FieldByIndex(st.meta), objectMetaInfo.fields
		}
		f := fields[st.field]
		fv := v.FieldByIndex(f.index)
		leaf := last && !p.mapKey.IsValid()
		if f.omitEmpty && isEmptyValue(fv) {
			if !leaf {
				return jsScalar{}, false
			}
			return jsScalar{}, true
		}
		if leaf {
			return scalarOf(fv)
		}
		if last { // a map of strings, and one of its keys
			if fv.IsNil() {
				return jsScalar{}, false // a property of null
			}
			mv := fv.MapIndex(p.mapKey)
			if !mv.IsValid() {
				return jsScalar{}, true
			}
			return scalarOf(mv)
		}
		for fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				return jsScalar{}, false // a property of null: a TypeError
			}
			fv = fv.Elem()
		}
		v = fv
	}
	return jsScalar{}, false
}

// scalarOf is jsValue for a scalar field; ok is false for a string JavaScript would see
// differently (invalid UTF-8) or order differently (outside the Basic Multilingual Plane,
// where UTF-16's order is not UTF-8's).
func scalarOf(v reflect.Value) (jsScalar, bool) {
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		if !bmpString(s) {
			return jsScalar{}, false
		}
		return jsScalar{kind: jsString, s: s}, true
	case reflect.Bool:
		return jsScalar{kind: jsBool, b: v.Bool()}, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intScalar(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return intScalar(int64(v.Uint())), true
	case reflect.Float32, reflect.Float64:
		return numberScalar(v.Float()), true
	}
	return jsScalar{}, false
}

// bmpString reports whether s is valid UTF-8 of characters in the Basic Multilingual
// Plane only: a string JavaScript sees as Go does, and orders the same.
func bmpString(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r > 0xFFFF })
}

// maxSafeInt bounds the whole numbers goja holds as integers (its maxInt).
const maxSafeInt = 1 << 53

// intScalar is an integer as goja holds it (intToValue): an integer up to 2^53 in size,
// a float beyond.
func intScalar(i int64) jsScalar {
	if i >= -maxSafeInt && i <= maxSafeInt {
		return jsScalar{kind: jsNumber, isInt: true, i: i}
	}
	return jsScalar{kind: jsNumber, f: float64(i)}
}

// numberScalar is a float as goja holds it (floatToValue): an integer when it is a whole
// number no larger in size than 2^53, a float otherwise.
func numberScalar(f float64) jsScalar {
	if f == math.Trunc(f) && !math.IsInf(f, 0) && f >= -maxSafeInt && f <= maxSafeInt && (f != 0 || !math.Signbit(f)) {
		return jsScalar{kind: jsNumber, isInt: true, i: int64(f)}
	}
	return jsScalar{kind: jsNumber, f: f}
}

var objectMetaInfo = typeInfo(reflect.TypeFor[ObjectMeta]())

// nativeCompile compiles one expression, reporting false when it is not of the simple
// kind.
func nativeCompile(e ast.Expression) (nativeNode, bool) {
	switch x := e.(type) {
	case *ast.UnaryExpression:
		if x.Operator != token.NOT || x.Postfix {
			return nil, false
		}
		n, ok := nativeCompile(x.Operand)
		return nativeNot{n}, ok
	case *ast.BinaryExpression:
		switch x.Operator {
		case token.LOGICAL_AND, token.LOGICAL_OR:
			a, b, ok := both(x, nativeCompile)
			if !ok {
				return nil, false
			}
			if x.Operator == token.LOGICAL_AND {
				return nativeAnd{a, b}, true
			}
			return nativeOr{a, b}, true
		case token.EQUAL, token.NOT_EQUAL, token.STRICT_EQUAL, token.STRICT_NOT_EQUAL,
			token.LESS, token.LESS_OR_EQUAL, token.GREATER, token.GREATER_OR_EQUAL:
			a, b, ok := both(x, nativeOperandOf)
			if !ok {
				return nil, false
			}
			// Only operands of one type: JavaScript's coercions between types are left to
			// it. Booleans are not ordered here, and neither are paths whose type is not
			// known (an absent key: undefined).
			ka, kb := a.static(), b.static()
			if ka != kb || ka == jsUndefined {
				return nil, false
			}
			ordered := x.Operator != token.EQUAL && x.Operator != token.NOT_EQUAL &&
				x.Operator != token.STRICT_EQUAL && x.Operator != token.STRICT_NOT_EQUAL
			if ordered && ka == jsBool {
				return nil, false
			}
			return nativeCmp{op: x.Operator, a: a, b: b}, true
		}
		return nil, false
	}
	o, ok := nativeOperandOf(e)
	if !ok {
		return nil, false
	}
	return nativeTruth{o}, true
}

// both compiles the two sides of x with compile.
func both[T any](x *ast.BinaryExpression, compile func(ast.Expression) (T, bool)) (a, b T, ok bool) {
	if a, ok = compile(x.Left); ok {
		b, ok = compile(x.Right)
	}
	return a, b, ok
}

// nativeOperandOf compiles a literal, or a path from event to a scalar field.
func nativeOperandOf(e ast.Expression) (nativeOperand, bool) {
	switch x := e.(type) {
	case *ast.NumberLiteral:
		switch n := x.Value.(type) {
		case int64:
			return nativeLit(intScalar(n)), true
		case float64:
			return nativeLit(numberScalar(n)), true
		}
		return nil, false
	case *ast.StringLiteral:
		// U+FFFD may stand for a lone surrogate of the source, which JavaScript keeps.
		s := x.Value.String()
		if !bmpString(s) || strings.ContainsRune(s, utf8.RuneError) {
			return nil, false
		}
		return nativeLit{kind: jsString, s: s}, true
	case *ast.BooleanLiteral:
		return nativeLit{kind: jsBool, b: x.Value}, true
	case *ast.UnaryExpression:
		// A negative number: -0 is a float, as in goja.
		if n, ok := x.Operand.(*ast.NumberLiteral); ok && x.Operator == token.MINUS && !x.Postfix {
			switch v := n.Value.(type) {
			case int64:
				if v == 0 {
					return nativeLit(numberScalar(math.Copysign(0, -1))), true
				}
				return nativeLit(intScalar(-v)), true
			case float64:
				return nativeLit(numberScalar(-v)), true
			}
		}
		return nil, false
	case *ast.DotExpression:
		var keys []string
		var cur ast.Expression = x
		for {
			d, ok := cur.(*ast.DotExpression)
			if !ok {
				break
			}
			keys = append(keys, d.Identifier.Name.String())
			cur = d.Left
		}
		if id, ok := cur.(*ast.Identifier); !ok || id.Name != "event" {
			return nil, false
		}
		slices.Reverse(keys)
		return compilePath(keys)
	}
	return nil, false
}

// compilePath follows keys from the Event type to a scalar field.
func compilePath(keys []string) (nativeOperand, bool) {
	t := eventType
	p := nativePath{}
	for i, key := range keys {
		last := i == len(keys)-1
		info := typeInfo(t)
		st := pathStep{key: reflect.ValueOf(key), info: info}
		var ft reflect.Type // the field's type as declared
		if fi, ok := info.byName[key]; ok {
			st.how, st.field = stepField, fi
			ft = t.FieldByIndex(info.fields[fi].index).Type
		} else if _, ok := eventExtra(Event{}, key); ok && t == eventType {
			if !last {
				return nil, false
			}
			st.how = stepEventExtra
			p.steps, p.kind = append(p.steps, st), jsBool
			return p, true
		} else if mi, ok := info.byName["metadata"]; ok && slices.Contains(metaLifted, key) &&
			t.FieldByIndex(info.fields[mi].index).Type == reflect.TypeFor[ObjectMeta]() {
			li, ok := objectMetaInfo.byName[key]
			if !ok {
				return nil, false
			}
			st.how, st.field, st.meta = stepLifted, li, info.fields[mi].index
			ft = reflect.TypeFor[ObjectMeta]().FieldByIndex(objectMetaInfo.fields[li].index).Type
		} else {
			return nil, false // undefined, or a kept unknown key: JavaScript's
		}
		p.steps = append(p.steps, st)
		if last {
			// A pointer to a scalar is null when nil, not a scalar: left to JavaScript.
			switch ft.Kind() {
			case reflect.String:
				p.kind = jsString
			case reflect.Bool:
				p.kind = jsBool
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
				reflect.Float32, reflect.Float64:
				p.kind = jsNumber
			default:
				return nil, false
			}
			return p, true
		}
		if ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String && ft.Elem().Kind() == reflect.String &&
			i == len(keys)-2 && !protoKey(keys[i+1]) {
			p.kind, p.mapKey = jsString, reflect.ValueOf(keys[i+1]).Convert(ft.Key())
			return p, true
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct {
			return nil, false
		}
		t = ft
	}
	return nil, false
}

// protoKey reports a key that a JavaScript object has without owning it: a map that lacks
// it does not read as undefined.
func protoKey(k string) bool {
	switch k {
	case "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
		"toLocaleString", "toString", "valueOf":
		return true
	}
	return strings.HasPrefix(k, "__")
}
