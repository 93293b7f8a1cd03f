// Time windows of the engine: not_all timeouts and the throttles
// (once_within, once_after, accumulate_within), opened by events and closed
// by Advance.

package rulebook

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

type notAllWindow struct {
	start   time.Time
	matched map[int]map[string]any // condition index -> object
}

type onceAfterWindow struct {
	start  time.Time
	groups map[string]bool
	events []map[string]any
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
