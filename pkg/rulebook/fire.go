// Firing a rule: rendering its actions' arguments against the rulebook vars
// and the matched events, and applying the engine's builtin actions.

package rulebook

import "fmt"

// fire renders each of r's actions against the rulebook vars and the
// matched events, records it, and applies the builtins' engine part.
func (s *Session) fire(st *rsState, r *Rule, matched map[string]any) ([]Fired, error) {
	ctx, saved := s.renderContext(r, matched)
	defer saved.restore(ctx, s.rb.Vars)
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
		if spec, _ := LookupAction(a.Name); spec.apply != nil {
			more, err := spec.apply(s, actionCall{rule: r, target: target, args: am})
			out = append(out, more...)
			if err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// savedKeys are the event and events keys of a rendering context before a
// rule fired.
type savedKeys struct {
	ev, evs       any
	hadEv, hadEvs bool
}

func (k savedKeys) restore(ctx, vars map[string]any) {
	restoreKey(ctx, "event", k.ev, k.hadEv, vars)
	restoreKey(ctx, "events", k.evs, k.hadEvs, vars)
}

// renderContext is the rulebook vars plus event (a single-condition match)
// or events. The map is kept per session; the saved keys are put back after
// the rule fired (fire nests when a retract fires an existential rule).
func (s *Session) renderContext(r *Rule, matched map[string]any) (map[string]any, savedKeys) {
	if s.ctx == nil {
		s.ctx = make(map[string]any, len(s.rb.Vars)+2)
		for k, v := range s.rb.Vars {
			s.ctx[k] = v
		}
	}
	ctx := s.ctx
	var saved savedKeys
	saved.ev, saved.hadEv = ctx["event"]
	saved.evs, saved.hadEvs = ctx["events"]
	delete(ctx, "event")
	delete(ctx, "events")
	if v, ok := s.rb.Vars["event"]; ok {
		ctx["event"] = v
	}
	if v, ok := s.rb.Vars["events"]; ok {
		ctx["events"] = v
	}
	if r.Kind == RuleSingle && len(matched) == 1 {
		for _, v := range matched {
			ctx["event"] = v
		}
	} else {
		ctx["events"] = matched
	}
	return ctx, saved
}

// applyVarRoot narrows the recorded matches: a string path replaces each
// match by its sub-object; a mapping {path: newkey} stores the value at path
// under newkey.
func applyVarRoot(matched map[string]any, vr any) map[string]any {
	switch x := vr.(type) {
	case string:
		out := map[string]any{}
		for k, obj := range matched {
			if v, ok := walk(obj, varRootSegs(x)); ok {
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
				if v, ok := walk(obj, varRootSegs(path)); ok {
					out[fmt.Sprint(newKey)] = v
				}
			}
		}
		return out
	}
	return matched
}

// varRootSegs reads a var_root path with the path grammar of conditions and
// templates (a.b, a['k'], a[0], a[-1]); a string that grammar refuses is
// split on dots, as ansible-rulebook's dpath does (a.0.b).
func varRootSegs(s string) []any {
	if segs, err := parsePathSegs(s); err == nil {
		return segs
	}
	return toSegs(s)
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

// Events lists the matched events that are objects, in key order (m, or
// m_0, m_1, ...; var_root may have replaced some by other values).
func (f Fired) Events() []map[string]any {
	var out []map[string]any
	for _, k := range sortedKeys(f.MatchingEvents) {
		if ev, ok := f.MatchingEvents[k].(map[string]any); ok {
			out = append(out, ev)
		}
	}
	return out
}

// Matched is the one matched event, or all of them keyed by name when the
// rule matched several (what print_event and debug show).
func (f Fired) Matched() any {
	if len(f.MatchingEvents) == 1 {
		for _, v := range f.MatchingEvents {
			return v
		}
	}
	return f.MatchingEvents
}
