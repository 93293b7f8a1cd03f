// The parts of the expression grammar that conditions and templates share
// (path segments, integer literals of any size) and the template-only ones
// (variables, method calls, filters), parsed by the parser of parser.go.

package rulebook

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// The one path grammar, for conditions, templates and var_root:
//
//	path    = name { "." name | "[" index "]" }
//	index   = string | ["-"] integer
//
// A negative index counts from the end of a list (x[-1] is the last item).
// In a template a path may go on with method calls (".name(args)") and
// filters ("| name" or "| name(args, key=literal)"); a filter applies to
// everything on its left up to the nearest operator, as in Jinja.

// parseInt reads a decimal integer of any size: an int64 when it fits, else
// a *big.Int (ansible-rulebook takes Python integers).
func parseInt(text string) (any, error) {
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	b, ok := new(big.Int).SetString(text, 10)
	if !ok {
		return nil, fmt.Errorf("bad integer %q", text)
	}
	return b, nil
}

// segments parses the ".name" and "[index]" steps after a path head and
// returns them with the path's text. In a template, ".name(" is a method
// call and ends the path.
func (p *parser) segments(head string) ([]any, string, error) {
	var segs []any
	var text strings.Builder
	text.WriteString(head)
	for {
		if p.is(tOp, ".") && p.at(1).kind == tWord {
			if p.tmpl && p.at(2).kind == tOp && p.at(2).text == "(" {
				break
			}
			p.next()
			w := p.next()
			segs = append(segs, w.text)
			text.WriteString("." + w.text)
			continue
		}
		if !p.is(tOp, "[") {
			break
		}
		p.next()
		seg, err := p.index()
		if err != nil {
			return nil, "", err
		}
		segs = append(segs, seg)
		fmt.Fprintf(&text, "[%v]", seg)
	}
	return segs, text.String(), nil
}

// index parses the inside of "[...]" and the closing bracket.
func (p *parser) index() (any, error) {
	t := p.next()
	var seg any
	switch {
	case t.kind == tStr:
		seg = t.text
	case t.kind == tNum:
		n, ok := t.num.(int64)
		if !ok {
			return nil, p.errf("index must be an integer")
		}
		seg = int(n)
	case t.kind == tOp && t.text == "-" && p.peek().kind == tNum:
		n, ok := p.next().num.(int64)
		if !ok {
			return nil, p.errf("index must be an integer")
		}
		seg = -int(n)
	default:
		return nil, p.errf("bad index")
	}
	if !p.is(tOp, "]") {
		return nil, p.errf("missing ']'")
	}
	p.next()
	return seg, nil
}

// parsePathSegs parses a whole string as one path (var_root): its head and
// segments.
func parsePathSegs(s string) ([]any, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, src: s, tmpl: true}
	head := p.next()
	if head.kind != tWord {
		return nil, fmt.Errorf("%q is not a path", s)
	}
	segs, _, err := p.segments(head.text)
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, fmt.Errorf("%q is not a path", s)
	}
	return append([]any{head.text}, segs...), nil
}

// unary is a primary with, in a template, its method calls, attribute
// steps and filters.
func (p *parser) unary() (node, error) {
	n, err := p.primary()
	if err != nil || !p.tmpl {
		return n, err
	}
	if n, err = p.postfix(n); err != nil {
		return nil, err
	}
	for steps := 0; p.is(tOp, "|"); steps++ {
		if steps == maxNesting {
			return nil, p.errf("more than %d filters in a row", maxNesting)
		}
		p.next()
		if n, err = p.filter(n); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// postfix parses ".method(args)", ".name" and "[index]" after a template
// value.
func (p *parser) postfix(n node) (node, error) {
	for steps := 0; ; steps++ {
		if steps > maxNesting {
			return nil, p.errf("more than %d method calls and steps in a row", maxNesting)
		}
		switch {
		case p.is(tOp, ".") && p.at(1).kind == tWord && p.at(2).kind == tOp && p.at(2).text == "(":
			p.next()
			name := p.next().text
			if !knownMethod(name) {
				return nil, p.errf("unknown method %q", name)
			}
			args, kw, err := p.args()
			if err != nil {
				return nil, err
			}
			if len(kw) > 0 {
				return nil, p.errf("method %s() takes no keyword arguments", name)
			}
			n = &methodNode{recv: n, name: name, args: args}
		case p.is(tOp, ".") && p.at(1).kind == tWord || p.is(tOp, "["):
			segs, _, err := p.segments("")
			if err != nil {
				return nil, err
			}
			n = &attrNode{base: n, segs: segs}
		default:
			return n, nil
		}
	}
}

// filter parses "name" or "name(args)" after a "|".
func (p *parser) filter(in node) (node, error) {
	t := p.next()
	if t.kind != tWord {
		return nil, p.errf("expected a filter name after '|'")
	}
	f := &filterNode{in: in, name: t.text}
	if t.text != "default" && t.text != "d" {
		if f.fn = templateFilters[t.text]; f.fn == nil {
			return nil, p.errf("unknown filter %q", t.text)
		}
	}
	if !p.is(tOp, "(") {
		return f, nil
	}
	args, kw, err := p.args()
	if err != nil {
		return nil, err
	}
	f.args = args
	for _, k := range sortedKeys(kw) {
		f.kw = append(f.kw, kwArg{k, kw[k]})
	}
	return f, nil
}

// templateWord is a word in a template: a literal, or a variable path.
func (p *parser) templateWord(t token) (node, error) {
	switch t.text {
	case "true", "True":
		p.next()
		return &litNode{true}, nil
	case "false", "False":
		p.next()
		return &litNode{false}, nil
	case "null", "None", "none":
		p.next()
		return &litNode{nil}, nil
	case "and", "or", "not", "is", "in", "contains":
		return nil, p.errf("unexpected keyword %q", t.text)
	}
	p.next()
	segs, text, err := p.segments(t.text)
	if err != nil {
		return nil, err
	}
	if p.roots == nil {
		p.roots = map[string]bool{}
	}
	p.roots[t.text] = true
	return &nameNode{name: t.text, segs: segs, text: text}, nil
}

// parseTemplateExpr compiles the expression inside one {{ ... }}; roots
// are the variables it reads.
func parseTemplateExpr(src string) (node, map[string]bool, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, nil, fmt.Errorf("template {{ %s }}: %w", src, err)
	}
	if toks[0].kind == tEOF {
		return nil, nil, fmt.Errorf("template {{ %s }}: empty expression", src)
	}
	p := &parser{toks: toks, src: src, tmpl: true}
	n, err := p.orAnd()
	if err != nil {
		return nil, nil, err
	}
	if p.peek().kind != tEOF {
		return nil, nil, p.errf("unexpected %q", p.peek().text)
	}
	return n, p.roots, nil
}

func knownMethod(name string) bool {
	_, s := strMethods[name]
	_, d := dictMethods[name]
	_, l := listMethods[name]
	return s || d || l
}
