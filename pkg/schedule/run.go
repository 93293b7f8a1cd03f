package schedule

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// fire handles a slot whose due time has come: one run for every due time
// up to now (the others are counted as missed), or a skip while the previous
// run is still going. The job record is written before fire returns.
func (s *Scheduler) fire(ctx context.Context, sl *slot, now time.Time) {
	n := countDue(sl, now)
	missed := n - 1 // late: the host slept or the clock jumped
	if sl.catchUp {
		missed, sl.catchUp = n, false // every one passed while the receiver was down
	}
	sl.next = sl.Next(now)
	s.st.Schedules[sl.Name] = stateEntry{Last: now}
	s.m.setNext(sl)
	log := s.log.With(zap.String("schedule", sl.Name), zap.String("template", sl.Template()), zap.Time("due", now))
	if missed > 0 {
		s.m.missed.WithLabelValues(sl.Name).Add(float64(missed))
		log.Warn("schedule missed due times; running once now", zap.Int("missed", missed))
	}
	s.mu.Lock()
	busy, busyJob, busyDue := sl.running, sl.runningJob, sl.runningDue
	s.mu.Unlock()
	if busy {
		s.skip(ctx, sl, now, missed, busyJob, busyDue, log)
		return
	}
	s.launch(ctx, sl, now, missed, log)
}

// countDue counts the due times from sl.next up to now (at least one).
func countDue(sl *slot, now time.Time) int {
	n := 0
	for t := sl.next; !t.IsZero() && !t.After(now) && n < maxCounted; t = sl.Next(t) {
		n++
	}
	return max(n, 1)
}

// record is a new job record for a run of sl due at now.
func record(sl *slot, now time.Time, missed int) inbox.Job {
	return inbox.Job{
		EventUUID: runUUID(sl.Name, now), Ruleset: Ruleset, Rule: sl.Name, Action: sl.Action(),
		Name: sl.Template(), Organization: sl.Organization, Lane: "schedule:" + sl.Name,
		Coalesced: missed, Created: now.UTC(),
	}
}

// runUUID names one run: the same schedule and due time give the same UUID,
// so a Controller launch that is retried is found instead of repeated.
func runUUID(name string, due time.Time) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:ocpv-dr:schedule:"+name+"@"+due.UTC().Format(time.RFC3339Nano))).String()
}

func (s *Scheduler) skip(ctx context.Context, sl *slot, now time.Time, missed int, busyJob uint64, busyDue time.Time, log *zap.Logger) {
	job := record(sl, now, missed)
	fin := now.UTC()
	job.Status, job.Finished = StatusSkipped, &fin
	job.Error = fmt.Sprintf("previous run (job %d, due %s) still running", busyJob, busyDue.UTC().Format(time.RFC3339))
	id, err := s.cfg.Store.PutJob(context.WithoutCancel(ctx), job)
	if err != nil {
		log.Error("record skipped run", zap.Error(err))
	}
	s.m.runs.WithLabelValues(sl.Name, StatusSkipped).Inc()
	log.Warn("schedule run skipped: the previous run is still going", zap.Uint64("job", id), zap.Uint64("running_job", busyJob))
}

func (s *Scheduler) launch(ctx context.Context, sl *slot, now time.Time, missed int, log *zap.Logger) {
	job := record(sl, now, missed)
	job.Status, job.Attempts = "running", 1
	id, err := s.cfg.Store.PutJob(ctx, job)
	if err != nil {
		log.Error("record job", zap.Error(err))
	}
	job.ID = id
	req := dispatch.JobRequest{Kind: sl.Kind(), Name: sl.Template(), Organization: sl.Organization,
		ExtraVars: maps.Clone(sl.ExtraVars), EventUUID: job.EventUUID, JobID: id}
	if req.ExtraVars == nil {
		req.ExtraVars = map[string]any{}
	}
	s.mu.Lock()
	sl.running, sl.runningJob, sl.runningDue = true, id, now
	s.mu.Unlock()
	log.Info("schedule run started", zap.Uint64("job", id), zap.Int("missed", missed))
	s.wg.Go(func() { s.run(ctx, sl, job, req, log.With(zap.Uint64("job", id))) })
}

// run runs the job, frees the slot and records the outcome (a due time
// after the final record is never skipped for this run).
func (s *Scheduler) run(ctx context.Context, sl *slot, job inbox.Job, req dispatch.JobRequest, log *zap.Logger) {
	res, err := s.execute(ctx, req)
	s.mu.Lock()
	sl.running = false
	s.mu.Unlock()
	s.outcome(ctx, &job, res, err)
	if _, err := s.cfg.Store.PutJob(context.WithoutCancel(ctx), job); err != nil {
		log.Error("record job", zap.Error(err))
	}
	s.m.runs.WithLabelValues(sl.Name, job.Status).Inc()
	if job.DurationSeconds > 0 {
		s.m.duration.WithLabelValues(sl.Name).Observe(job.DurationSeconds)
	}
	log.Info("schedule run finished", zap.String("status", job.Status), zap.Float64("seconds", job.DurationSeconds),
		zap.String("error", job.Error))
}

// execute runs req, turning a panic into an error so that a bad executor
// cannot stop the receiver.
func (s *Scheduler) execute(ctx context.Context, req dispatch.JobRequest) (res dispatch.JobResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error running %s %q: %v", req.Kind, req.Name, r)
		}
	}()
	return s.cfg.Executor.Run(ctx, req)
}

// outcome fills the job record from the executor's answer.
func (s *Scheduler) outcome(ctx context.Context, job *inbox.Job, res dispatch.JobResult, err error) {
	switch {
	case ctx.Err() != nil:
		job.Status, job.Error = "canceled", "receiver stopped during the run"
	case err != nil:
		job.Status, job.Error = "error", err.Error()
	case res.Status == "":
		job.Status, job.Error = "error", "executor returned no status"
	default:
		job.Status, job.Error = res.Status, res.Message
	}
	job.ControllerJobID, job.URL, job.LogPath, job.Artifacts = res.ControllerJobID, res.URL, res.LogPath, res.Artifacts
	started, finished := res.Started, res.Finished
	if finished.IsZero() {
		finished = s.cfg.Clock.Now()
	}
	if !started.IsZero() {
		st := started.UTC()
		job.Started = &st
		job.DurationSeconds = finished.Sub(started).Seconds()
	}
	fin := finished.UTC()
	job.Finished = &fin
}
