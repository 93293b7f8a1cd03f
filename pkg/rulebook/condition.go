// The condition AST: node types and how each evaluates against an event,
// with Drools semantics for undefined values, plus the value helpers
// (toFloat, toString, pyRepr) shared by conditions and templates.

package rulebook

import (
	"math"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// A node is a compiled condition expression. eval returns the value and
// whether it is defined (a missing attribute, or a comparison of
// incompatible types, is "undefined" and makes its leaf false, also when the
// leaf is negated — ansible-rulebook's Drools semantics).
type node interface {
	eval(e *env) (any, bool)
}

// env is what a condition sees: the object under test and the objects bound
// earlier in a multi-condition rule.
type env struct {
	cur   map[string]any
	bound map[string]any
	// memo caches event./fact. path values of cur, by path id, for the
	// entries whose gen is the current one (nil: no caching).
	memo []memoEntry
	gen  uint32
	// vars is a template's context (the rulebook vars and event or events)
	// and err the first error a template filter or method returned.
	vars map[string]any
	err  error
}

type memoEntry struct {
	gen uint32
	v   any
	ok  bool
}

// pathNode reads event./fact./events./facts. paths.
type pathNode struct {
	prefix string // event, events, fact, facts
	segs   []any  // string keys and int indexes
	text   string
	id     int // event./fact. paths: the rulebook-wide id (0: none)
}

func (p *pathNode) eval(e *env) (any, bool) {
	if e.memo != nil && p.id > 0 && p.id < len(e.memo) {
		m := &e.memo[p.id]
		if m.gen != e.gen {
			m.v, m.ok = walk(e.cur, p.segs)
			m.gen = e.gen
		}
		return m.v, m.ok
	}
	var v any = e.cur
	segs := p.segs
	if (p.prefix == "events" || p.prefix == "facts") && len(segs) > 0 {
		if k, ok := segs[0].(string); ok && e.bound != nil {
			if b, ok := e.bound[k]; ok {
				v, segs = b, segs[1:]
			}
		}
	}
	return walk(v, segs)
}

func walk(v any, segs []any) (any, bool) {
	for _, s := range segs {
		switch k := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[k]; !ok {
				return nil, false
			}
		case int:
			l, ok := v.([]any)
			if !ok {
				return nil, false
			}
			if k < 0 {
				k += len(l)
			}
			if k < 0 || k >= len(l) {
				return nil, false
			}
			v = l[k]
		}
	}
	return v, true
}

type litNode struct{ v any }

func (l *litNode) eval(*env) (any, bool) { return l.v, true }

type listNode struct{ items []node }

func (l *listNode) eval(e *env) (any, bool) {
	out := make([]any, 0, len(l.items))
	for _, it := range l.items {
		v, ok := it.eval(e)
		if !ok {
			return nil, false
		}
		out = append(out, v)
	}
	return out, true
}

// arithNode is + or -.
type arithNode struct {
	op   byte
	l, r node
}

func (a *arithNode) eval(e *env) (any, bool) {
	lv, ok1 := a.l.eval(e)
	rv, ok2 := a.r.eval(e)
	if !ok1 || !ok2 {
		return nil, false
	}
	lf, lok := toFloat(lv)
	rf, rok := toFloat(rv)
	if !lok || !rok {
		if ls, ok := lv.(string); ok && a.op == '+' {
			if rs, ok := rv.(string); ok {
				return ls + rs, true
			}
		}
		return nil, false
	}
	if isInt(lv) && isInt(rv) {
		return intArith(a.op, lv, rv), true
	}
	res := lf + rf
	if a.op == '-' {
		res = lf - rf
	}
	return res, true
}

// boolNode is a leaf or a combination that yields true/false.
type boolNode interface {
	node
	test(e *env) bool
	negate() boolNode
}

type andNode struct{ l, r boolNode }
type orNode struct{ l, r boolNode }

func (a *andNode) eval(e *env) (any, bool) { return a.test(e), true }
func (a *andNode) test(e *env) bool        { return a.l.test(e) && a.r.test(e) }
func (a *andNode) negate() boolNode        { return &orNode{a.l.negate(), a.r.negate()} }
func (o *orNode) eval(e *env) (any, bool)  { return o.test(e), true }
func (o *orNode) test(e *env) bool         { return o.l.test(e) || o.r.test(e) }
func (o *orNode) negate() boolNode         { return &andNode{o.l.negate(), o.r.negate()} }

// cmpNode is ==, !=, <, <=, >, >=.
type cmpNode struct {
	op   string
	l, r node
}

var flipCmp = map[string]string{"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}

func (c *cmpNode) eval(e *env) (any, bool) { return c.test(e), true }
func (c *cmpNode) negate() boolNode        { return &cmpNode{flipCmp[c.op], c.l, c.r} }
func (c *cmpNode) test(e *env) bool {
	lv, ok1 := c.l.eval(e)
	rv, ok2 := c.r.eval(e)
	if !ok1 || !ok2 {
		return false
	}
	return compare(c.op, lv, rv, true)
}

// compare applies op; with typed, incompatible types give false (even for !=).
func compare(op string, lv, rv any, typed bool) bool {
	if lv == nil || rv == nil {
		switch op {
		case "==":
			return lv == nil && rv == nil
		case "!=":
			return !(lv == nil && rv == nil)
		}
		return false
	}
	if c, ok := cmpExact(lv, rv); ok {
		return cmpResult(op, c)
	}
	lf, lnum := toFloat(lv)
	rf, rnum := toFloat(rv)
	if lnum && rnum {
		switch op {
		case "==":
			return lf == rf
		case "!=":
			return lf != rf
		case "<":
			return lf < rf
		case "<=":
			return lf <= rf
		case ">":
			return lf > rf
		case ">=":
			return lf >= rf
		}
		return false
	}
	if lnum != rnum || reflect.TypeOf(lv) != reflect.TypeOf(rv) {
		if typed {
			return false
		}
		return op == "!="
	}
	switch l := lv.(type) {
	case string:
		r := rv.(string)
		switch op {
		case "==":
			return l == r
		case "!=":
			return l != r
		case "<":
			return l < r
		case "<=":
			return l <= r
		case ">":
			return l > r
		case ">=":
			return l >= r
		}
	case bool:
		r := rv.(bool)
		switch op {
		case "==":
			return l == r
		case "!=":
			return l != r
		}
		return false
	}
	eq := reflect.DeepEqual(lv, rv)
	switch op {
	case "==":
		return eq
	case "!=":
		return !eq
	}
	return false
}

func equal(a, b any) bool { return compare("==", a, b, true) }

// inNode is in / not in / contains / not contains.
type inNode struct {
	op   string
	l, r node
}

var flipIn = map[string]string{"in": "not in", "not in": "in", "contains": "not contains", "not contains": "contains"}

func (n *inNode) eval(e *env) (any, bool) { return n.test(e), true }
func (n *inNode) negate() boolNode        { return &inNode{flipIn[n.op], n.l, n.r} }
func (n *inNode) test(e *env) bool {
	lv, ok1 := n.l.eval(e)
	rv, ok2 := n.r.eval(e)
	if !ok1 || !ok2 {
		return false
	}
	var res bool
	switch n.op {
	case "in", "not in":
		res = listContains(rv, lv)
	default:
		res = listContains(lv, rv)
	}
	if strings.HasPrefix(n.op, "not") {
		return !res
	}
	return res
}

// listContains: any element equal when the container is a list, else equality.
func listContains(container, item any) bool {
	if l, ok := container.([]any); ok {
		for _, x := range l {
			if equal(x, item) {
				return true
			}
		}
		return false
	}
	return equal(container, item)
}

// definedNode is "is defined" / "is not defined".
type definedNode struct {
	p   node
	not bool
}

func (d *definedNode) eval(e *env) (any, bool) { return d.test(e), true }
func (d *definedNode) negate() boolNode        { return &definedNode{d.p, !d.not} }
func (d *definedNode) test(e *env) bool {
	_, ok := d.p.eval(e)
	return ok != d.not
}

// truthNode is a bare path or literal used as a condition: "== true".
type truthNode struct{ n node }

func (t *truthNode) eval(e *env) (any, bool) { return t.test(e), true }
func (t *truthNode) negate() boolNode {
	return &cmpNode{"!=", t.n, &litNode{true}}
}
func (t *truthNode) test(e *env) bool {
	v, ok := t.n.eval(e)
	if !ok {
		return false
	}
	b, isBool := v.(bool)
	return isBool && b
}

// searchNode is "is match/search/regex(pattern, ignorecase=..., multiline=...)".
type searchNode struct {
	l       node
	re      *regexp.Regexp // compiled at load when the pattern is a literal
	pattern node
	kind    string
	flags   string
	not     bool
}

func (s *searchNode) eval(e *env) (any, bool) { return s.test(e), true }
func (s *searchNode) negate() boolNode {
	c := *s
	c.not = !s.not
	return &c
}
func (s *searchNode) test(e *env) bool {
	v, ok := s.l.eval(e)
	if !ok || v == nil {
		return false
	}
	re := s.re
	if re == nil {
		pv, ok := s.pattern.eval(e)
		ps, isStr := pv.(string)
		if !ok || !isStr {
			return false
		}
		var err error
		if re, err = compileSearch(s.kind, ps, s.flags, true); err != nil {
			return false
		}
	}
	return re.MatchString(toString(v)) != s.not
}

// selectNode is "is select(op, v)" and "is selectattr(key, op, v)".
type selectNode struct {
	l    node
	key  []any // selectattr path, nil for select
	op   string
	val  node
	not  bool
	isRe *regexp.Regexp
}

func (s *selectNode) eval(e *env) (any, bool) { return s.test(e), true }
func (s *selectNode) negate() boolNode {
	c := *s
	c.not = !s.not
	return &c
}
func (s *selectNode) test(e *env) bool {
	lv, ok := s.l.eval(e)
	if !ok {
		return false
	}
	rv, ok := s.val.eval(e)
	if !ok {
		return false
	}
	items, isList := lv.([]any)
	if !isList {
		items = []any{lv}
	}
	one := func(x any) bool {
		if s.key != nil {
			var ok bool
			if x, ok = walk(x, s.key); !ok {
				return false
			}
		}
		switch s.op {
		case "==", "!=", "<", "<=", ">", ">=":
			return compare(s.op, x, rv, true)
		case "regex", "search", "match":
			re := s.isRe
			if re == nil {
				p, ok := rv.(string)
				if !ok {
					return false
				}
				var err error
				if re, err = compileSearch("search", p, "", false); err != nil {
					return false
				}
			}
			return x != nil && re.MatchString(toString(x))
		case "in":
			return listContains(rv, x)
		case "not in":
			return !listContains(rv, x)
		case "contains":
			return listContains(x, rv)
		case "not contains":
			return !listContains(x, rv)
		}
		return false
	}
	if !s.not {
		for _, x := range items {
			if one(x) {
				return true
			}
		}
		return false
	}
	// "is not select" is "not all": some item fails the test.
	for _, x := range items {
		if !one(x) {
			return true
		}
	}
	return false
}

// constNode is condition: true/false.
type constNode struct{ v bool }

func (c *constNode) eval(*env) (any, bool) { return c.v, true }
func (c *constNode) test(*env) bool        { return c.v }
func (c *constNode) negate() boolNode      { return &constNode{!c.v} }

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case *big.Int:
		f, _ := new(big.Float).SetInt(n).Float64()
		return f, true
	}
	return 0, false
}

func isInt(v any) bool {
	switch v.(type) {
	case int, int64, int32, uint64, *big.Int:
		return true
	}
	return false
}

// toString renders a value as Python's str() would for the common cases.
func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case *big.Int:
		return x.String()
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatFloat(x, 'f', 1, 64)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return pyRepr(v)
}

// pyRepr prints maps and lists as Python reprs ({'a': 1}).
func pyRepr(v any) string {
	switch x := v.(type) {
	case string:
		return "'" + strings.ReplaceAll(x, "'", "\\'") + "'"
	case map[string]any:
		keys := sortedKeys(x)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, pyRepr(k)+": "+pyRepr(x[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, 0, len(x))
		for _, it := range x {
			parts = append(parts, pyRepr(it))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return toString(v)
}
