// Rendering action arguments: Jinja-style {{ ... }} templates over the
// rulebook vars and the matched events (filters and methods in methods.go).

package rulebook

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Action arguments are rendered with Jinja semantics for the subset
// rulebooks use: "{{ expr }}" alone keeps the value's native type (an object
// stays an object); mixed text renders as a string with Python's str();
// an undefined variable is an error. expr is a variable path (event.a.b,
// events.m_0.x, a top-level var, x["k"], x[0]) or a literal, followed by
// filters: default, string, int, float, bool, lower, upper, length, first,
// last, join, tojson, basename, dirname, normpath, replace.

// ErrUndefined marks a template that names something undefined.
var ErrUndefined = errors.New("undefined variable")

// constVal is a template that depends only on rulebook vars, rendered once
// at load.
type constVal struct{ v any }

// dynStr is a template that depends on events or facts.
type dynStr struct {
	s    string
	lone string // the expression of a lone "{{ expr }}", else ""
	segs []any  // lone expression that is a plain path: its segments
}

var eventRef = regexp.MustCompile(`\b(event|events|fact|facts)\b`)

// compileArgs prepares action arguments at load time.
func compileArgs(v any, vars map[string]any) any {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "{{") || !strings.Contains(x, "}}") {
			return x
		}
		if !eventRef.MatchString(x) {
			if r, err := renderString(x, vars); err == nil {
				return constVal{r}
			}
		}
		d := &dynStr{s: x}
		if t := strings.TrimSpace(x); t == x && strings.HasPrefix(t, "{{") && strings.HasSuffix(t, "}}") && strings.Count(t, "{{") == 1 {
			d.lone = strings.TrimSpace(t[2 : len(t)-2])
			if !strings.ContainsAny(d.lone, "|()'\" ") {
				if segs, err := splitPath(d.lone); err == nil {
					d.segs = segs
				}
			}
		}
		return d
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

// renderCompiled renders arguments prepared by compileArgs (or raw ones:
// a string is rendered if it holds a template); the result is always a
// fresh tree.
func renderCompiled(v any, ctx map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		return renderString(x, ctx)
	case constVal:
		return deepCopyAny(x.v), nil
	case *dynStr:
		if x.lone == "" {
			return renderString(x.s, ctx)
		}
		if x.segs != nil {
			root, ok := ctx[x.segs[0].(string)]
			if !ok {
				return nil, fmt.Errorf("%w: %s", ErrUndefined, x.lone)
			}
			r, ok := walk(root, x.segs[1:])
			if !ok {
				return nil, fmt.Errorf("%w: %s", ErrUndefined, x.lone)
			}
			if str, ok := r.(string); ok {
				return literalEval(str), nil
			}
			return r, nil
		}
		r, err := evalTemplateExpr(x.lone, ctx)
		if err != nil {
			return nil, err
		}
		if str, ok := r.(string); ok {
			return literalEval(str), nil
		}
		return r, nil
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
// rendered as they come.
func render(v any, ctx map[string]any) (any, error) { return renderCompiled(v, ctx) }

func renderString(s string, ctx map[string]any) (any, error) {
	if !strings.Contains(s, "{{") || !strings.Contains(s, "}}") {
		return s, nil
	}
	trimmed := strings.TrimSpace(s)
	if strings.HasPrefix(trimmed, "{{") && strings.HasSuffix(trimmed, "}}") && strings.Count(trimmed, "{{") == 1 && trimmed == s {
		v, err := evalTemplateExpr(strings.TrimSpace(trimmed[2:len(trimmed)-2]), ctx)
		if err != nil {
			return nil, err
		}
		if str, ok := v.(string); ok {
			return literalEval(str), nil
		}
		return v, nil
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		v, err := evalTemplateExpr(strings.TrimSpace(rest[i+2:i+j]), ctx)
		if err != nil {
			return nil, err
		}
		b.WriteString(toString(v))
		rest = rest[i+j+2:]
	}
	return b.String(), nil
}

// literalEval mimics Python's ast.literal_eval on a rendered string: numbers
// and lists/dicts become values; anything else stays a string.
func literalEval(s string) any {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && strings.ContainsAny(s, ".eE") && !strings.ContainsAny(s, "nN") {
		return f
	}
	return s
}

// scanTop walks s outside quoted strings, calling f with each byte's index
// and the bracket depth before it; f returns false to stop.
func scanTop(s string, f func(i, depth int) bool) {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		if c == '"' || c == '\'' {
			quote = c
			continue
		}
		if !f(i, depth) {
			return
		}
		switch c {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		}
	}
}

func splitTop(s string, sep byte) []string {
	var parts []string
	start := 0
	scanTop(s, func(i, depth int) bool {
		if s[i] == sep && depth == 0 {
			parts = append(parts, s[start:i])
			start = i + 1
		}
		return true
	})
	return append(parts, s[start:])
}

// splitCache keeps the parsed shape of each template expression: action
// arguments are rendered for every match, their text never changes.
var splitCache sync.Map // string -> []string

func evalTemplateExpr(expr string, ctx map[string]any) (any, error) {
	var parts []string
	if c, ok := splitCache.Load(expr); ok {
		parts = c.([]string)
	} else {
		parts = splitTop(expr, '|')
		splitCache.Store(expr, parts)
	}
	v, err := evalOperand(strings.TrimSpace(parts[0]), ctx)
	for _, f := range parts[1:] {
		f = strings.TrimSpace(f)
		name, args := f, []any{}
		if i := strings.IndexByte(f, '('); i > 0 && strings.HasSuffix(f, ")") {
			name = f[:i]
			for _, a := range splitTop(f[i+1:len(f)-1], ',') {
				if a = strings.TrimSpace(a); a == "" {
					continue
				}
				if m := kwarg.FindStringSubmatch(a); m != nil { // name=value
					kv, kerr := evalOperand(strings.TrimSpace(m[2]), ctx)
					if kerr != nil {
						return nil, kerr
					}
					args = append(args, kwArg{m[1], kv})
					continue
				}
				av, aerr := evalOperand(a, ctx)
				if aerr != nil {
					return nil, aerr
				}
				args = append(args, av)
			}
		}
		if name == "default" || name == "d" {
			if err != nil {
				err = nil
				v = nil
				if len(args) > 0 {
					v = args[0]
				}
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if v, err = applyFilter(name, v, args); err != nil {
			return nil, fmt.Errorf("filter %s: %w", name, err)
		}
	}
	return v, err
}

var pathCache sync.Map // string -> []any

// kwArg is a keyword argument of a filter call, e.g. count=1.
type kwArg struct {
	name  string
	value any
}

var kwarg = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*=([^=].*)$`)

func evalOperand(s string, ctx map[string]any) (any, error) {
	if s == "" {
		return nil, errors.New("empty expression")
	}
	if i := methodCallAt(s); i > 0 {
		return evalMethodChain(s, i, ctx)
	}
	if c, ok := pathCache.Load(s); ok {
		root, ok := ctx[c.([]any)[0].(string)]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUndefined, s)
		}
		v, ok := walk(root, c.([]any)[1:])
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUndefined, s)
		}
		return v, nil
	}
	if (s[0] == '"' || s[0] == '\'') && len(s) >= 2 && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1], nil
	}
	switch s {
	case "None", "none", "null":
		return nil, nil
	case "True", "true":
		return true, nil
	case "False", "false":
		return false, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f, nil
	}
	var segs []any
	if c, ok := pathCache.Load(s); ok {
		segs = c.([]any)
	} else {
		var err error
		if segs, err = splitPath(s); err != nil {
			return nil, err
		}
		pathCache.Store(s, segs)
	}
	root, ok := ctx[segs[0].(string)]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUndefined, s)
	}
	v, ok := walk(root, segs[1:])
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUndefined, s)
	}
	return v, nil
}

func splitPath(s string) ([]any, error) {
	var segs []any
	i := 0
	readIdent := func() string {
		j := i
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		id := s[i:j]
		i = j
		return id
	}
	first := readIdent()
	if first == "" {
		return nil, fmt.Errorf("cannot evaluate %q", s)
	}
	segs = append(segs, first)
	for i < len(s) {
		switch s[i] {
		case '.':
			i++
			id := readIdent()
			if id == "" {
				return nil, fmt.Errorf("cannot evaluate %q", s)
			}
			segs = append(segs, id)
		case '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("missing ] in %q", s)
			}
			inner := strings.TrimSpace(s[i+1 : i+j])
			if n, err := strconv.Atoi(inner); err == nil {
				segs = append(segs, n)
			} else if len(inner) >= 2 && (inner[0] == '"' || inner[0] == '\'') {
				segs = append(segs, inner[1:len(inner)-1])
			} else {
				return nil, fmt.Errorf("unsupported index %q", inner)
			}
			i += j + 1
		default:
			return nil, fmt.Errorf("unsupported template expression %q (this engine renders paths, literals and filters)", s)
		}
	}
	return segs, nil
}

// methodCallAt returns the index of the first ".name(" outside quotes in s
// (a Python method call inside a template), or -1.
func methodCallAt(s string) int {
	at := -1
	scanTop(s, func(i, _ int) bool {
		if s[i] != '.' {
			return true
		}
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j > i+1 && j < len(s) && s[j] == '(' {
			at = i
			return false
		}
		return true
	})
	return at
}

// evalMethodChain evaluates base.method(args)[.method(args)|[index]]...,
// with the str/dict/list methods templates use in rulebooks.
func evalMethodChain(s string, at int, ctx map[string]any) (any, error) {
	v, err := evalOperand(strings.TrimSpace(s[:at]), ctx)
	if err != nil {
		return nil, err
	}
	rest := s[at:]
	for rest != "" {
		switch rest[0] {
		case '.':
			open := strings.IndexByte(rest, '(')
			if open < 0 {
				segs, err := splitPath("x" + rest)
				if err != nil {
					return nil, err
				}
				w, ok := walk(v, segs[1:])
				if !ok {
					return nil, fmt.Errorf("%w: %s", ErrUndefined, s)
				}
				return w, nil
			}
			name := rest[1:open]
			end := matchParen(rest, open)
			if end < 0 {
				return nil, fmt.Errorf("missing ) in %q", s)
			}
			var args []any
			for _, a := range splitTop(rest[open+1:end], ',') {
				if a = strings.TrimSpace(a); a == "" {
					continue
				}
				av, err := evalOperand(a, ctx)
				if err != nil {
					return nil, err
				}
				args = append(args, av)
			}
			if v, err = callMethod(v, name, args); err != nil {
				return nil, fmt.Errorf("%s(): %w", name, err)
			}
			rest = rest[end+1:]
		case '[':
			j := strings.IndexByte(rest, ']')
			if j < 0 {
				return nil, fmt.Errorf("missing ] in %q", s)
			}
			segs, err := splitPath("x" + rest[:j+1])
			if err != nil {
				return nil, err
			}
			w, ok := walk(v, segs[1:])
			if !ok {
				return nil, fmt.Errorf("%w: %s", ErrUndefined, s)
			}
			v, rest = w, rest[j+1:]
		default:
			return nil, fmt.Errorf("unsupported template expression %q", s)
		}
	}
	return v, nil
}

func matchParen(s string, open int) int {
	end := -1
	scanTop(s[open:], func(i, depth int) bool {
		if s[open+i] == ')' && depth == 1 {
			end = open + i
			return false
		}
		return true
	})
	return end
}
