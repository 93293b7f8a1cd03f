// Match strategies: how one rule of each kind (single, any, all, not_all)
// tests a new event or fact against what it has seen.

package rulebook

import (
	"reflect"
	"time"
)

// RuleKind is the shape of a rule's condition.
type RuleKind string

// The rule kinds: a single condition string, or a mapping with all, any or
// not_all.
const (
	RuleSingle RuleKind = "single"
	RuleAll    RuleKind = "all"
	RuleAny    RuleKind = "any"
	RuleNotAll RuleKind = "not_all"
)

// match returns the matching objects keyed by m / m_N / alias.
func (s *Session) match(st *rsState, r *Rule, obj map[string]any, isFact bool, now time.Time) (map[string]any, bool) {
	switch r.Kind {
	case RuleSingle:
		// process set s.env.cur to obj for this generation.
		if r.Conds[0].test(&s.env) {
			return map[string]any{r.Aliases[0]: obj}, true
		}
		return nil, false
	case RuleNotAll:
		matchNotAll(st, r, obj, now)
		return nil, false
	case RuleAny:
		for i, c := range r.Conds {
			if c.test(&env{cur: obj}) {
				return map[string]any{r.Aliases[i]: obj}, true
			}
		}
		return nil, false
	}
	return s.matchAll(st, r, obj, isFact, now)
}

// matchNotAll records obj against the first condition it meets that the
// open window has not matched yet. The rule fires only from Advance, when the
// timeout passes with some but not all conditions matched; all of them in
// time close the window.
func matchNotAll(st *rsState, r *Rule, obj map[string]any, now time.Time) {
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
}

// matchAll keeps candidates within the window and looks for an assignment of
// distinct objects to the conditions that uses the new object; the events
// that filled the match are consumed, facts persist.
func (s *Session) matchAll(st *rsState, r *Rule, obj map[string]any, isFact bool, now time.Time) (map[string]any, bool) {
	cands := s.candidates(st, r, obj, isFact, now)
	pool := make([]stored, 0, len(cands)+len(st.facts))
	pool = append(pool, cands...)
	for _, f := range st.facts {
		pool = append(pool, stored{obj: f, at: now, fact: true})
	}
	used, chosen, ok := assign(r, pool, obj)
	if !ok {
		return nil, false
	}
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

// candidates drops the partial matches older than the rule's timeout (or the
// ruleset's default_events_ttl) and adds obj when it is an event, keeping at
// most MaxPartials.
func (s *Session) candidates(st *rsState, r *Rule, obj map[string]any, isFact bool, now time.Time) []stored {
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
	return cands
}

// assign searches pool for distinct objects meeting each condition in turn,
// one of them obj; it returns which pool entries were used and, per
// condition, the one chosen.
func assign(r *Rule, pool []stored, obj map[string]any) (used []bool, chosen []int, ok bool) {
	bound := map[string]any{}
	used = make([]bool, len(pool))
	chosen = make([]int, len(r.Conds))
	var search func(i int, usedNew bool) bool
	search = func(i int, usedNew bool) bool {
		if i == len(r.Conds) {
			return usedNew
		}
		for j, c := range pool {
			if used[j] || !r.Conds[i].test(&env{cur: c.obj, bound: bound}) {
				continue
			}
			used[j] = true
			bound[r.Aliases[i]] = c.obj
			chosen[i] = j
			if search(i+1, usedNew || sameObj(c.obj, obj)) {
				return true
			}
			used[j] = false
			delete(bound, r.Aliases[i])
		}
		return false
	}
	return used, chosen, search(0, false)
}

func sameObj(a, b map[string]any) bool {
	// Objects are compared by identity: maps are reference types.
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
