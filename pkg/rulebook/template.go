// Rendering action arguments: Jinja-style {{ ... }} templates, compiled at
// load by the condition parser (expr.go) into nodes evaluated against the
// rulebook vars and the matched events (filters and methods in methods.go).

package rulebook

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Action arguments are rendered with Jinja semantics for the subset
// rulebooks use: "{{ expr }}" alone keeps the value's native type (an object
// stays an object; a string goes through Python's literal_eval); mixed text
// renders as a string with Python's str(); an undefined variable is an
// error. expr is the condition grammar (paths, literals, + and -,
// comparisons, and/or/not) where a bare word is a variable (a top-level
// var, event or events), plus method calls and filters (see expr.go).

// ErrUndefined marks a template that names something undefined.
var ErrUndefined = errors.New("undefined variable")

// constVal is a template that depends only on rulebook vars, rendered once
// at load.
type constVal struct{ v any }

// tmpl is a compiled string holding {{ ... }}.
type tmpl struct {
	src   string
	lone  node     // a lone "{{ expr }}" (the whole string), else nil
	text  []string // mixed text: text[i] comes before exprs[i]; one more text at the end
	exprs []node
	srcs  []string // the source of each expression, for errors
	roots map[string]bool
	err   error // a compile error, returned when the template is rendered
}

// compileTemplate compiles s, or returns nil when s holds no template.
func compileTemplate(s string) *tmpl {
	if !strings.Contains(s, "{{") || !strings.Contains(s, "}}") {
		return nil
	}
	t := &tmpl{src: s, roots: map[string]bool{}}
	if trimmed := strings.TrimSpace(s); trimmed == s && strings.HasPrefix(s, "{{") && strings.HasSuffix(s, "}}") && strings.Count(s, "{{") == 1 {
		t.srcs = []string{strings.TrimSpace(s[2 : len(s)-2])}
		t.lone = t.compile(t.srcs[0])
		return t
	}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		j := -1
		if i >= 0 {
			j = strings.Index(rest[i:], "}}")
		}
		if j < 0 {
			t.text = append(t.text, rest)
			return t
		}
		src := strings.TrimSpace(rest[i+2 : i+j])
		t.text = append(t.text, rest[:i])
		t.srcs = append(t.srcs, src)
		t.exprs = append(t.exprs, t.compile(src))
		rest = rest[i+j+2:]
	}
}

func (t *tmpl) compile(src string) node {
	n, roots, err := parseTemplateExpr(src)
	if err != nil {
		t.err = err
		return nil
	}
	for r := range roots {
		t.roots[r] = true
	}
	return n
}

// constant reports whether t reads only rulebook vars (not event, events,
// fact or facts, which a rule's context sets).
func (t *tmpl) constant(vars map[string]any) bool {
	for r := range t.roots {
		if _, ok := vars[r]; !ok || r == "event" || r == "events" || r == "fact" || r == "facts" {
			return false
		}
	}
	return t.err == nil
}

// render evaluates t against ctx.
func (t *tmpl) render(ctx map[string]any) (any, error) {
	if t.err != nil {
		return nil, t.err
	}
	var e *env // shared by the expressions of t, made on first need
	if t.lone != nil {
		v, err := evalExpr(t.lone, t.srcs[0], ctx, &e)
		if err != nil {
			return nil, err
		}
		if str, ok := v.(string); ok {
			return literalEval(str), nil
		}
		return v, nil
	}
	var b strings.Builder
	for i, n := range t.exprs {
		b.WriteString(t.text[i])
		v, err := evalExpr(n, t.srcs[i], ctx, &e)
		if err != nil {
			return nil, err
		}
		b.WriteString(toString(v))
	}
	b.WriteString(t.text[len(t.text)-1])
	return b.String(), nil
}

// evalExpr evaluates one compiled expression; a plain variable path takes
// a short way that allocates nothing, the others share *ep (made here
// when nil).
func evalExpr(n node, src string, ctx map[string]any, ep **env) (any, error) {
	if nn, ok := n.(*nameNode); ok {
		if v, ok := nn.lookup(ctx); ok {
			return v, nil
		}
		return nil, fmt.Errorf("%w: %s", ErrUndefined, src)
	}
	if *ep == nil {
		*ep = &env{vars: ctx}
	}
	e := *ep
	v, ok := n.eval(e)
	if e.err != nil {
		return nil, e.err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUndefined, src)
	}
	return v, nil
}

// compileArgs prepares action arguments at load time: templates are
// compiled, and those that only read rulebook vars are rendered once.
func compileArgs(v any, vars map[string]any) any {
	switch x := v.(type) {
	case string:
		t := compileTemplate(x)
		if t == nil {
			return x
		}
		if t.constant(vars) {
			if r, err := t.render(vars); err == nil {
				return constVal{r}
			}
		}
		return t
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = compileArgs(e, vars)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = compileArgs(e, vars)
		}
		return out
	}
	return v
}

// templateErr is the first compile error in arguments prepared by
// compileArgs, in key order.
func templateErr(v any) error {
	switch x := v.(type) {
	case *tmpl:
		return x.err
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if err := templateErr(x[k]); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := templateErr(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderCompiled renders arguments prepared by compileArgs (or raw ones:
// a string is compiled and rendered if it holds a template); the result is
// always a fresh tree.
func renderCompiled(v any, ctx map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		return renderString(x, ctx)
	case constVal:
		return deepCopyAny(x.v), nil
	case *tmpl:
		return x.render(ctx)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			r, err := renderCompiled(val, ctx)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			r, err := renderCompiled(val, ctx)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// render renders raw (uncompiled) arguments: the same walk, strings
// compiled as they come.
func render(v any, ctx map[string]any) (any, error) { return renderCompiled(v, ctx) }

// renderString compiles and renders one string.
func renderString(s string, ctx map[string]any) (any, error) {
	t := compileTemplate(s)
	if t == nil {
		return s, nil
	}
	return t.render(ctx)
}

// literalEval mimics Python's ast.literal_eval on a rendered string: numbers
// (integers of any size) become values; anything else stays a string.
func literalEval(s string) any {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if isDecimal(s) {
		if b, ok := new(big.Int).SetString(s, 10); ok {
			return b
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && strings.ContainsAny(s, ".eE") && !strings.ContainsAny(s, "nN") {
		return f
	}
	return s
}

// isDecimal: an optional sign and at least one digit, nothing else.
func isDecimal(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// kwArg is a keyword argument of a filter call, e.g. count=1.
type kwArg struct {
	name  string
	value any
}

// nameNode is a template variable: a context key and a path under it.
type nameNode struct {
	name string
	segs []any
	text string
}

func (n *nameNode) lookup(ctx map[string]any) (any, bool) {
	root, ok := ctx[n.name]
	if !ok {
		return nil, false
	}
	return walk(root, n.segs)
}

func (n *nameNode) eval(e *env) (any, bool) { return n.lookup(e.vars) }

// attrNode walks a path under a computed value (a method's result).
type attrNode struct {
	base node
	segs []any
}

func (a *attrNode) eval(e *env) (any, bool) {
	v, ok := a.base.eval(e)
	if !ok {
		return nil, false
	}
	return walk(v, a.segs)
}

// methodNode is recv.name(args): a Python str, dict or list method.
type methodNode struct {
	recv node
	name string
	args []node
}

func (m *methodNode) eval(e *env) (any, bool) {
	v, ok := m.recv.eval(e)
	if !ok {
		return nil, false
	}
	args, ok := evalArgs(e, m.args)
	if !ok {
		return nil, false
	}
	r, err := callMethod(v, m.name, args)
	if err != nil {
		e.fail(fmt.Errorf("%s(): %w", m.name, err))
		return nil, false
	}
	return r, true
}

// filterNode is "in | name(args, key=value)".
type filterNode struct {
	in   node
	name string
	fn   templateFilter // nil for default
	args []node
	kw   []kwArg
}

func (f *filterNode) eval(e *env) (any, bool) {
	v, ok := f.in.eval(e)
	if f.fn == nil { // default / d: replaces an undefined value
		if ok {
			return v, true
		}
		e.err = nil
		if len(f.args) == 0 {
			return nil, true
		}
		return f.args[0].eval(e)
	}
	if !ok {
		return nil, false
	}
	args, ok := evalArgs(e, f.args)
	if !ok {
		return nil, false
	}
	for _, k := range f.kw {
		args = append(args, k)
	}
	r, err := f.fn(v, args)
	if err != nil {
		e.fail(fmt.Errorf("filter %s: %w", f.name, err))
		return nil, false
	}
	return r, true
}

func evalArgs(e *env, nodes []node) ([]any, bool) {
	if len(nodes) == 0 {
		return nil, true
	}
	out := make([]any, len(nodes))
	for i, a := range nodes {
		v, ok := a.eval(e)
		if !ok {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// fail keeps the first error of a template evaluation.
func (e *env) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}
