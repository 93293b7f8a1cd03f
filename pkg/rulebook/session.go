package rulebook

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Options configure a Session.
type Options struct {
	Now    func() time.Time
	Logger *zap.Logger
	// MaxPartials bounds the objects kept per multi-condition rule (default 10000).
	MaxPartials int
}

// Fired is one action a rule fired, with rendered arguments.
type Fired struct {
	Ruleset        string         `json:"ruleset"`
	Rule           string         `json:"rule"`
	Action         string         `json:"action"`
	Args           map[string]any `json:"args"`
	MatchingEvents map[string]any `json:"matching_events"`
}

type stored struct {
	obj  map[string]any
	at   time.Time
	fact bool
}

type rsState struct {
	rs       *Ruleset
	facts    []map[string]any
	partials map[*Rule][]stored
	throttle map[string]time.Time
	// Time windows: not_all rules waiting for their timeout, once_after
	// collections waiting for the end of their window, accumulate_within
	// counts per group.
	notAll    map[*Rule]*notAllWindow
	onceAfter map[*Rule]*onceAfterWindow
	accum     map[string][]time.Time
}

type notAllWindow struct {
	start   time.Time
	matched map[int]map[string]any // condition index -> object
}

type onceAfterWindow struct {
	start  time.Time
	groups map[string]bool
	events []map[string]any
}

// Session evaluates events against a rulebook, keeping facts, partial
// multi-condition matches and throttle windows. It is not goroutine-safe.
type Session struct {
	ctx   map[string]any // rendering context, see fire
	env   env            // reused for single-condition tests, with memo
	now   time.Time      // the time of the event being processed (zero: ask Now)
	rb    *Rulebook
	opts  Options
	state []*rsState
	byNm  map[string]*rsState
	depth int
	queue []queued // events and facts posted by actions, run after the current rule
}

type queued struct {
	st   *rsState
	obj  map[string]any
	fact bool
}

// drain runs what actions posted (post_event, set_fact) in order, after the
// rule that posted them finished, as ansible-rulebook queues them.
func (s *Session) drain(out []Fired) ([]Fired, error) {
	for n := 0; len(s.queue) > 0; n++ {
		if n > 10000 {
			s.queue = nil
			return out, fmt.Errorf("more than 10000 events posted by actions for one event: a post_event/set_fact loop?")
		}
		q := s.queue[0]
		s.queue = s.queue[1:]
		f, err := s.process(q.st, q.obj, q.fact)
		out = append(out, f...)
		if err != nil {
			s.queue = nil
			return out, err
		}
	}
	return out, nil
}

// NewSession starts a session over rb.
func NewSession(rb *Rulebook, opts Options) *Session {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.MaxPartials == 0 {
		opts.MaxPartials = 10000
	}
	s := &Session{rb: rb, opts: opts, byNm: map[string]*rsState{}}
	s.env.memo = make([]memoEntry, rb.paths+1)
	for _, rs := range rb.Rulesets {
		st := &rsState{rs: rs, partials: map[*Rule][]stored{}, throttle: map[string]time.Time{},
			notAll: map[*Rule]*notAllWindow{}, onceAfter: map[*Rule]*onceAfterWindow{}, accum: map[string][]time.Time{}}
		s.state = append(s.state, st)
		s.byNm[rs.Name] = st
	}
	return s
}

// Process runs a webhook event through each ruleset's source filters and
// rules, returning every action fired, in order.
func (s *Session) Process(event map[string]any) ([]Fired, error) {
	s.now = s.opts.Now()
	defer func() { s.now = time.Time{} }()
	// Windows that ended before this event fire first.
	out, err := s.Advance(s.now)
	if err != nil {
		return out, err
	}
	for _, st := range s.state {
		// The engine never mutates an event; filters work on a copy.
		evs := []map[string]any{event}
		if src := webhookSource(st.rs); src != nil && len(src.Filters) > 0 {
			var err error
			if evs, err = applyFilters(src.Filters, []map[string]any{deepCopy(event)}); err != nil {
				return out, err
			}
		}
		for _, ev := range evs {
			f, err := s.process(st, ev, false)
			out = append(out, f...)
			if err != nil {
				return out, err
			}
			if out, err = s.drain(out); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// ProcessRaw runs an event that is already source-shaped: filters still run.
func (s *Session) ProcessRaw(event map[string]any) ([]Fired, error) { return s.Process(event) }

// ProcessDirect injects an event into every ruleset with no filters (as
// ansible-rulebook's tests put events straight on a ruleset's queue).
func (s *Session) ProcessDirect(ruleset string, event map[string]any) ([]Fired, error) {
	st := s.byNm[ruleset]
	if st == nil {
		return nil, fmt.Errorf("no ruleset %q", ruleset)
	}
	out, err := s.Advance(s.opts.Now())
	if err != nil {
		return out, err
	}
	f, err := s.process(st, deepCopy(event), false)
	out = append(out, f...)
	if err != nil {
		return out, err
	}
	return s.drain(out)
}

// PostEvent posts an event (e.g. job artifacts) into a ruleset.
func (s *Session) PostEvent(ruleset string, ev map[string]any) ([]Fired, error) {
	return s.ProcessDirect(ruleset, ev)
}

// SetFact asserts a fact into a ruleset and evaluates the rules.
func (s *Session) SetFact(ruleset string, fact map[string]any) ([]Fired, error) {
	st := s.byNm[ruleset]
	if st == nil {
		return nil, fmt.Errorf("no ruleset %q", ruleset)
	}
	f := deepCopy(fact)
	st.facts = append(st.facts, f)
	out, err := s.process(st, f, true)
	if err != nil {
		return out, err
	}
	return s.drain(out)
}

func webhookSource(rs *Ruleset) *Source {
	for i := range rs.Sources {
		p := rs.Sources[i].Plugin
		if strings.HasSuffix(p, ".webhook") || p == "webhook" {
			return &rs.Sources[i]
		}
	}
	if len(rs.Sources) > 0 {
		return &rs.Sources[0]
	}
	return nil
}

const maxCascade = 100

func (s *Session) process(st *rsState, obj map[string]any, isFact bool) ([]Fired, error) {
	s.depth++
	defer func() { s.depth-- }()
	if s.depth > maxCascade {
		return nil, fmt.Errorf("ruleset %q: more than %d cascading set_fact/post_event actions", st.rs.Name, maxCascade)
	}
	now := s.now
	if now.IsZero() {
		now = s.opts.Now()
	}
	// One memo generation per object: each event path is walked once
	// however many single-condition rules test it.
	s.env.gen++
	if s.env.gen == 0 {
		clear(s.env.memo)
		s.env.gen = 1
	}
	s.env.cur, s.env.bound = obj, nil
	var out []Fired
	for _, r := range st.rs.Rules {
		if r.existential != nil {
			continue // fires on working-memory changes, see retract
		}
		matched, ok := s.match(st, r, obj, isFact, now)
		if !ok {
			continue
		}
		if r.Throttle != nil && s.throttled(st, r, obj, now) {
			// Swallowed by once_within, collected by once_after, counted by
			// accumulate_within: the event is still consumed by this rule.
			if !st.rs.MatchMultiple {
				break
			}
			continue
		}
		f, err := s.fire(st, r, matched)
		out = append(out, f...)
		if err != nil {
			return out, err
		}
		// An event is consumed by the first matching rule; a fact stays in
		// working memory, so every rule it matches fires.
		if !st.rs.MatchMultiple && !isFact {
			break
		}
	}
	return out, nil
}

// throttled reports whether the throttle keeps the rule from firing now.
func (s *Session) throttled(st *rsState, r *Rule, obj map[string]any, now time.Time) bool {
	parts := []string{r.Name}
	for _, g := range r.Throttle.GroupBy {
		v, _ := g.eval(&env{cur: obj})
		b, _ := json.Marshal(v)
		parts = append(parts, string(b))
	}
	key := strings.Join(parts, "\x00")
	t := r.Throttle
	switch {
	case t.OnceAfter > 0:
		w := st.onceAfter[r]
		if w == nil {
			w = &onceAfterWindow{start: now, groups: map[string]bool{}}
			st.onceAfter[r] = w
		}
		if !w.groups[key] {
			w.groups[key] = true
			w.events = append(w.events, obj)
		}
		return true
	case t.AccumulateWithin > 0:
		times := st.accum[key][:0]
		for _, at := range st.accum[key] {
			if now.Sub(at) < t.AccumulateWithin {
				times = append(times, at)
			}
		}
		times = append(times, now)
		if len(times) >= t.Threshold {
			delete(st.accum, key)
			return false
		}
		st.accum[key] = times
		return true
	}
	if last, ok := st.throttle[key]; ok && now.Sub(last) < t.OnceWithin {
		return true
	}
	st.throttle[key] = now
	return false
}

// Advance fires what time windows ended by now: not_all rules whose timeout
// passed with some but not all conditions matched, and once_after windows
// with the events they collected. The receiver calls it on a timer and
// before each event; `receiver match` at the end of its input.
func (s *Session) Advance(now time.Time) ([]Fired, error) {
	var out []Fired
	for _, st := range s.state {
		if len(st.notAll) == 0 && len(st.onceAfter) == 0 {
			continue
		}
		for _, r := range st.rs.Rules {
			var matched map[string]any
			if w := st.notAll[r]; w != nil && now.Sub(w.start) >= r.Timeout {
				delete(st.notAll, r)
				matched = map[string]any{}
				for i, obj := range w.matched {
					matched[r.Aliases[i]] = obj
				}
			}
			if w := st.onceAfter[r]; w != nil && now.Sub(w.start) >= r.Throttle.OnceAfter {
				delete(st.onceAfter, r)
				matched = map[string]any{}
				for i, obj := range w.events {
					matched["m_"+strconv.Itoa(i)] = obj
				}
				if len(w.events) == 1 {
					matched = map[string]any{r.Aliases[0]: w.events[0]}
				}
			}
			if matched == nil {
				continue
			}
			f, err := s.fire(st, r, matched)
			out = append(out, f...)
			if err != nil {
				return out, err
			}
		}
	}
	return s.drain(out)
}

// NextDeadline is when the earliest open time window ends (ok false: none).
func (s *Session) NextDeadline() (time.Time, bool) {
	var next time.Time
	for _, st := range s.state {
		for r, w := range st.notAll {
			if d := w.start.Add(r.Timeout); next.IsZero() || d.Before(next) {
				next = d
			}
		}
		for r, w := range st.onceAfter {
			if d := w.start.Add(r.Throttle.OnceAfter); next.IsZero() || d.Before(next) {
				next = d
			}
		}
	}
	return next, !next.IsZero()
}

// match returns the matching objects keyed by m / m_N / alias.
func (s *Session) match(st *rsState, r *Rule, obj map[string]any, isFact bool, now time.Time) (map[string]any, bool) {
	if r.Kind == "single" {
		// process set s.env.cur to obj for this generation.
		if r.Conds[0].test(&s.env) {
			return map[string]any{r.Aliases[0]: obj}, true
		}
		return nil, false
	}
	switch r.Kind {
	case "not_all":
		// Fires only from Advance, when the timeout passes with some but not
		// all conditions matched; all of them in time closes the window.
		w := st.notAll[r]
		for i, c := range r.Conds {
			if w != nil && w.matched[i] != nil {
				continue
			}
			var bound map[string]any
			if w != nil {
				bound = map[string]any{}
				for j, o := range w.matched {
					bound[r.Aliases[j]] = o
				}
			}
			if !c.test(&env{cur: obj, bound: bound}) {
				continue
			}
			if w == nil {
				w = &notAllWindow{start: now, matched: map[int]map[string]any{}}
				st.notAll[r] = w
			}
			w.matched[i] = obj
			break
		}
		if w != nil && len(w.matched) == len(r.Conds) {
			delete(st.notAll, r)
		}
		return nil, false
	case "single":
		if r.Conds[0].test(&env{cur: obj}) {
			return map[string]any{r.Aliases[0]: obj}, true
		}
		return nil, false
	case "any":
		for i, c := range r.Conds {
			if c.test(&env{cur: obj}) {
				return map[string]any{r.Aliases[i]: obj}, true
			}
		}
		return nil, false
	}
	// all: keep candidates within the window and look for an assignment of
	// distinct objects to the conditions that uses the new object.
	ttl := st.rs.DefaultTTL
	if r.Timeout > 0 {
		ttl = r.Timeout
	}
	cands := st.partials[r][:0]
	for _, c := range st.partials[r] {
		if now.Sub(c.at) <= ttl {
			cands = append(cands, c)
		}
	}
	if !isFact {
		cands = append(cands, stored{obj: obj, at: now})
		if len(cands) > s.opts.MaxPartials {
			cands = cands[len(cands)-s.opts.MaxPartials:]
		}
	}
	st.partials[r] = cands
	pool := make([]stored, 0, len(cands)+len(st.facts))
	pool = append(pool, cands...)
	for _, f := range st.facts {
		pool = append(pool, stored{obj: f, at: now, fact: true})
	}
	bound := map[string]any{}
	used := make([]bool, len(pool))
	chosen := make([]int, len(r.Conds))
	var search func(i int, usedNew bool) bool
	search = func(i int, usedNew bool) bool {
		if i == len(r.Conds) {
			return usedNew
		}
		for j, c := range pool {
			if used[j] {
				continue
			}
			if !r.Conds[i].test(&env{cur: c.obj, bound: bound}) {
				continue
			}
			used[j] = true
			bound[r.Aliases[i]] = c.obj
			chosen[i] = j
			isNew := sameObj(c.obj, obj)
			if search(i+1, usedNew || isNew) {
				return true
			}
			used[j] = false
			delete(bound, r.Aliases[i])
		}
		return false
	}
	if !search(0, false) {
		return nil, false
	}
	// Consume the events that filled the match; facts persist.
	var keep []stored
	for j, c := range cands {
		if !used[j] {
			keep = append(keep, c)
		}
	}
	st.partials[r] = keep
	out := map[string]any{}
	for i, a := range r.Aliases {
		out[a] = pool[chosen[i]].obj
	}
	return out, true
}

func sameObj(a, b map[string]any) bool {
	// Objects are compared by identity: maps are reference types.
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func (s *Session) fire(st *rsState, r *Rule, matched map[string]any) ([]Fired, error) {
	// The rendering context is the rulebook vars plus event or events; the
	// map is kept per session and the two keys restored after (fire nests
	// when a retract fires an existential rule).
	if s.ctx == nil {
		s.ctx = make(map[string]any, len(s.rb.Vars)+2)
		for k, v := range s.rb.Vars {
			s.ctx[k] = v
		}
	}
	ctx := s.ctx
	prevEv, hadEv := ctx["event"]
	prevEvs, hadEvs := ctx["events"]
	defer func() {
		restoreKey(ctx, "event", prevEv, hadEv, s.rb.Vars)
		restoreKey(ctx, "events", prevEvs, hadEvs, s.rb.Vars)
	}()
	delete(ctx, "event")
	delete(ctx, "events")
	if v, ok := s.rb.Vars["event"]; ok {
		ctx["event"] = v
	}
	if v, ok := s.rb.Vars["events"]; ok {
		ctx["events"] = v
	}
	if r.Kind == "single" && len(matched) == 1 {
		for _, v := range matched {
			ctx["event"] = v
		}
	} else {
		ctx["events"] = matched
	}
	var out []Fired
	for _, a := range r.Actions {
		var args any
		var err error
		if a.compiled != nil {
			args, err = renderCompiled(a.compiled, ctx) // builds new maps and lists
		} else {
			args, err = render(a.Args, ctx)
		}
		if err != nil {
			return out, fmt.Errorf("ruleset %q rule %q action %s: %w", st.rs.Name, r.Name, a.Name, err)
		}
		am, _ := args.(map[string]any)
		f := Fired{Ruleset: st.rs.Name, Rule: r.Name, Action: a.Name, Args: am, MatchingEvents: applyVarRoot(matched, am["var_root"])}
		out = append(out, f)
		target := st
		if rsn, ok := am["ruleset"].(string); ok && rsn != "" {
			if target = s.byNm[rsn]; target == nil {
				return out, fmt.Errorf("rule %q: no ruleset %q", r.Name, rsn)
			}
		}
		switch a.Name {
		case "set_fact":
			fact, ok := am["fact"].(map[string]any)
			if !ok {
				return out, fmt.Errorf("rule %q: set_fact needs a mapping", r.Name)
			}
			fact = withMeta(fact, "set_fact", s.opts.Now())
			target.facts = append(target.facts, fact)
			s.queue = append(s.queue, queued{target, fact, true})
		case "post_event":
			ev, ok := am["event"].(map[string]any)
			if !ok {
				return out, fmt.Errorf("rule %q: post_event needs a mapping", r.Name)
			}
			s.queue = append(s.queue, queued{target, withMeta(ev, "post_event", s.opts.Now()), false})
		case "retract_fact":
			fact, _ := am["fact"].(map[string]any)
			partial := true
			if p, ok := am["partial"].(bool); ok {
				partial = p
			}
			removed := target.retract(fact, partial)
			more, err := s.existential(target, removed)
			out = append(out, more...)
			if err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// applyVarRoot narrows the recorded matches: a string path replaces each
// match by its sub-object; a mapping {path: newkey} stores the value at path
// under newkey.
func applyVarRoot(matched map[string]any, vr any) map[string]any {
	switch x := vr.(type) {
	case string:
		out := map[string]any{}
		for k, obj := range matched {
			if v, ok := walk(obj, toSegs(x)); ok {
				out[k] = v
			} else {
				out[k] = obj
			}
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for path, newKey := range x {
			for _, obj := range matched {
				if v, ok := walk(obj, toSegs(path)); ok {
					out[fmt.Sprint(newKey)] = v
				}
			}
		}
		return out
	}
	return matched
}

func (st *rsState) retract(fact map[string]any, partial bool) []map[string]any {
	var keep, removed []map[string]any
	for _, f := range st.facts {
		if factMatches(f, fact, partial) {
			removed = append(removed, f)
			continue
		}
		keep = append(keep, f)
	}
	st.facts = keep
	return removed
}

// existential fires "X is not defined" rules (the whole condition: an
// existential NOT over working memory) when a retract removed the last
// fact that defined X.
func (s *Session) existential(st *rsState, removed []map[string]any) ([]Fired, error) {
	var out []Fired
	for _, r := range st.rs.Rules {
		if r.existential == nil {
			continue
		}
		for _, gone := range removed {
			if _, had := r.existential.eval(&env{cur: gone}); !had {
				continue
			}
			still := false
			for _, f := range st.facts {
				if _, ok := r.existential.eval(&env{cur: f}); ok {
					still = true
				}
			}
			if still {
				continue
			}
			f, err := s.fire(st, r, map[string]any{r.Aliases[0]: gone})
			out = append(out, f...)
			if err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func factMatches(f, want map[string]any, partial bool) bool {
	for k, v := range want {
		if !jsonEqual(f[k], v) {
			return false
		}
	}
	if !partial {
		for k := range f {
			if _, ok := want[k]; !ok && k != "meta" {
				return false
			}
		}
	}
	return true
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func withMeta(obj map[string]any, source string, now time.Time) map[string]any {
	o := deepCopy(obj)
	meta, _ := o["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	if _, ok := meta["source"]; !ok {
		meta["source"] = map[string]any{"name": source, "type": "internal"}
	}
	if _, ok := meta["received_at"]; !ok {
		meta["received_at"] = now.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	if _, ok := meta["uuid"]; !ok {
		meta["uuid"] = newUUID()
	}
	o["meta"] = meta
	return o
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// WrapWebhookEvent builds the event ansible.eda.webhook hands to the rules:
// {"payload": body, "meta": {endpoint, headers, source{name,type}, received_at, uuid}}.
func WrapWebhookEvent(body any, endpoint string, headers map[string]string, now time.Time, uuid string) map[string]any {
	h := make(map[string]any, len(headers))
	for k, v := range headers {
		h[k] = v
	}
	if uuid == "" {
		uuid = newUUID()
	}
	return map[string]any{
		"payload": normalizeJSON(body),
		"meta": map[string]any{
			"endpoint": endpoint, "headers": h,
			"source":      map[string]any{"name": "ansible.eda.webhook", "type": "ansible.eda.webhook"},
			"received_at": now.UTC().Format("2006-01-02T15:04:05.000000Z"),
			"uuid":        uuid,
		},
	}
}

func normalizeJSON(v any) any {
	switch x := v.(type) {
	case json.RawMessage:
		var out any
		if err := json.Unmarshal(x, &out); err == nil {
			return numbersToInt(out)
		}
	}
	return numbersToInt(v)
}

// numbersToInt turns whole float64 JSON numbers into int64 so that
// templates and comparisons see integers as ansible-rulebook does.
func numbersToInt(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = numbersToInt(val)
		}
	case []any:
		for i := range x {
			x[i] = numbersToInt(x[i])
		}
	case float64:
		if x == float64(int64(x)) && x < 1e15 && x > -1e15 {
			return int64(x)
		}
	}
	return v
}

func deepCopy(m map[string]any) map[string]any {
	c, _ := deepCopyAny(m).(map[string]any)
	if c == nil {
		c = map[string]any{}
	}
	return c
}

func deepCopyAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = deepCopyAny(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = deepCopyAny(x[i])
		}
		return out
	}
	return v
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func restoreKey(ctx map[string]any, k string, v any, had bool, vars map[string]any) {
	if had {
		ctx[k] = v
		return
	}
	if vv, ok := vars[k]; ok {
		ctx[k] = vv
		return
	}
	delete(ctx, k)
}
