// Package rulebook loads and evaluates EDA rulebooks with ansible-rulebook's
// semantics, in Go: the same rulebook file means the same thing here as under
// ansible-rulebook with ansible.eda.webhook. See README.md for what is
// supported and the conformance count.
package rulebook

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Rulebook is a loaded, validated rulebook.
type Rulebook struct {
	File     string
	Rulesets []*Ruleset
	Vars     map[string]any
	paths    int // distinct event./fact. paths in conditions
}

// Ruleset is one ruleset.
type Ruleset struct {
	Name          string
	Hosts         string
	Sources       []Source
	Rules         []*Rule
	MatchMultiple bool
	DefaultTTL    time.Duration
}

// Source is one source declaration (validated; the receiver listens itself).
type Source struct {
	Name    string
	Plugin  string
	Args    any
	Filters []Filter
}

// Filter is one event filter of a source.
type Filter struct {
	Name string
	Args map[string]any
}

// Rule is one rule.
type Rule struct {
	Name     string
	Kind     RuleKind // the condition's shape
	Conds    []boolNode
	Aliases  []string // m_N or the << alias, per condition
	Texts    []string
	Timeout  time.Duration
	Actions  []Action
	Throttle *Throttle
	// existential is the path of a rule whose whole condition is
	// "X is not defined".
	existential node
}

// Action is one action with its unrendered arguments.
type Action struct {
	Name string
	Args map[string]any
	// compiled is Args prepared at load: plain strings as they are,
	// templates that only use rulebook vars rendered once, the others
	// pre-parsed (see compileArgs).
	compiled any
}

// Throttle limits how often a rule fires per group: exactly one of
// OnceWithin, OnceAfter or AccumulateWithin (with Threshold) is set.
type Throttle struct {
	// OnceWithin fires on the first event of a group and swallows the
	// group's events until the window ends.
	OnceWithin time.Duration
	// OnceAfter collects the unique (per group) events from the first one
	// on and fires once when the window ends, with all of them.
	OnceAfter time.Duration
	// AccumulateWithin fires when Threshold events of a group arrived
	// within the window; older ones expire.
	AccumulateWithin time.Duration
	Threshold        int
	GroupBy          []*pathNode
}

// LoadVarsFile reads a YAML or JSON mapping of variables.
func LoadVarsFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read vars: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind != yaml.MappingNode && doc.Content[0].Tag != "!!null" {
		return nil, fmt.Errorf("%s: vars must be a mapping", path)
	}
	out, _ := decode(&doc).(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	return out, nil
}

// LoadFile loads and validates a rulebook file.
func LoadFile(path string, vars map[string]any) (*Rulebook, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rulebook: %w", err)
	}
	return Load(b, path, vars)
}

type loader struct {
	file string
	vars map[string]any
	errs []error
	ids  map[string]int // path ids, see parser.ids
}

func (l *loader) errf(n *yaml.Node, format string, a ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	l.errs = append(l.errs, fmt.Errorf("%s:%d: %s", filepath.Base(l.file), line, fmt.Sprintf(format, a...)))
}

// Load parses and validates a rulebook; every problem is listed, each with
// its file and line.
func Load(data []byte, filename string, vars map[string]any) (*Rulebook, error) {
	if vars == nil {
		vars = map[string]any{}
	}
	l := &loader{file: filename, vars: vars}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	rb := &Rulebook{File: filename, Vars: vars}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: a rulebook is a list of rulesets", filename)
	}
	names := map[string]bool{}
	for _, rsn := range doc.Content[0].Content {
		rs := l.ruleset(rsn)
		if rs == nil {
			continue
		}
		if names[rs.Name] {
			l.errf(rsn, "ruleset name %q is not unique", rs.Name)
		}
		names[rs.Name] = true
		rb.Rulesets = append(rb.Rulesets, rs)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	rb.paths = len(l.ids)
	if err := compileActions(rb, vars); err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	return rb, nil
}

// compileActions compiles every action's templates; a template that does
// not parse (a syntax error, an unknown filter or method) fails the load.
func compileActions(rb *Rulebook, vars map[string]any) error {
	var errs []error
	for _, rs := range rb.Rulesets {
		for _, r := range rs.Rules {
			for i := range r.Actions {
				a := &r.Actions[i]
				a.compiled = compileArgs(a.Args, vars)
				if err := templateErr(a.compiled); err != nil {
					errs = append(errs, fmt.Errorf("ruleset %q rule %q action %s: %w", rs.Name, r.Name, a.Name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

type field struct {
	key *yaml.Node
	val *yaml.Node
}

func (l *loader) mapping(n *yaml.Node, what string, allowed ...string) map[string]field {
	out := map[string]field{}
	if n.Kind != yaml.MappingNode {
		l.errf(n, "%s must be a mapping", what)
		return out
	}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if len(allowed) > 0 && !ok[k.Value] {
			l.errf(k, "unknown key %q in %s (allowed: %s)", k.Value, what, strings.Join(allowed, ", "))
			continue
		}
		out[k.Value] = field{k, n.Content[i+1]}
	}
	return out
}

// decode turns a YAML node into JSON-like values; a plain integer too big
// for int64 (which YAML resolves as a float) stays an exact *big.Int.
func decode(n *yaml.Node) any {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!float" && n.Style == 0 && isDecimal(n.Value):
		if v, _ := parseInt(n.Value); v != nil {
			if _, isBig := v.(*big.Int); isBig {
				return v
			}
		}
	case n.Kind == yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			out[i] = decode(c)
		}
		return out
	case n.Kind == yaml.MappingNode && !hasMerge(n):
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			var k any
			_ = n.Content[i].Decode(&k)
			out[fmt.Sprint(k)] = decode(n.Content[i+1])
		}
		return out
	case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
		return decode(n.Content[0])
	}
	var v any
	_ = n.Decode(&v)
	return normalize(v)
}

// hasMerge reports a mapping with a "<<" merge key (left to yaml's decoder).
func hasMerge(n *yaml.Node) bool {
	for i := 0; i < len(n.Content); i += 2 {
		if n.Content[i].Tag == "!!merge" {
			return true
		}
	}
	return false
}

// normalize turns YAML-decoded values into JSON-like ones (map[string]any,
// []any, int64, float64).
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = normalize(val)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	case int:
		return int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return new(big.Int).SetUint64(x)
		}
		return int64(x)
	}
	return v
}

var durRe = regexp.MustCompile(`^(\d+)\s+(milliseconds?|seconds?|minutes?|hours?|days?)$`)

// maxDuration bounds rulebook times (throttle, timeout, ttl windows): 100 years.
const maxDuration = 100 * 365 * 24 * time.Hour

func parseDuration(s string) (time.Duration, error) {
	m := durRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("time %q: want '<n> seconds|minutes|hours|days'", s)
	}
	unit := map[string]time.Duration{"millisecond": time.Millisecond, "second": time.Second, "minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[strings.TrimSuffix(m[2], "s")]
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > int64(maxDuration/unit) {
		// An overflow would wrap to a negative or zero window and silently
		// disable throttling or timeouts.
		return 0, fmt.Errorf("time %q: longer than %d days", s, maxDuration/(24*time.Hour))
	}
	return time.Duration(n) * unit, nil
}

func (l *loader) ruleset(n *yaml.Node) *Ruleset {
	f := l.mapping(n, "ruleset", "name", "hosts", "sources", "rules", "gather_facts", "default_events_ttl", "execution_strategy", "match_multiple_rules")
	rs := &Ruleset{DefaultTTL: 2 * time.Hour}
	for _, req := range []string{"name", "hosts", "sources", "rules"} {
		if _, ok := f[req]; !ok {
			l.errf(n, "ruleset lacks required key %q", req)
		}
	}
	if v, ok := f["name"]; ok {
		rs.Name = strings.TrimSpace(v.val.Value)
		if rs.Name == "" {
			l.errf(v.val, "ruleset name is empty")
		}
	}
	if v, ok := f["hosts"]; ok {
		rs.Hosts = v.val.Value
	}
	if v, ok := f["match_multiple_rules"]; ok {
		rs.MatchMultiple = v.val.Value == "true"
	}
	if v, ok := f["default_events_ttl"]; ok {
		d, err := parseDuration(v.val.Value)
		if err != nil {
			l.errf(v.val, "default_events_ttl: %v", err)
		}
		rs.DefaultTTL = d
	}
	if v, ok := f["execution_strategy"]; ok && v.val.Value != "sequential" && v.val.Value != "parallel" {
		l.errf(v.val, "execution_strategy must be sequential or parallel")
	}
	if v, ok := f["sources"]; ok {
		if v.val.Kind != yaml.SequenceNode || len(v.val.Content) == 0 {
			l.errf(v.val, "sources must be a non-empty list")
		} else {
			for _, sn := range v.val.Content {
				rs.Sources = append(rs.Sources, l.source(sn))
			}
		}
	}
	if v, ok := f["rules"]; ok {
		if v.val.Kind != yaml.SequenceNode {
			l.errf(v.val, "rules must be a list")
		} else {
			names := map[string]bool{}
			for _, rn := range v.val.Content {
				r, enabled := l.rule(rn)
				if r == nil {
					continue
				}
				if names[r.Name] {
					l.errf(rn, "rule name %q is not unique in ruleset %q", r.Name, rs.Name)
				}
				names[r.Name] = true
				if enabled {
					rs.Rules = append(rs.Rules, r)
				}
			}
		}
	}
	return rs
}

func (l *loader) source(n *yaml.Node) Source {
	var s Source
	if n.Kind != yaml.MappingNode {
		l.errf(n, "a source must be a mapping")
		return s
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
			s.Name = v.Value
		case "filters":
			if v.Kind != yaml.SequenceNode {
				l.errf(v, "filters must be a list")
				continue
			}
			for _, fn := range v.Content {
				if fn.Kind != yaml.MappingNode || len(fn.Content) != 2 {
					l.errf(fn, "a filter is a mapping with one key")
					continue
				}
				args, _ := decode(fn.Content[1]).(map[string]any)
				s.Filters = append(s.Filters, Filter{Name: fn.Content[0].Value, Args: args})
			}
		default:
			if s.Plugin != "" {
				l.errf(k, "a source has exactly one plugin key (found %q and %q)", s.Plugin, k.Value)
			}
			s.Plugin = k.Value
			s.Args = decode(v)
		}
	}
	if s.Plugin == "" {
		l.errf(n, "source has no plugin")
	}
	if s.Name == "" {
		s.Name = s.Plugin
	}
	for _, f := range s.Filters {
		if _, ok := filterFuncs[canonicalFilter(f.Name)]; !ok {
			l.errf(n, "unknown filter %q (supported: %s)", f.Name, strings.Join(filterNames(), ", "))
		}
	}
	return s
}

func (l *loader) rule(n *yaml.Node) (*Rule, bool) {
	f := l.mapping(n, "rule", "name", "condition", "action", "actions", "enabled", "throttle")
	r := &Rule{}
	nm, ok := f["name"]
	if !ok || strings.TrimSpace(nm.val.Value) == "" {
		l.errf(n, "rule needs a non-empty name")
		return nil, false
	}
	r.Name = nm.val.Value
	enabled := true
	if v, ok := f["enabled"]; ok {
		enabled = v.val.Value != "false"
	}
	c, ok := f["condition"]
	if !ok {
		l.errf(n, "rule %q has no condition", r.Name)
		return nil, false
	}
	l.conditions(r, c.val)
	if r.Kind == RuleSingle && len(r.Conds) == 1 {
		if d, ok := r.Conds[0].(*definedNode); ok && d.not {
			r.existential = d.p
		}
	}
	l.ruleActions(r, n, f)
	if v, ok := f["throttle"]; ok {
		r.Throttle = l.throttle(r, v.val)
	}
	return r, enabled
}

// ruleActions reads a rule's action or actions (exactly one of them).
func (l *loader) ruleActions(r *Rule, n *yaml.Node, f map[string]field) {
	_, a1 := f["action"]
	_, a2 := f["actions"]
	if a1 == a2 {
		l.errf(n, "rule %q needs exactly one of action or actions", r.Name)
	}
	if v, ok := f["action"]; ok {
		r.Actions = append(r.Actions, l.action(v.val))
	}
	if v, ok := f["actions"]; ok {
		if v.val.Kind != yaml.SequenceNode {
			l.errf(v.val, "actions must be a list")
		}
		for _, an := range v.val.Content {
			r.Actions = append(r.Actions, l.action(an))
		}
	}
}

// throttle reads a rule's throttle: one of once_within, once_after or
// accumulate_within (with threshold), and group_by_attributes.
func (l *loader) throttle(r *Rule, n *yaml.Node) *Throttle {
	tf := l.mapping(n, "throttle", "once_within", "once_after", "accumulate_within", "threshold", "group_by_attributes")
	t := &Throttle{}
	kinds := 0
	for _, k := range []string{"once_within", "once_after", "accumulate_within"} {
		w, ok := tf[k]
		if !ok {
			continue
		}
		kinds++
		d, err := parseDuration(w.val.Value)
		if err != nil {
			l.errf(w.val, "%s: %v", k, err)
		}
		switch k {
		case "once_within":
			t.OnceWithin = d
		case "once_after":
			t.OnceAfter = d
		case "accumulate_within":
			t.AccumulateWithin = d
		}
	}
	if kinds != 1 {
		l.errf(n, "throttle needs exactly one of once_within, once_after or accumulate_within")
	}
	if th, ok := tf["threshold"]; ok {
		count, err := strconv.Atoi(th.val.Value)
		if err != nil || count < 1 {
			l.errf(th.val, "threshold must be an integer >= 1")
		}
		t.Threshold = count
		if t.AccumulateWithin == 0 {
			l.errf(th.val, "threshold goes with accumulate_within")
		}
	} else if t.AccumulateWithin > 0 {
		l.errf(n, "accumulate_within needs a threshold")
	}
	if g, ok := tf["group_by_attributes"]; ok {
		for _, gn := range g.val.Content {
			pn, err := parsePath(gn.Value)
			if err != nil {
				l.errf(gn, "group_by_attributes: %v", err)
				continue
			}
			t.GroupBy = append(t.GroupBy, pn)
		}
	} else {
		l.errf(n, "throttle needs group_by_attributes")
	}
	if r.Kind != RuleSingle {
		l.errf(n, "throttle applies to single-condition rules only")
	}
	return t
}

func parsePath(s string) (*pathNode, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, src: s}
	n, err := p.path()
	if err != nil {
		return nil, err
	}
	pn, ok := n.(*pathNode)
	if !ok {
		return nil, fmt.Errorf("%q is not an event path", s)
	}
	return pn, nil
}

func (l *loader) conditions(r *Rule, n *yaml.Node) {
	add := func(cn *yaml.Node, i int) {
		src := cn.Value
		if cn.Kind != yaml.ScalarNode {
			l.errf(cn, "a condition must be a string")
			return
		}
		src = renderVarsInCondition(src, l.vars)
		if l.ids == nil {
			l.ids = map[string]int{}
		}
		b, alias, err := parseConditionIDs(src, l.vars, l.ids)
		if err != nil {
			l.errf(cn, "%v", err)
			return
		}
		if alias == "" {
			if r.Kind == RuleSingle {
				alias = "m"
			} else {
				alias = "m_" + strconv.Itoa(i)
			}
		}
		r.Conds = append(r.Conds, b)
		r.Aliases = append(r.Aliases, alias)
		r.Texts = append(r.Texts, src)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		r.Kind = RuleSingle
		if n.Tag == "!!bool" {
			v := n.Value == "true"
			r.Conds, r.Aliases, r.Texts = []boolNode{&constNode{v}}, []string{"m"}, []string{n.Value}
			return
		}
		add(n, 0)
	case yaml.MappingNode:
		l.conditionMapping(r, n, add)
	default:
		l.errf(n, "condition must be a string, a boolean or a mapping")
	}
}

// conditionMapping reads a condition mapping: exactly one of all, any or
// not_all (each condition given to add), and timeout (required by not_all,
// refused with any).
func (l *loader) conditionMapping(r *Rule, n *yaml.Node, add func(cn *yaml.Node, i int)) {
	f := l.mapping(n, "condition", "all", "any", "not_all", "timeout")
	for _, kind := range []RuleKind{RuleAll, RuleAny, RuleNotAll} {
		if v, ok := f[string(kind)]; ok {
			if r.Kind != "" {
				l.errf(n, "condition has more than one of all/any/not_all")
			}
			r.Kind = kind
			for i, cn := range v.val.Content {
				add(cn, i)
			}
		}
	}
	if _, ok := f["timeout"]; !ok && r.Kind == RuleNotAll {
		l.errf(n, "not_all needs a timeout")
	}
	if v, ok := f["timeout"]; ok {
		if r.Kind == RuleAny {
			l.errf(v.val, "timeout is not allowed with any")
		}
		d, err := parseDuration(v.val.Value)
		if err != nil {
			l.errf(v.val, "timeout: %v", err)
		}
		r.Timeout = d
	}
	if r.Kind == "" {
		l.errf(n, "condition mapping needs all, any or not_all")
	}
}

// renderVarsInCondition renders {{ name }} in condition strings against vars
// at load time, as ansible-rulebook does.
func renderVarsInCondition(src string, vars map[string]any) string {
	if !strings.Contains(src, "{{") {
		return src
	}
	out, err := renderString(src, vars)
	if err != nil {
		return src
	}
	return toString(out)
}

func (l *loader) action(n *yaml.Node) Action {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		l.errf(n, "an action is a mapping with one key (the action name)")
		return Action{}
	}
	name := n.Content[0].Value
	spec, ok := LookupAction(name)
	if !ok {
		l.errf(n.Content[0], "unknown action %q (known: %s)", name, strings.Join(ActionNames(), ", "))
		return Action{Name: name}
	}
	a := Action{Name: name, Args: map[string]any{}}
	if v := n.Content[1]; v.Kind == yaml.MappingNode {
		f := l.mapping(v, "action "+name, spec.Args...)
		for k, fv := range f {
			a.Args[k] = decode(fv.val)
		}
		if spec.Job == JobTemplate || spec.Job == JobWorkflowTemplate {
			if _, ok := f["extra_vars"]; ok {
				l.errf(v, "%s: extra_vars belongs inside job_args", name)
			}
		}
	} else if v.Tag != "!!null" {
		l.errf(v, "arguments of %s must be a mapping", name)
	}
	for _, req := range spec.Required {
		if _, ok := a.Args[req]; !ok {
			l.errf(n, "action %s needs %q", name, req)
		}
	}
	return a
}
