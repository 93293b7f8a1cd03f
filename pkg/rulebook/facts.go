// Working memory: facts kept per ruleset, retracting them and the
// existential ("X is not defined") rules a retract fires.

package rulebook

import (
	"encoding/json"
)

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
