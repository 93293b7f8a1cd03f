// Tests of time windows (not_all, throttles) with an injected clock.

package rulebook

import (
	"strings"
	"testing"
	"time"
)

// clock is a settable time source for the time-window tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type step struct {
	after time.Duration  // advance the clock by this first
	event map[string]any // nil: only advance (Advance is called)
	fires []string       // rule names fired at this step, in order
	match []string       // sorted keys of the first firing's matching events
}

func runSteps(t *testing.T, src string, steps []step) {
	t.Helper()
	rb, err := Load([]byte(src), "windows.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: mustTime("2026-11-24T10:00:00Z")}
	s := NewSession(rb, Options{Now: c.now})
	for i, st := range steps {
		c.t = c.t.Add(st.after)
		var got []Fired
		if st.event != nil {
			got, err = s.ProcessDirect("rs", st.event)
		} else {
			got, err = s.Advance(c.t)
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var names []string
		for _, f := range got {
			names = append(names, f.Rule)
		}
		if strings.Join(names, ",") != strings.Join(st.fires, ",") {
			t.Fatalf("step %d: fired %v, want %v", i, names, st.fires)
		}
		if len(st.match) > 0 && strings.Join(sortedKeys(got[0].MatchingEvents), ",") != strings.Join(st.match, ",") {
			t.Fatalf("step %d: matching events %v, want keys %v", i, got[0].MatchingEvents, st.match)
		}
	}
}

func ev(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestNotAll(t *testing.T) {
	const rb = `
- name: rs
  hosts: all
  sources: [{range: {limit: 1}}]
  rules:
    - name: missing heartbeat
      condition:
        not_all:
          - event.msg == "started"
          - event.msg == "heartbeat"
        timeout: 10 seconds
      action: {debug: {}}
    - name: catch all
      condition: event.msg == "other"
      action: {debug: {}}
`
	tests := []struct {
		name  string
		steps []step
	}{
		{"some matched, timeout passes: fires with what matched", []step{
			{event: ev("msg", "started")},
			{after: 9 * time.Second},
			{after: time.Second, fires: []string{"missing heartbeat"}, match: []string{"m_0"}},
			{after: time.Minute}, // fired once, window closed
		}},
		{"all matched in time: never fires", []step{
			{event: ev("msg", "started")},
			{after: 5 * time.Second, event: ev("msg", "heartbeat")},
			{after: time.Minute},
		}},
		{"late second condition: fires at the timeout, the late event opens a new window", []step{
			{event: ev("msg", "heartbeat")},
			{after: 11 * time.Second, event: ev("msg", "started"), fires: []string{"missing heartbeat"}, match: []string{"m_1"}},
			{after: 10 * time.Second, fires: []string{"missing heartbeat"}, match: []string{"m_0"}},
		}},
		{"unrelated events do not open a window", []step{
			{event: ev("msg", "other"), fires: []string{"catch all"}},
			{after: time.Hour},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, rb, tc.steps) })
	}
}

func TestOnceAfterAndAccumulateWithin(t *testing.T) {
	const rb = `
- name: rs
  hosts: all
  sources: [{range: {limit: 1}}]
  rules:
    - name: summary
      condition: event.kind == "alert"
      throttle:
        once_after: 30 seconds
        group_by_attributes: [event.host]
      action: {debug: {}}
    - name: error storm
      condition: event.level == "error"
      throttle:
        accumulate_within: 1 minute
        threshold: 3
        group_by_attributes: [event.host]
      action: {debug: {}}
`
	tests := []struct {
		name  string
		steps []step
	}{
		{"once_after: one firing at the end of the window with one event per host", []step{
			{event: ev("kind", "alert", "host", "a")},
			{after: time.Second, event: ev("kind", "alert", "host", "b")},
			{after: time.Second, event: ev("kind", "alert", "host", "a")}, // duplicate group
			{after: 27 * time.Second},
			{after: time.Second, fires: []string{"summary"}, match: []string{"m_0", "m_1"}},
			{after: time.Hour},
			{event: ev("kind", "alert", "host", "c")}, // a new window
			{after: 30 * time.Second, fires: []string{"summary"}, match: []string{"m"}},
		}},
		{"accumulate_within: the third error of a host within a minute fires", []step{
			{event: ev("level", "error", "host", "a")},
			{after: 10 * time.Second, event: ev("level", "error", "host", "b")},
			{after: 10 * time.Second, event: ev("level", "error", "host", "a")},
			{after: 10 * time.Second, event: ev("level", "error", "host", "a"), fires: []string{"error storm"}},
			{after: time.Second, event: ev("level", "error", "host", "a")}, // count restarted
		}},
		{"accumulate_within: errors older than the window expire", []step{
			{event: ev("level", "error", "host", "a")},
			{after: 40 * time.Second, event: ev("level", "error", "host", "a")},
			{after: 30 * time.Second, event: ev("level", "error", "host", "a")}, // the first expired: 2 in window
			{after: 10 * time.Second, event: ev("level", "error", "host", "a"), fires: []string{"error storm"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, rb, tc.steps) })
	}
}

func TestWindowLoadErrors(t *testing.T) {
	tests := []struct{ rule, want string }{
		{`condition: {not_all: [event.a == 1, event.b == 1]}`, "not_all needs a timeout"},
		{"condition: event.a == 1\n      throttle: {once_after: 5 seconds, once_within: 5 seconds, group_by_attributes: [event.a]}", "exactly one of"},
		{"condition: event.a == 1\n      throttle: {accumulate_within: 5 seconds, group_by_attributes: [event.a]}", "needs a threshold"},
		{"condition: event.a == 1\n      throttle: {accumulate_within: 5 seconds, threshold: 0, group_by_attributes: [event.a]}", "threshold must be"},
	}
	for _, tc := range tests {
		src := "- name: rs\n  hosts: all\n  sources: [{range: {limit: 1}}]\n  rules:\n    - name: r\n      " + tc.rule + "\n      action: {debug: {}}\n"
		_, err := Load([]byte(src), "bad.yml", nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.rule, err, tc.want)
		}
	}
}
