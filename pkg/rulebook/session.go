// The Session API: a rulebook's running state (facts, partial matches,
// windows) and the calls that feed it events and facts.

package rulebook

import (
	"fmt"
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

// ProcessDirect runs an event through one ruleset's rules only, without its
// source filters (as ansible-rulebook's tests put events straight on a
// ruleset's queue). The event is copied first.
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
