package schedule

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// lastState is the persisted last fire time of a schedule.
func (h *harness) lastState(t *testing.T, name string) (time.Time, bool) {
	t.Helper()
	st, err := readState(h.state)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := st.Schedules[name]
	return e.Last, ok
}

// Each schedule fires at its due times and not a second earlier, through the
// executor, with its template, organization and extra vars, and each run is
// a job record that ends with the executor's result.
func TestFiresAtDueTimes(t *testing.T) {
	cases := []struct {
		name  string
		entry string
		start time.Time
		want  []time.Time
	}{
		{"hourly", `cron: "@hourly"`, at("2026-03-02T10:30:00Z"),
			[]time.Time{at("2026-03-02T11:00:00Z"), at("2026-03-02T12:00:00Z"), at("2026-03-02T13:00:00Z")}},
		{"five fields", `cron: "*/15 * * * *"`, at("2026-03-02T10:07:00Z"),
			[]time.Time{at("2026-03-02T10:15:00Z"), at("2026-03-02T10:30:00Z"), at("2026-03-02T10:45:00Z")}},
		{"every", `cron: "@every 90m"`, at("2026-03-02T10:00:00Z"),
			[]time.Time{at("2026-03-02T11:30:00Z"), at("2026-03-02T13:00:00Z")}},
		{"weekdays across a weekend", `cron: "CRON_TZ=UTC 0 2 * * 1-5"`, at("2026-03-06T03:00:00Z"), // a Friday
			[]time.Time{at("2026-03-09T02:00:00Z"), at("2026-03-10T02:00:00Z")}},
		{"daily", `cron: "@daily"`, at("2026-03-02T23:59:00Z"),
			[]time.Time{at("2026-03-03T00:00:00Z"), at("2026-03-04T00:00:00Z")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.start)
			h.start(t, "- name: sync\n  "+c.entry+"\n  job_template: DR - Periodic Storage Sync\n  organization: Default\n  extra_vars: {scope: all}\n")
			for i, due := range c.want {
				h.clk.set(due.Add(-time.Second))
				h.clk.idle(t)
				if n := len(h.store.all()); n != i {
					t.Fatalf("a second before %s: %d runs, want %d", due, n, i)
				}
				h.exec.none(t)
				h.clk.set(due)
				h.clk.idle(t)
				jobs := h.store.all()
				if len(jobs) != i+1 || !jobs[i].Created.Equal(due) {
					t.Fatalf("at %s: jobs %+v", due, jobs)
				}
				checkRequest(t, h.exec.next(t), jobs[i])
				j := h.store.waitStatus(t, jobs[i].ID, "successful")
				if j.Ruleset != Ruleset || j.Rule != "sync" || j.Action != "run_job_template" || j.Name != "DR - Periodic Storage Sync" ||
					j.Coalesced != 0 || j.Finished == nil {
					t.Errorf("job record %+v", j)
				}
				if last, _ := h.lastState(t, "sync"); !last.Equal(due) {
					t.Errorf("persisted last fire %s, want %s", last, due)
				}
			}
			if got := testutil.ToFloat64(h.sched(t).m.runs.WithLabelValues("sync", "successful")); got != float64(len(c.want)) {
				t.Errorf("runs_total{successful} = %v", got)
			}
		})
	}
}

func checkRequest(t *testing.T, req dispatch.JobRequest, job inbox.Job) {
	t.Helper()
	if req.Kind != dispatch.KindJobTemplate || req.Name != "DR - Periodic Storage Sync" || req.Organization != "Default" ||
		req.ExtraVars["scope"] != "all" || req.JobID != job.ID || req.EventUUID == "" || req.EventUUID != job.EventUUID {
		t.Errorf("request %+v for job %+v", req, job)
	}
}

// sched is the scheduler the harness started last (for its metrics).
func (h *harness) sched(t *testing.T) *Scheduler {
	t.Helper()
	if h.last == nil {
		t.Fatal("no scheduler started")
	}
	return h.last
}

// While a run is still going, a due time is skipped and recorded as a
// skipped job with the reason; the next due time after the run ends runs.
func TestNoOverlap(t *testing.T) {
	h := newHarness(t, at("2026-03-02T10:30:00Z"))
	h.exec.block = true
	h.start(t, "- {name: sync, cron: '@hourly', job_template: T}\n")
	h.clk.set(at("2026-03-02T11:00:00Z"))
	h.clk.idle(t)
	h.exec.next(t)
	h.clk.set(at("2026-03-02T12:00:00Z"))
	h.clk.idle(t)
	h.exec.none(t)
	jobs := h.store.all()
	if len(jobs) != 2 || jobs[0].Status != "running" || jobs[1].Status != StatusSkipped {
		t.Fatalf("jobs %+v", jobs)
	}
	skipped := jobs[1]
	if !strings.Contains(skipped.Error, "previous run (job 1, due 2026-03-02T11:00:00Z) still running") ||
		skipped.Rule != "sync" || skipped.Finished == nil || !skipped.Created.Equal(at("2026-03-02T12:00:00Z")) {
		t.Errorf("skipped record %+v", skipped)
	}
	if last, _ := h.lastState(t, "sync"); !last.Equal(at("2026-03-02T12:00:00Z")) {
		t.Errorf("a skip is a fire too: persisted %s", last)
	}
	close(h.exec.release)
	h.store.waitStatus(t, 1, "successful")
	h.clk.set(at("2026-03-02T13:00:00Z"))
	h.clk.idle(t)
	h.exec.next(t)
	h.store.waitStatus(t, 3, "successful")
	m := h.sched(t).m.runs
	if s, ok := testutil.ToFloat64(m.WithLabelValues("sync", "skipped")), testutil.ToFloat64(m.WithLabelValues("sync", "successful")); s != 1 || ok != 2 {
		t.Errorf("runs_total skipped %v successful %v", s, ok)
	}
}

// Due times that passed while the receiver was down make one run at start,
// recorded with how many were missed (coalesced); then the schedule goes on.
func TestMissedRunsWhileDown(t *testing.T) {
	start := at("2026-03-02T10:20:00Z")
	cases := []struct {
		name   string
		cron   string
		last   *time.Time // nil: no state (first start)
		missed int        // 0: no catch-up run
		next   time.Time
	}{
		{"three hours down", "@hourly", ptr(at("2026-03-02T07:00:00Z")), 3, at("2026-03-02T11:00:00Z")},
		{"one due time", "@hourly", ptr(at("2026-03-02T09:30:00Z")), 1, at("2026-03-02T11:00:00Z")},
		{"down, nothing due", "@hourly", ptr(at("2026-03-02T10:00:00Z")), 0, at("2026-03-02T11:00:00Z")},
		{"every 10m, an hour down", "@every 10m", ptr(at("2026-03-02T09:20:00Z")), 6, at("2026-03-02T10:30:00Z")},
		{"a week down, daily", "@daily", ptr(at("2026-02-23T00:00:00Z")), 7, at("2026-03-03T00:00:00Z")},
		{"first start", "@hourly", nil, 0, at("2026-03-02T11:00:00Z")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, start)
			if c.last != nil {
				seed(t, h.state, map[string]time.Time{"sync": *c.last})
			}
			h.start(t, fmt.Sprintf("- {name: sync, cron: '%s', job_template: T}\n", c.cron))
			jobs := h.store.all()
			if c.missed == 0 {
				h.exec.none(t)
				if len(jobs) != 0 {
					t.Fatalf("catch-up run without a missed due time: %+v", jobs)
				}
			} else {
				if len(jobs) != 1 || jobs[0].Coalesced != c.missed || !jobs[0].Created.Equal(start) {
					t.Fatalf("want one catch-up run for %d missed due times: %+v", c.missed, jobs)
				}
				h.exec.next(t)
				h.store.waitStatus(t, jobs[0].ID, "successful")
			}
			if got := testutil.ToFloat64(h.sched(t).m.missed.WithLabelValues("sync")); got != float64(c.missed) {
				t.Errorf("missed_total %v, want %d", got, c.missed)
			}
			checkNext(t, h, len(jobs), c.next)
		})
	}
}

// checkNext checks that the next run (a regular one) comes at next.
func checkNext(t *testing.T, h *harness, before int, next time.Time) {
	t.Helper()
	h.clk.set(next.Add(-time.Second))
	h.clk.idle(t)
	h.exec.none(t)
	h.clk.set(next)
	h.clk.idle(t)
	jobs := h.store.all()
	if len(jobs) != before+1 || jobs[before].Coalesced != 0 || !jobs[before].Created.Equal(next) {
		t.Fatalf("want a regular run at %s: %+v", next, jobs)
	}
	h.exec.next(t)
}

func ptr[T any](v T) *T { return &v }

func seed(t *testing.T, path string, last map[string]time.Time) {
	t.Helper()
	st := state{Version: stateVersion, Schedules: map[string]stateEntry{}}
	for k, v := range last {
		st.Schedules[k] = stateEntry{Last: v}
	}
	if err := writeState(path, st); err != nil {
		t.Fatal(err)
	}
}

// The last fire time survives a restart through the state file: a receiver
// stopped after the 11:00 run and started at 14:30 runs once for 12:00,
// 13:00 and 14:00.
func TestMissedRunsAcrossRestart(t *testing.T) {
	h := newHarness(t, at("2026-03-02T10:30:00Z"))
	first := h.start(t, "- {name: sync, cron: '@hourly', job_template: T}\n")
	h.clk.set(at("2026-03-02T11:00:00Z"))
	h.clk.idle(t)
	h.exec.next(t)
	h.store.waitStatus(t, 1, "successful")
	first.Stop()

	h.clk = newFakeClock(at("2026-03-02T14:30:00Z"))
	h.reg = nil
	h.start(t, "- {name: sync, cron: '@hourly', job_template: T}\n")
	jobs := h.store.all()
	if len(jobs) != 2 || jobs[1].Coalesced != 3 || !jobs[1].Created.Equal(at("2026-03-02T14:30:00Z")) {
		t.Fatalf("want one catch-up run for 3 missed due times: %+v", jobs)
	}
	h.exec.next(t)
	if last, _ := h.lastState(t, "sync"); !last.Equal(at("2026-03-02T14:30:00Z")) {
		t.Errorf("persisted last fire %s", last)
	}
	checkNext(t, h, 2, at("2026-03-02T15:00:00Z"))
}

// A disabled entry never runs, not even to catch up, and keeps no state.
func TestDisabledNeverRuns(t *testing.T) {
	h := newHarness(t, at("2026-03-02T10:30:00Z"))
	seed(t, h.state, map[string]time.Time{"off": at("2026-03-01T00:00:00Z")})
	h.start(t, `
- {name: off, cron: "@every 1m", job_template: Off, enabled: false}
- {name: on, cron: "@hourly", job_template: On, enabled: true}
`)
	for _, due := range []string{"2026-03-02T10:31:00Z", "2026-03-02T11:00:00Z", "2026-03-02T11:01:00Z", "2026-03-02T12:00:00Z"} {
		h.clk.set(at(due))
		h.clk.idle(t)
	}
	jobs := h.store.all()
	if len(jobs) != 2 {
		t.Fatalf("want the two hourly runs only: %+v", jobs)
	}
	for _, j := range jobs {
		if j.Rule != "on" || j.Name != "On" {
			t.Errorf("disabled entry ran: %+v", j)
		}
		if req := h.exec.next(t); req.Name != "On" {
			t.Errorf("executor ran %q", req.Name)
		}
	}
	if _, ok := h.lastState(t, "off"); ok {
		t.Error("the disabled entry's state was kept")
	}
}

// A run that cannot start (executor error) or that fails is recorded with
// its status and reason; the schedule goes on.
func TestRunOutcomes(t *testing.T) {
	cases := []struct {
		name       string
		result     dispatch.JobResult
		err        error
		wantStatus string
		wantError  string
	}{
		{"failed", dispatch.JobResult{Status: "failed", Message: "exited with 2", LogPath: "/x/job-1.log"}, nil, "failed", "exited with 2"},
		{"launch error", dispatch.JobResult{}, errors.New("template \"T\" is not in the catalog"), "error", "not in the catalog"},
		{"no status", dispatch.JobResult{}, nil, "error", "no status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, at("2026-03-02T10:30:00Z"))
			h.exec.result, h.exec.err = c.result, c.err
			h.start(t, "- {name: sync, cron: '@hourly', job_template: T}\n")
			h.clk.set(at("2026-03-02T11:00:00Z"))
			h.clk.idle(t)
			h.exec.next(t)
			j := h.store.waitStatus(t, 1, c.wantStatus)
			if !strings.Contains(j.Error, c.wantError) || j.LogPath != c.result.LogPath {
				t.Errorf("job %+v", j)
			}
			if got := testutil.ToFloat64(h.sched(t).m.runs.WithLabelValues("sync", c.wantStatus)); got != 1 {
				t.Errorf("runs_total{%s} = %v", c.wantStatus, got)
			}
		})
	}
}

// Stop interrupts a run in progress and records it as canceled.
func TestStopCancelsRun(t *testing.T) {
	h := newHarness(t, at("2026-03-02T10:30:00Z"))
	h.exec.block = true
	s := h.start(t, "- {name: sync, cron: '@hourly', job_template: T}\n")
	h.clk.set(at("2026-03-02T11:00:00Z"))
	h.clk.idle(t)
	h.exec.next(t)
	s.Stop()
	if j := h.store.all()[0]; j.Status != "canceled" || j.Finished == nil {
		t.Errorf("job after Stop %+v", j)
	}
}

func TestNewRefuses(t *testing.T) {
	entries, err := Parse([]byte("- {name: sync, cron: '@hourly', job_template: T}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Entries: entries, Store: newFakeStore()}); err == nil || !strings.Contains(err.Error(), "executor") {
		t.Errorf("no executor: %v", err)
	}
	if _, err := New(Config{Entries: []Entry{{Name: "raw", Cron: "@hourly", JobTemplate: "T"}}, Executor: newFakeExec(), Store: newFakeStore()}); err == nil ||
		!strings.Contains(err.Error(), `"raw"`) {
		t.Errorf("unvalidated entry: %v", err)
	}
}
