package schedule

import (
	"context"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// wait bounds how long a test waits for the scheduler's goroutines (real
// time; nothing sleeps for the schedule itself).
const wait = 10 * time.Second

// fakeClock is a Clock whose time moves only when the test sets it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	added   chan struct{}
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, added: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	select {
	case c.added <- struct{}{}:
	default:
	}
	return ch
}

// set moves the clock to t and wakes the waiters that are due.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

// idle waits until the scheduler's loop waits on the clock again: everything
// due at the current time has been fired (and its job record written).
func (c *fakeClock) idle(t *testing.T) {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		n := len(c.waiters)
		c.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-c.added:
		case <-deadline:
			t.Fatal("the scheduler loop did not wait on the clock again")
		}
	}
}

// fakeExec records requests; each run returns result, or blocks until
// release is closed when block is set.
type fakeExec struct {
	calls   chan dispatch.JobRequest
	block   bool
	release chan struct{}
	result  dispatch.JobResult
	err     error
}

func newFakeExec() *fakeExec {
	return &fakeExec{calls: make(chan dispatch.JobRequest, 100), release: make(chan struct{}),
		result: dispatch.JobResult{Status: "successful"}}
}

func (e *fakeExec) Run(ctx context.Context, req dispatch.JobRequest) (dispatch.JobResult, error) {
	e.calls <- req
	if e.block {
		select {
		case <-e.release:
		case <-ctx.Done():
			return dispatch.JobResult{Status: "canceled"}, nil
		}
	}
	return e.result, e.err
}

// next is the next request the executor got, or a failure.
func (e *fakeExec) next(t *testing.T) dispatch.JobRequest {
	t.Helper()
	select {
	case r := <-e.calls:
		return r
	case <-time.After(wait):
		t.Fatal("the executor was not called")
		return dispatch.JobRequest{}
	}
}

// none fails if the executor has a request waiting.
func (e *fakeExec) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-e.calls:
		t.Fatalf("unexpected run of %q", r.Name)
	default:
	}
}

// fakeStore keeps job records in memory.
type fakeStore struct {
	mu      sync.Mutex
	jobs    map[uint64]inbox.Job
	last    uint64
	changed chan struct{}
}

func newFakeStore() *fakeStore {
	return &fakeStore{jobs: map[uint64]inbox.Job{}, changed: make(chan struct{}, 1)}
}

func (s *fakeStore) PutJob(_ context.Context, j inbox.Job) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.ID == 0 {
		s.last++
		j.ID = s.last
	}
	s.jobs[j.ID] = j
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return j.ID, nil
}

// all lists the records by ID.
func (s *fakeStore) all() []inbox.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]inbox.Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// waitStatus waits until job id has status.
func (s *fakeStore) waitStatus(t *testing.T, id uint64, status string) inbox.Job {
	t.Helper()
	deadline := time.After(wait)
	for {
		s.mu.Lock()
		j, ok := s.jobs[id]
		s.mu.Unlock()
		if ok && j.Status == status {
			return j
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("job %d: status %q, want %q", id, j.Status, status)
		}
	}
}

type harness struct {
	clk   *fakeClock
	exec  *fakeExec
	store *fakeStore
	reg   *prometheus.Registry
	state string
	last  *Scheduler
}

func newHarness(t *testing.T, start time.Time) *harness {
	return &harness{clk: newFakeClock(start), exec: newFakeExec(), store: newFakeStore(), reg: prometheus.NewRegistry(),
		state: filepath.Join(t.TempDir(), StateFile)}
}

// start parses doc and starts a scheduler on it; the test stops it.
func (h *harness) start(t *testing.T, doc string) *Scheduler {
	t.Helper()
	entries, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Entries: entries, Executor: h.exec, Store: h.store, StatePath: h.state, Clock: h.clk, Logger: zaptest.NewLogger(t)}
	if h.reg != nil {
		cfg.Registerer = h.reg
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	h.last = s
	h.clk.idle(t)
	return s
}
