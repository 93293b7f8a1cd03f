// Package dispatch turns inbox entries into actions: it runs the rulebook
// engine on each pending event, in order, and executes the fired actions.
// Job actions run in per-resource lanes (one at a time per resource, in order,
// different resources in parallel up to a limit); while a job runs, further
// identical actions for the same resource are coalesced into the newest one.
// An entry is marked done only when all of its actions finished, so what was
// pending at a crash runs again after a restart.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/rulebook"
)

// Fired is one action the engine decided to run: the rule engine's own type,
// so that a *rulebook.Session is an Engine as it is.
type Fired = rulebook.Fired

// Engine evaluates events against the rulebook (a *rulebook.Session). Builtin actions that change
// the engine's own state (set_fact, retract_fact, post_event) are applied by
// the engine and also returned. The dispatcher serialises all calls.
type Engine interface {
	Process(event map[string]any) ([]Fired, error)
	PostEvent(ruleset string, event map[string]any) ([]Fired, error)
	SetFact(ruleset string, fact map[string]any) ([]Fired, error)
}

// Timed is an Engine with time windows (not_all timeouts, once_after
// throttles) that fire without a new event: the dispatcher advances it on a
// timer. Window state is in memory, like the engine's partial matches.
type Timed interface {
	Advance(now time.Time) ([]Fired, error)
}

// Store is the inbox as the dispatcher uses it.
type Store interface {
	Notify() <-chan struct{}
	Pending(after uint64, limit int) ([]inbox.Entry, error)
	Complete(ctx context.Context, seq uint64, out inbox.Outcome) error
	PutJob(ctx context.Context, j inbox.Job) (uint64, error)
}

// Job kinds of a JobRequest (the action registry's, see rulebook.ActionSpec).
const (
	KindJobTemplate      = rulebook.JobTemplate
	KindWorkflowTemplate = rulebook.JobWorkflowTemplate
	KindPlaybook         = rulebook.JobPlaybook
)

// JobRequest is one job to run, already resolved from an action.
type JobRequest struct {
	Kind         string
	Name         string // template name, or playbook path for KindPlaybook
	Organization string
	ExtraVars    map[string]any
	Limit        string   // "" when neither the rule nor the event named hosts
	Labels       []string // extra labels for a Controller launch
	// EventUUID labels a Controller launch (eda-event-uuid-<uuid>) so that a
	// restarted receiver finds the job instead of launching it again.
	EventUUID string
	JobID     uint64 // the receiver's job record id
	// Attempt counts relaunches after a failed job (0 for the first launch).
	Attempt int
	Args    map[string]any
}

// JobResult is the outcome of a job.
type JobResult struct {
	Status          string // successful, failed, error, canceled
	ControllerJobID int64
	URL             string
	LogPath         string
	Artifacts       map[string]any
	Started         time.Time
	Finished        time.Time
	Message         string
}

// Executor runs jobs. It returns an error only when the job could not be run
// at all (lookup failed, launch refused); a job that ran and failed is a
// JobResult with Status "failed".
type Executor interface {
	Run(ctx context.Context, req JobRequest) (JobResult, error)
}

// Config configures a Dispatcher.
type Config struct {
	Engine Engine
	Store  Store
	// Templates runs run_job_template and run_workflow_template; Playbooks runs
	// run_playbook (and also templates when Templates is nil).
	Templates Executor
	Playbooks Executor
	// MaxConcurrentJobs bounds jobs running at once (default 10).
	MaxConcurrentJobs int
	// MaxInFlight bounds entries taken from the inbox and not yet finished
	// (default 10000).
	MaxInFlight int
	// DisableCoalescing runs every job action (one job per event); for
	// comparisons only.
	DisableCoalescing bool
	// Wrap builds the rule engine's event from a stored entry (default
	// WrapEntry: the ansible.eda.webhook shape).
	Wrap func(e *inbox.Entry) (map[string]any, error)
	// Shutdown is called by the shutdown action, after its entry is done.
	Shutdown   func(reason string)
	Logger     *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	// TickInterval is how often a Timed engine's windows are advanced while
	// no event arrives (default 1s).
	TickInterval time.Duration
}

// Dispatcher is the action loop.
type Dispatcher struct {
	cfg      Config
	log      *zap.Logger
	engineMu sync.Mutex
	sem      chan struct{}
	inflight chan struct{}

	mu    sync.Mutex
	lanes map[string]*lane
	wg    sync.WaitGroup

	m metrics
}

type metrics struct {
	matches   *prometheus.CounterVec
	actions   *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	lag       *prometheus.HistogramVec
	coalesced prometheus.Counter
	running   prometheus.Gauge
	engineErr prometheus.Counter
}

// New validates the configuration and returns a dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Engine == nil || cfg.Store == nil {
		return nil, errors.New("dispatch: engine and store are required")
	}
	if cfg.Templates == nil {
		cfg.Templates = cfg.Playbooks
	}
	if cfg.MaxConcurrentJobs <= 0 {
		cfg.MaxConcurrentJobs = 10
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 10000
	}
	if cfg.Wrap == nil {
		cfg.Wrap = WrapEntry
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = time.Second
	}
	d := &Dispatcher{
		cfg: cfg, log: cfg.Logger,
		sem:      make(chan struct{}, cfg.MaxConcurrentJobs),
		inflight: make(chan struct{}, cfg.MaxInFlight),
		lanes:    map[string]*lane{},
	}
	d.m = newMetrics()
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{d.m.matches, d.m.actions, d.m.duration, d.m.lag, d.m.coalesced, d.m.running, d.m.engineErr} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("dispatch: register metrics: %w", err)
			}
		}
	}
	return d, nil
}

// newMetrics makes the dispatcher's collectors (registered by New).
func newMetrics() metrics {
	return metrics{
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "receiver_rule_matches_total", Help: "Rule matches, by ruleset and rule.",
		}, []string{"ruleset", "rule"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "receiver_actions_total", Help: "Actions finished, by action type and outcome.",
		}, []string{"action", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "receiver_job_duration_seconds", Help: "Job duration (launch to final status), by action type.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 14),
		}, []string{"action"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "receiver_replication_lag_seconds",
			Help:    "Per successful job: time from the first change it carried (NFSDirectory firstChangeAt, else the event's observedAt) to the job's end, by event kind.",
			Buckets: []float64{1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 900, 3600},
		}, []string{"kind"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_actions_coalesced_total", Help: "Pending job actions replaced by a newer identical one.",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "receiver_jobs_running", Help: "Jobs running now.",
		}),
		engineErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_engine_errors_total", Help: "Events the rule engine could not evaluate.",
		}),
	}
}

// Run feeds pending inbox entries (oldest first, including those left over
// from before a restart) through the engine until ctx ends, then waits for
// running lanes to stop. Entries interrupted by ctx stay pending.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.wg.Wait()
	var tick <-chan time.Time
	if _, ok := d.cfg.Engine.(Timed); ok {
		t := time.NewTicker(d.cfg.TickInterval)
		defer t.Stop()
		tick = t.C
	}
	var cursor uint64
	for {
		entries, err := d.cfg.Store.Pending(cursor, 256)
		if err != nil {
			return fmt.Errorf("dispatch: %w", err)
		}
		for i := range entries {
			select {
			case d.inflight <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			d.handleEntry(ctx, &entries[i])
			cursor = entries[i].Seq
		}
		if len(entries) > 0 {
			continue
		}
		select {
		case <-d.cfg.Store.Notify():
		case <-tick:
			d.advance(ctx)
		case <-ctx.Done():
			return nil
		}
	}
}

// advance fires the engine's time windows that ended. Their actions belong
// to no inbox entry: they are tracked on their own and recorded as jobs.
func (d *Dispatcher) advance(ctx context.Context) {
	timed := d.cfg.Engine.(Timed)
	d.engineMu.Lock()
	fired, err := func() (f []Fired, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("rule engine panic: %v", r)
			}
		}()
		return timed.Advance(d.cfg.Now())
	}()
	d.engineMu.Unlock()
	if err != nil {
		d.m.engineErr.Inc()
		d.log.Warn("dispatch: time windows", zap.Error(err))
	}
	if len(fired) == 0 {
		return
	}
	t := &tracker{d: d, uuid: uuid.NewString(), pending: 1, ctx: ctx, timer: true}
	for _, f := range fired {
		d.fire(ctx, t, f)
	}
	t.done(0, "", "")
}

// tracker counts the outstanding actions of one inbox entry.
type tracker struct {
	d        *Dispatcher
	seq      uint64
	uuid     string
	mu       sync.Mutex
	pending  int
	rules    []string
	jobs     []uint64
	failures []string
	notes    []string
	shutdown string
	ctx      context.Context
	timer    bool // actions fired by a time window: no inbox entry to complete
}

func (t *tracker) add() {
	t.mu.Lock()
	t.pending++
	t.mu.Unlock()
}

// done finishes one action; failure non-empty records why it failed for good.
func (t *tracker) done(job uint64, failure, note string) {
	t.mu.Lock()
	if job != 0 {
		t.jobs = append(t.jobs, job)
	}
	if failure != "" {
		t.failures = append(t.failures, failure)
	}
	if note != "" {
		t.notes = append(t.notes, note)
	}
	t.pending--
	last := t.pending == 0
	t.mu.Unlock()
	if last {
		t.finish()
	}
}

func (t *tracker) finish() {
	d := t.d
	if t.timer {
		if len(t.failures) > 0 {
			d.log.Warn("dispatch: time-window actions failed", zap.Strings("failures", t.failures))
		}
		return
	}
	defer func() { <-d.inflight }()
	if t.ctx.Err() != nil {
		return // interrupted: stays pending, runs again after restart
	}
	out := inbox.Outcome{State: inbox.StateDone, Rules: t.rules, Jobs: t.jobs}
	if len(t.failures) > 0 {
		out.State = inbox.StateFailed
		out.Reason = strings.Join(t.failures, "; ")
	} else if len(t.notes) > 0 {
		out.Reason = strings.Join(t.notes, "; ")
	} else if len(t.rules) == 0 {
		out.Reason = "no rule matched"
	}
	if err := d.cfg.Store.Complete(context.WithoutCancel(t.ctx), t.seq, out); err != nil {
		d.log.Error("dispatch: record outcome", zap.Uint64("seq", t.seq), zap.Error(err))
	}
	if t.shutdown != "" && d.cfg.Shutdown != nil {
		d.cfg.Shutdown(t.shutdown)
	}
}

func (d *Dispatcher) handleEntry(ctx context.Context, e *inbox.Entry) {
	t := &tracker{d: d, seq: e.Seq, uuid: e.UUID, pending: 1, ctx: ctx}
	defer t.done(0, "", "")
	ev, err := d.cfg.Wrap(e)
	if err != nil {
		d.m.engineErr.Inc()
		t.failures = append(t.failures, "event: "+err.Error())
		return
	}
	fired, err := d.process(ev)
	if err != nil {
		d.m.engineErr.Inc()
		d.log.Warn("dispatch: rule engine", zap.Uint64("seq", e.Seq), zap.Error(err))
		t.failures = append(t.failures, "engine: "+err.Error())
	}
	for _, f := range fired {
		d.fire(ctx, t, f)
	}
}

// process runs the engine on one event; a panic in the engine fails the
// event (recorded with the reason) instead of crashing the receiver, which
// would otherwise meet the same event again after every restart.
func (d *Dispatcher) process(ev map[string]any) (fired []Fired, err error) {
	d.engineMu.Lock()
	defer d.engineMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			fired, err = nil, fmt.Errorf("rule engine panic: %v", r)
		}
	}()
	return d.cfg.Engine.Process(ev)
}

// WrapEntry builds the ansible.eda.webhook event for a stored entry (see
// rulebook.WrapWebhookEvent: whole numbers become int64); a payload that is
// not JSON fails the entry.
func WrapEntry(e *inbox.Entry) (map[string]any, error) {
	if !json.Valid(e.Payload) {
		return nil, fmt.Errorf("decode payload of entry %d: not valid JSON", e.Seq)
	}
	// Raw, so that the rulebook decodes it with json.Number: integers of any
	// size stay exact (as ansible-rulebook's Python ints do).
	return rulebook.WrapWebhookEvent(json.RawMessage(e.Payload), e.Endpoint, e.Headers, e.ReceivedAt, e.UUID), nil
}
