// The condition language's lexer and recursive-descent parser, producing
// the AST of condition.go.

package rulebook

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode"
)

// The condition language of ansible-rulebook (its condition_parser.py
// grammar): and/or share one precedence level and group left to right; not
// binds looser than comparisons; << (assignment) binds loosest.

type tokKind int

const (
	tEOF tokKind = iota
	tNum
	tStr
	tWord // bare word, keyword or path head
	tOp
)

type token struct {
	kind tokKind
	text string
	num  any
	pos  int
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(src[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated string at column %d", i+1)
			}
			s := src[i+1 : i+1+j]
			s = strings.NewReplacer(`\n`, "\n", `\t`, "\t", `\r`, "\r", `\f`, "\f").Replace(s)
			toks = append(toks, token{kind: tStr, text: s, pos: i})
			i += j + 2
		case c >= '0' && c <= '9' || (c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9'):
			j := i
			isFloat := false
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' || src[j] == 'e' || src[j] == 'E' ||
				((src[j] == '-' || src[j] == '+') && j > i && (src[j-1] == 'e' || src[j-1] == 'E'))) {
				if src[j] == '.' || src[j] == 'e' || src[j] == 'E' {
					isFloat = true
				}
				j++
			}
			text := src[i:j]
			var v any
			if isFloat {
				f, err := strconv.ParseFloat(text, 64)
				if err != nil {
					return nil, fmt.Errorf("bad number %q at column %d", text, i+1)
				}
				v = f
			} else {
				n, err := parseInt(text)
				if err != nil {
					return nil, fmt.Errorf("bad number %q at column %d", text, i+1)
				}
				v = n
			}
			toks = append(toks, token{kind: tNum, text: text, num: v, pos: i})
			i = j
		case c == '_' || unicode.IsLetter(rune(c)):
			j := i
			for j < len(src) && (src[j] == '_' || unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j]))) {
				j++
			}
			toks = append(toks, token{kind: tWord, text: src[i:j], pos: i})
			i = j
		default:
			for _, op := range []string{"<<", "==", "!=", ">=", "<=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",", ".", "=", "|"} {
				if strings.HasPrefix(src[i:], op) {
					toks = append(toks, token{kind: tOp, text: op, pos: i})
					i += len(op)
					goto next
				}
			}
			return nil, fmt.Errorf("unexpected character %q at column %d", c, i+1)
		next:
		}
	}
	return append(toks, token{kind: tEOF, pos: len(src)}), nil
}

type parser struct {
	toks []token
	i    int
	vars map[string]any
	src  string
	// ids numbers distinct event/fact paths across a rulebook (from 1), so
	// that a session can evaluate each one once per event.
	ids map[string]int
	// depth counts nested parentheses, lists and negations being parsed.
	depth int
	// tmpl parses a template expression ({{ ... }}): bare words are
	// variables, and filters and method calls are allowed.
	tmpl bool
	// roots are the variable names a template expression reads.
	roots map[string]bool
}

// maxNesting bounds how deep a condition may nest: recursion on hostile
// input (10^5 parentheses) would otherwise take seconds and gigabytes or
// overflow the stack. Real conditions nest a handful of levels.
const maxNesting = 100

// nest enters one level of nesting; the caller defers leave.
func (p *parser) nest() error {
	if p.depth++; p.depth > maxNesting {
		return p.errf("condition nests deeper than %d levels", maxNesting)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// assignment is an "events.name << condition" binding.
type assignment struct {
	name string
	cond boolNode
}

func (p *parser) peek() token { return p.at(0) }

// at looks k tokens ahead; past the end it is the EOF token.
func (p *parser) at(k int) token {
	if p.i+k >= len(p.toks) {
		return p.toks[len(p.toks)-1]
	}
	return p.toks[p.i+k]
}

func (p *parser) next() token {
	t := p.at(0)
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}
func (p *parser) is(kind tokKind, text string) bool {
	t := p.peek()
	return t.kind == kind && t.text == text
}
func (p *parser) errf(format string, a ...any) error {
	if p.tmpl {
		return fmt.Errorf("template {{ %s }}, column %d: %s", p.src, p.peek().pos+1, fmt.Sprintf(format, a...))
	}
	return fmt.Errorf("condition %q, column %d: %s", p.src, p.peek().pos+1, fmt.Sprintf(format, a...))
}

// parseCondition compiles one condition string.
func parseCondition(src string, vars map[string]any) (boolNode, string, error) {
	return parseConditionIDs(src, vars, nil)
}

func parseConditionIDs(src string, vars map[string]any, ids map[string]int) (boolNode, string, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, "", fmt.Errorf("condition %q: %w", src, err)
	}
	p := &parser{toks: toks, vars: vars, src: src, ids: ids}
	alias := ""
	// events.x << cond / facts.x << cond
	if len(toks) > 4 && toks[0].kind == tWord && (toks[0].text == "events" || toks[0].text == "facts") &&
		toks[1].text == "." && toks[2].kind == tWord && toks[3].text == "<<" {
		alias = toks[2].text
		p.i = 4
	}
	n, err := p.orAnd()
	if err != nil {
		return nil, "", err
	}
	if p.is(tOp, "<<") {
		return nil, "", p.errf("the left side of << must be events.<name> or facts.<name>")
	}
	if p.peek().kind != tEOF {
		return nil, "", p.errf("unexpected %q", p.peek().text)
	}
	b, err := asBool(n)
	if err != nil {
		return nil, "", fmt.Errorf("condition %q: %w", src, err)
	}
	return b, alias, nil
}

func asBool(n node) (boolNode, error) {
	switch x := n.(type) {
	case boolNode:
		return x, nil
	case *pathNode:
		return &truthNode{x}, nil
	case *litNode:
		if b, ok := x.v.(bool); ok {
			return &constNode{b}, nil
		}
		return &truthNode{x}, nil
	}
	return &truthNode{n}, nil
}

func (p *parser) orAnd() (node, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.is(tWord, "and") || p.is(tWord, "or") {
		op := p.next().text
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		lb, err1 := asBool(l)
		rb, err2 := asBool(r)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if op == "and" {
			l = &andNode{lb, rb}
		} else {
			l = &orNode{lb, rb}
		}
	}
	return l, nil
}

func (p *parser) not() (node, error) {
	if p.is(tWord, "not") && !(p.at(1).kind == tWord && (strings.EqualFold(p.at(1).text, "in") || strings.EqualFold(p.at(1).text, "contains"))) {
		p.next()
		if err := p.nest(); err != nil {
			return nil, err
		}
		defer p.leave()
		n, err := p.not()
		if err != nil {
			return nil, err
		}
		b, err := asBool(n)
		if err != nil {
			return nil, err
		}
		return b.negate(), nil
	}
	return p.inExpr()
}

func (p *parser) inExpr() (node, error) {
	l, err := p.isExpr()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		op := ""
		switch {
		case t.kind == tWord && strings.EqualFold(t.text, "in"):
			op = "in"
			p.next()
		case t.kind == tWord && strings.EqualFold(t.text, "contains"):
			op = "contains"
			p.next()
		case t.kind == tWord && t.text == "not" && p.at(1).kind == tWord &&
			(strings.EqualFold(p.at(1).text, "in") || strings.EqualFold(p.at(1).text, "contains")):
			p.next()
			op = "not " + strings.ToLower(p.next().text)
		}
		if op == "" {
			return l, nil
		}
		r, err := p.isExpr()
		if err != nil {
			return nil, err
		}
		l = &inNode{op, l, r}
	}
}

func (p *parser) isExpr() (node, error) {
	l, err := p.cmp()
	if err != nil {
		return nil, err
	}
	for p.is(tWord, "is") {
		p.next()
		neg := false
		if p.is(tWord, "not") {
			p.next()
			neg = true
		}
		t := p.next()
		if t.kind != tWord {
			return nil, p.errf("expected a test after 'is'")
		}
		switch t.text {
		case "defined":
			if _, ok := l.(*pathNode); !ok {
				return nil, p.errf("'is defined' needs an event/fact path")
			}
			l = &definedNode{l, neg}
		case "match", "search", "regex":
			l, err = p.searchTest(t.text, l, neg)
		case "select", "selectattr":
			l, err = p.selectTest(t.text, l, neg)
		default:
			return nil, p.errf("unknown test %q", t.text)
		}
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// searchTest parses the arguments of "is [not] match/search/regex(pattern,
// ignorecase=, multiline=)"; a literal pattern is compiled now.
func (p *parser) searchTest(kind string, l node, neg bool) (node, error) {
	args, kw, err := p.args()
	if err != nil {
		return nil, err
	}
	if len(args) != 1 {
		return nil, p.errf("%s() takes one pattern", kind)
	}
	flags := ""
	for k, v := range kw {
		b, _ := v.(bool)
		switch k {
		case "ignorecase":
			if b {
				flags += "i"
			}
		case "multiline":
			if b {
				flags += "m"
			}
		default:
			return nil, p.errf("unknown %s() option %q", kind, k)
		}
	}
	s := &searchNode{l: l, pattern: args[0], kind: kind, flags: flags, not: neg}
	if lit, ok := args[0].(*litNode); ok {
		ps, ok := lit.v.(string)
		if !ok {
			return nil, p.errf("%s() pattern must be a string", kind)
		}
		if s.re, err = compileSearch(kind, ps, flags, true); err != nil {
			return nil, p.errf("%v", err)
		}
	}
	return s, nil
}

// selectOps are the operators of select(); selectattr also takes the
// membership ones.
var (
	selectOps     = map[string]bool{"==": true, "!=": true, ">": true, ">=": true, "<": true, "<=": true, "regex": true, "search": true, "match": true}
	selectattrOps = map[string]bool{"in": true, "not in": true, "contains": true, "not contains": true}
)

// selectTest parses the arguments of "is [not] select(op, value)" and
// "is [not] selectattr(key, op, value)"; a literal regex value is compiled
// now.
func (p *parser) selectTest(kind string, l node, neg bool) (node, error) {
	args, _, err := p.args()
	if err != nil {
		return nil, err
	}
	want := 2
	if kind == "selectattr" {
		want = 3
	}
	if len(args) != want {
		return nil, p.errf("%s() takes %d arguments", kind, want)
	}
	s := &selectNode{l: l, not: neg, val: args[want-1]}
	opLit, ok := args[want-2].(*litNode)
	if !ok {
		return nil, p.errf("%s() operator must be a string", kind)
	}
	s.op, _ = opLit.v.(string)
	valid := selectOps[s.op]
	if kind == "selectattr" {
		valid = valid || selectattrOps[s.op]
		keyLit, ok := args[0].(*litNode)
		if !ok {
			return nil, p.errf("selectattr() key must be a string")
		}
		ks, isStr := keyLit.v.(string)
		if !isStr {
			return nil, p.errf("selectattr() key must be a string")
		}
		for _, seg := range strings.Split(ks, ".") {
			s.key = append(s.key, seg)
		}
	}
	if !valid {
		return nil, p.errf("%s() does not support operator %q", kind, s.op)
	}
	if lit, ok := s.val.(*litNode); ok && (s.op == "regex" || s.op == "search" || s.op == "match") {
		if ps, ok := lit.v.(string); ok {
			if s.isRe, err = compileSearch("search", ps, "", false); err != nil {
				return nil, p.errf("%v", err)
			}
		}
	}
	return s, nil
}

// args parses "(a, b, key=value)".
func (p *parser) args() ([]node, map[string]any, error) {
	if !p.is(tOp, "(") {
		return nil, nil, p.errf("expected '('")
	}
	p.next()
	var args []node
	kw := map[string]any{}
	for !p.is(tOp, ")") {
		if p.peek().kind == tWord && p.at(1).text == "=" {
			k := p.next().text
			p.next()
			v, err := p.primary()
			if err != nil {
				return nil, nil, err
			}
			lit, ok := v.(*litNode)
			if !ok {
				return nil, nil, p.errf("option %s needs a literal", k)
			}
			kw[k] = lit.v
		} else {
			v, err := p.add()
			if err != nil {
				return nil, nil, err
			}
			args = append(args, v)
		}
		if p.is(tOp, ",") {
			p.next()
		} else if !p.is(tOp, ")") {
			return nil, nil, p.errf("expected ',' or ')'")
		}
	}
	p.next()
	return args, kw, nil
}

func (p *parser) cmp() (node, error) {
	l, err := p.add()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp || flipCmp[t.text] == "" {
			return l, nil
		}
		p.next()
		r, err := p.add()
		if err != nil {
			return nil, err
		}
		l = &cmpNode{t.text, l, r}
	}
}

func (p *parser) add() (node, error) {
	l, err := p.mul()
	if err != nil {
		return nil, err
	}
	for p.is(tOp, "+") || p.is(tOp, "-") {
		op := p.next().text[0]
		r, err := p.mul()
		if err != nil {
			return nil, err
		}
		l = &arithNode{op, l, r}
	}
	return l, nil
}

func (p *parser) mul() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	if p.is(tOp, "*") || p.is(tOp, "/") {
		return nil, p.errf("operator %q is not supported by ansible-rulebook (only + and -)", p.peek().text)
	}
	return l, nil
}

func (p *parser) primary() (node, error) {
	if err := p.nest(); err != nil {
		return nil, err
	}
	defer p.leave()
	t := p.peek()
	switch {
	case t.kind == tOp && t.text == "(":
		p.next()
		n, err := p.orAnd()
		if err != nil {
			return nil, err
		}
		if !p.is(tOp, ")") {
			return nil, p.errf("missing ')'")
		}
		p.next()
		return n, nil
	case t.kind == tOp && t.text == "[":
		return p.list()
	case t.kind == tOp && (t.text == "-" || t.text == "+") && p.at(1).kind == tNum:
		p.next()
		n := p.next()
		if t.text == "-" {
			switch v := n.num.(type) {
			case int64:
				return &litNode{-v}, nil
			case *big.Int:
				return &litNode{new(big.Int).Neg(v)}, nil
			case float64:
				return &litNode{-v}, nil
			}
		}
		return &litNode{n.num}, nil
	case t.kind == tNum:
		p.next()
		return &litNode{t.num}, nil
	case t.kind == tStr:
		p.next()
		return &litNode{t.text}, nil
	case t.kind == tWord:
		return p.word(t)
	}
	return nil, p.errf("unexpected %q", t.text)
}

// list parses "[a, b, ...]": a literal when every item is one.
func (p *parser) list() (node, error) {
	p.next()
	l := &listNode{}
	for !p.is(tOp, "]") {
		v, err := p.add()
		if err != nil {
			return nil, err
		}
		l.items = append(l.items, v)
		if p.is(tOp, ",") {
			p.next()
		} else if !p.is(tOp, "]") {
			return nil, p.errf("expected ',' or ']'")
		}
	}
	p.next()
	vals := make([]any, 0, len(l.items))
	for _, it := range l.items {
		lit, ok := it.(*litNode)
		if !ok {
			return l, nil
		}
		vals = append(vals, lit.v)
	}
	return &litNode{vals}, nil
}

// word parses a word: a boolean or null literal, a path, or a bare string;
// keywords are errors here.
func (p *parser) word(t token) (node, error) {
	if p.tmpl {
		return p.templateWord(t)
	}
	switch t.text {
	case "true", "True":
		p.next()
		return &litNode{true}, nil
	case "false", "False":
		p.next()
		return &litNode{false}, nil
	case "null":
		p.next()
		return &litNode{nil}, nil
	case "event", "events", "fact", "facts", "vars":
		return p.path()
	case "and", "or", "not", "is", "in", "contains":
		return nil, p.errf("unexpected keyword %q", t.text)
	}
	p.next()
	return &litNode{t.text}, nil // a bare word is a string
}

func (p *parser) path() (node, error) {
	head := p.next()
	pn := &pathNode{prefix: head.text}
	segs, text, err := p.segments(head.text)
	if err != nil {
		return nil, err
	}
	pn.segs = segs
	pn.text = text
	if len(pn.segs) == 0 {
		return nil, p.errf("%q alone is not a valid identifier; name an attribute", head.text)
	}
	if pn.prefix == "vars" {
		v, ok := walk(p.vars, pn.segs)
		if !ok {
			return nil, p.errf("vars does not contain key: %s", strings.TrimPrefix(pn.text, "vars."))
		}
		if _, isMap := v.(map[string]any); isMap {
			return nil, p.errf("vars.%s is a mapping; conditions need a value", strings.TrimPrefix(pn.text, "vars."))
		}
		return &litNode{normalize(v)}, nil
	}
	if p.ids != nil && (pn.prefix == "event" || pn.prefix == "fact") {
		key := pn.prefix + "\x00" + pn.text
		if pn.id = p.ids[key]; pn.id == 0 {
			pn.id = len(p.ids) + 1
			p.ids[key] = pn.id
		}
	}
	return pn, nil
}
