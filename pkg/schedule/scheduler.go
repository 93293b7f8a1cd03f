package schedule

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// Ruleset is the ruleset of every scheduled run's job record; the rule is
// the schedule's name.
const Ruleset = "schedule"

// StatusSkipped is the status of a due time skipped because the schedule's
// previous run was still going.
const StatusSkipped = "skipped"

const (
	// maxSleep bounds one wait, so that a wall clock that jumps (or a host
	// that slept) is noticed within a minute.
	maxSleep = time.Minute
	// maxCounted bounds how many passed due times are counted as missed.
	maxCounted = 1_000_000
)

// Clock is the time source; tests inject a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Store records job records (the inbox).
type Store interface {
	PutJob(ctx context.Context, j inbox.Job) (uint64, error)
}

// Config configures a Scheduler.
type Config struct {
	Entries []Entry // from Load or Parse
	// Executor runs the templates: the one the dispatcher uses for
	// run_job_template and run_workflow_template.
	Executor dispatch.Executor
	Store    Store
	// StatePath is the state file (the last fire time of each schedule);
	// empty: nothing persists and missed runs are not caught up.
	StatePath  string
	Clock      Clock // default the real clock
	Logger     *zap.Logger
	Registerer prometheus.Registerer
}

// slot is an enabled entry and its run state.
type slot struct {
	Entry
	next    time.Time // next due time; zero when it never comes due again
	catchUp bool      // next passed while the receiver was down
	// running is set while a run is in progress (guarded by Scheduler.mu).
	running    bool
	runningJob uint64
	runningDue time.Time
}

// Scheduler fires the enabled entries at their due times.
type Scheduler struct {
	cfg    Config
	log    *zap.Logger
	m      metrics
	slots  []*slot
	st     state // touched by Start and then the loop only
	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the configuration and registers the metrics.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Executor == nil {
		return nil, errors.New("schedule: no executor for job and workflow templates")
	}
	if cfg.Store == nil {
		return nil, errors.New("schedule: no job store")
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger}
	for _, e := range cfg.Entries {
		if e.spec == nil {
			return nil, fmt.Errorf("schedule %q: not validated (use Load or Parse)", e.Name)
		}
		if !e.IsEnabled() {
			s.log.Info("schedule disabled", zap.String("schedule", e.Name), zap.String("cron", e.Cron))
			continue
		}
		s.slots = append(s.slots, &slot{Entry: e})
	}
	m, err := newMetrics(cfg.Registerer, s.slots)
	if err != nil {
		return nil, fmt.Errorf("schedule: metrics: %w", err)
	}
	s.m = m
	return s, nil
}

// Start reads the state, plans each schedule's next due time (a due time
// that passed while the receiver was down makes one catch-up run right
// away), persists the plan and starts firing. ctx bounds the scheduler's
// life like Stop.
func (s *Scheduler) Start(ctx context.Context) error {
	if s.cancel != nil {
		return errors.New("schedule: already started")
	}
	now := s.cfg.Clock.Now()
	s.st = s.loadState()
	kept := map[string]stateEntry{}
	for _, sl := range s.slots {
		last, ok := s.st.Schedules[sl.Name]
		if !ok {
			last = stateEntry{Last: now} // first seen: nothing was missed yet
		}
		kept[sl.Name] = last
		sl.next = sl.Next(last.Last.In(now.Location())) // due times in the clock's zone, as when firing
		sl.catchUp = ok && !sl.next.IsZero() && !sl.next.After(now)
		s.m.setNext(sl)
		s.log.Info("schedule planned", zap.String("schedule", sl.Name), zap.String("cron", sl.Cron),
			zap.String("template", sl.Template()), zap.Time("next", sl.next), zap.Bool("catch_up", sl.catchUp))
	}
	s.st.Schedules = kept // disabled and removed schedules start afresh when they return
	if err := s.persist(); err != nil {
		return err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Go(func() { s.loop(ctx) })
	return nil
}

// Stop stops firing, interrupts the runs in progress (they are recorded as
// canceled) and waits for them.
func (s *Scheduler) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}

func (s *Scheduler) loadState() state {
	if s.cfg.StatePath == "" {
		return state{Version: stateVersion, Schedules: map[string]stateEntry{}}
	}
	st, err := readState(s.cfg.StatePath)
	if err != nil {
		s.log.Error("schedule state unreadable: starting afresh, runs missed while the receiver was down are not caught up; "+
			"the file is replaced", zap.String("path", s.cfg.StatePath), zap.Error(err))
	}
	return st
}

func (s *Scheduler) persist() error {
	if s.cfg.StatePath == "" {
		return nil
	}
	if err := writeState(s.cfg.StatePath, s.st); err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	return nil
}

func (s *Scheduler) loop(ctx context.Context) {
	for {
		now := s.cfg.Clock.Now()
		s.fireDue(ctx, now)
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.Clock.After(s.sleepFor(now)):
		}
	}
}

// sleepFor is the wait until the earliest next due time, at most maxSleep.
func (s *Scheduler) sleepFor(now time.Time) time.Duration {
	d := maxSleep
	for _, sl := range s.slots {
		if !sl.next.IsZero() && sl.next.Sub(now) < d {
			d = sl.next.Sub(now)
		}
	}
	return max(d, 0)
}

// fireDue fires every slot whose due time has come and persists the fire
// times.
func (s *Scheduler) fireDue(ctx context.Context, now time.Time) {
	fired := false
	for _, sl := range s.slots {
		if sl.next.IsZero() || sl.next.After(now) || ctx.Err() != nil {
			continue
		}
		s.fire(ctx, sl, now)
		fired = true
	}
	if !fired {
		return
	}
	if err := s.persist(); err != nil {
		s.log.Error("persist schedule state", zap.Error(err))
	}
}
