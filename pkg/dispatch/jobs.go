// Job actions: lanes that run them one at a time per resource, coalescing,
// running a job with retries, recording its outcome and posting its
// artifacts back to the engine.

package dispatch

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/rulebook"
)

// task is a job action waiting in, or running from, a lane.
type task struct {
	lane     string
	ckey     string // identical actions share it
	fired    Fired
	trackers []*tracker // the newest last; older ones were coalesced into it
	// firstChange is the earliest change any of the merged events carries;
	// changeKind is its event kind (for the replication-lag metric).
	firstChange time.Time
	changeKind  string
}

type lane struct {
	key     string
	queue   []*task
	running bool
}

// enqueue puts a job action in its lane. If the lane's last waiting task is
// the same action for the same resource, the new one replaces it (carrying
// the older entries along); only the tail is merged, so order is kept.
func (d *Dispatcher) enqueue(ctx context.Context, t *tracker, f Fired) {
	t.add()
	key := ""
	for _, ev := range f.Events() {
		if key = LaneKey(ev); key != "" {
			break
		}
	}
	if key == "" {
		key = fmt.Sprintf("entry:%d:%s/%s", t.seq, f.Ruleset, f.Rule) // unordered
	}
	nt := &task{
		lane:     key,
		ckey:     strings.Join([]string{f.Ruleset, f.Rule, f.Action, str(f.Args["name"]), str(f.Args["organization"])}, "\x00"),
		fired:    f,
		trackers: []*tracker{t},
	}
	nt.firstChange, nt.changeKind = firstChange(f)
	d.mu.Lock()
	l := d.lanes[key]
	if l == nil {
		l = &lane{key: key}
		d.lanes[key] = l
	}
	if n := len(l.queue); n > 0 && l.queue[n-1].ckey == nt.ckey && !d.cfg.DisableCoalescing {
		old := l.queue[n-1]
		nt.trackers = append(old.trackers, t)
		if !old.firstChange.IsZero() && (nt.firstChange.IsZero() || old.firstChange.Before(nt.firstChange)) {
			nt.firstChange, nt.changeKind = old.firstChange, old.changeKind
		}
		l.queue[n-1] = nt
		d.m.coalesced.Inc()
	} else {
		l.queue = append(l.queue, nt)
	}
	start := !l.running
	l.running = true
	d.mu.Unlock()
	if start {
		d.wg.Add(1)
		go d.runLane(ctx, l)
	}
}

func (d *Dispatcher) runLane(ctx context.Context, l *lane) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if len(l.queue) == 0 || ctx.Err() != nil {
			l.running = false
			delete(d.lanes, l.key)
			rest := l.queue
			l.queue = nil
			d.mu.Unlock()
			for _, t := range rest {
				for _, tr := range t.trackers {
					tr.done(0, "", "")
				}
			}
			return
		}
		t := l.queue[0]
		l.queue = l.queue[1:]
		d.mu.Unlock()
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
			for _, tr := range t.trackers {
				tr.done(0, "", "")
			}
			continue
		}
		d.runTaskSafely(ctx, t)
		<-d.sem
	}
}

// Lanes reports how many lanes have work (for tests and debugging).
func (d *Dispatcher) Lanes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.lanes)
}

// runTaskSafely turns a panic while running a job action into a failure of
// the events it carries, so that one bad action cannot stop the receiver.
func (d *Dispatcher) runTaskSafely(ctx context.Context, t *task) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("panic while running an action", zap.Any("panic", r), zap.String("action", t.fired.Action), zap.String("lane", t.lane))
			d.m.actions.WithLabelValues(t.fired.Action, "error").Inc()
			d.finishTrackers(t, 0, fmt.Sprintf("internal error running %s: %v", t.fired.Action, r))
		}
	}()
	d.runTask(ctx, t)
}

// runTask runs one job action, with retries, and finishes its trackers.
func (d *Dispatcher) runTask(ctx context.Context, t *task) {
	f := t.fired
	newest := t.trackers[len(t.trackers)-1]
	log := d.log.With(zap.Uint64("seq", newest.seq), zap.String("rule", f.Rule), zap.String("action", f.Action), zap.String("lane", t.lane))
	req, spec, err := buildRequest(f, newest.uuid)
	job := inbox.Job{
		EventSeq: newest.seq, EventUUID: newest.uuid, Ruleset: f.Ruleset, Rule: f.Rule, Action: f.Action,
		Name: req.Name, Organization: req.Organization, Lane: t.lane, Status: "pending",
		Coalesced: len(t.trackers) - 1, Created: d.cfg.Now().UTC(),
	}
	if err != nil {
		log.Warn("invalid action arguments", zap.Error(err))
		d.refuse(ctx, t, job, err.Error(), "invalid action arguments: "+err.Error())
		return
	}
	exec := d.executor(req.Kind)
	if exec == nil {
		msg := "no executor configured for " + f.Action
		d.refuse(ctx, t, job, msg, msg)
		return
	}
	res, interrupted, runErr := d.execute(ctx, log, t, exec, &req, &job, spec)
	if interrupted {
		// Shutting down: the entry stays pending and runs again after a
		// restart (a Controller job is found again by its event label).
		log.Info("job interrupted by shutdown")
		for _, tr := range t.trackers {
			tr.done(0, "", "")
		}
		return
	}
	d.recordResult(ctx, log, t, &job, res, runErr)
	log.Info("job finished", zap.Uint64("job", job.ID), zap.String("name", req.Name), zap.String("status", job.Status),
		zap.Float64("seconds", job.DurationSeconds), zap.Int("coalesced", job.Coalesced), zap.String("error", job.Error))
	d.postArtifacts(ctx, log, newest, f, res.Artifacts, spec)
	failure := ""
	if job.Status != "successful" {
		failure = fmt.Sprintf("job %d (%s %q) %s", job.ID, f.Action, req.Name, job.Status)
		if job.Error != "" {
			failure += ": " + job.Error
		}
	}
	d.finishTrackers(t, job.ID, failure)
}

// refuse records a job that could not start (status error, with why) and
// fails the task's events with failure.
func (d *Dispatcher) refuse(ctx context.Context, t *task, job inbox.Job, why, failure string) {
	job.Status, job.Error = "error", why
	id, _ := d.cfg.Store.PutJob(context.WithoutCancel(ctx), job)
	d.m.actions.WithLabelValues(t.fired.Action, "error").Inc()
	d.finishTrackers(t, id, failure)
}

// executor is the one that runs jobs of kind (nil: none configured).
func (d *Dispatcher) executor(kind string) Executor {
	if kind == KindPlaybook {
		return d.cfg.Playbooks
	}
	return d.cfg.Templates
}

// execute records the job as running and runs it, relaunching a failed job
// up to spec.Retries times after spec.Delay. interrupted reports that ctx
// ended (the job's outcome is then not recorded). A panic in the executor
// records the job as an error before it goes on to runTaskSafely.
func (d *Dispatcher) execute(ctx context.Context, log *zap.Logger, t *task, exec Executor, req *JobRequest, job *inbox.Job, spec rulebook.JobAction) (res JobResult, interrupted bool, runErr error) {
	job.Status = "running"
	id, err := d.cfg.Store.PutJob(ctx, *job)
	if err != nil {
		log.Error("record job", zap.Error(err))
	}
	job.ID, req.JobID = id, id
	d.m.running.Inc()
	defer func() {
		if r := recover(); r != nil {
			d.m.running.Dec()
			job.Status, job.Error = "error", fmt.Sprint("internal error: ", r)
			_, _ = d.cfg.Store.PutJob(context.WithoutCancel(ctx), *job)
			panic(r) // runTaskSafely fails the events
		}
	}()
	for attempt := 0; ; attempt++ {
		job.Attempts = attempt + 1
		req.Attempt = attempt
		res, runErr = exec.Run(ctx, *req)
		if runErr != nil || res.Status != "failed" || attempt >= spec.Retries || ctx.Err() != nil {
			break
		}
		log.Info("job failed, retrying", zap.Int("attempt", attempt+1), zap.Int("retries", spec.Retries), zap.Duration("delay", spec.Delay))
		select {
		case <-time.After(spec.Delay):
		case <-ctx.Done():
		}
	}
	d.m.running.Dec()
	return res, ctx.Err() != nil, runErr
}

// recordResult stores the job's outcome, times and (successful jobs that
// carried a change) replication lag, and counts it.
func (d *Dispatcher) recordResult(ctx context.Context, log *zap.Logger, t *task, job *inbox.Job, res JobResult, runErr error) {
	action := t.fired.Action
	if runErr != nil {
		job.Status, job.Error = "error", runErr.Error()
	} else {
		job.Status = res.Status
		job.Error = res.Message
	}
	job.ControllerJobID, job.URL, job.LogPath, job.Artifacts = res.ControllerJobID, res.URL, res.LogPath, res.Artifacts
	if !res.Started.IsZero() {
		s := res.Started.UTC()
		job.Started = &s
	}
	if !res.Finished.IsZero() {
		fin := res.Finished.UTC()
		job.Finished = &fin
		if !res.Started.IsZero() {
			job.DurationSeconds = res.Finished.Sub(res.Started).Seconds()
			d.m.duration.WithLabelValues(action).Observe(job.DurationSeconds)
		}
		if job.Status == "successful" && !t.firstChange.IsZero() {
			lag := max(res.Finished.Sub(t.firstChange).Seconds(), 0)
			job.ReplicationLagSeconds = lag
			first := t.firstChange.UTC()
			job.FirstChange = &first
			d.m.lag.WithLabelValues(t.changeKind).Observe(lag)
		}
	}
	if _, err := d.cfg.Store.PutJob(context.WithoutCancel(ctx), *job); err != nil {
		log.Error("record job", zap.Error(err))
	}
	d.m.actions.WithLabelValues(action, job.Status).Inc()
}

// postArtifacts sends a job's artifacts back to the engine as an event or a
// fact (post_events / set_facts); what they fire belongs to the newest entry.
func (d *Dispatcher) postArtifacts(ctx context.Context, log *zap.Logger, newest *tracker, f Fired, artifacts map[string]any, spec rulebook.JobAction) {
	if len(artifacts) == 0 || (!spec.PostEvents && !spec.SetFacts) {
		return
	}
	ruleset := f.Ruleset
	if spec.Ruleset != "" {
		ruleset = spec.Ruleset
	}
	ev := rulebook.InternalEvent(artifacts, f.Action, d.cfg.Now())
	d.engineMu.Lock()
	var more []Fired
	var err error
	if spec.SetFacts {
		more, err = d.cfg.Engine.SetFact(ruleset, ev)
	} else {
		more, err = d.cfg.Engine.PostEvent(ruleset, ev)
	}
	d.engineMu.Unlock()
	if err != nil {
		log.Warn("post job artifacts", zap.Error(err))
	}
	for _, mf := range more {
		d.fire(ctx, newest, mf)
	}
}

func (d *Dispatcher) finishTrackers(t *task, job uint64, failure string) {
	newest := t.trackers[len(t.trackers)-1]
	for _, tr := range t.trackers[:len(t.trackers)-1] {
		note := fmt.Sprintf("coalesced into the action of event %d", newest.seq)
		f := ""
		if failure != "" {
			f = note + ": " + failure
		}
		tr.done(job, f, note)
	}
	newest.done(job, failure, "")
}

// buildRequest resolves a job action's arguments (rulebook.Fired.JobAction:
// extra_vars plus ansible_eda unless include_events is false, the limit from
// job_args.limit or the event's meta.hosts) into the executor's request.
func buildRequest(f Fired, eventUUID string) (JobRequest, rulebook.JobAction, error) {
	spec, err := f.JobAction()
	req := JobRequest{
		Kind: spec.Kind, Name: spec.Name, Organization: spec.Organization, ExtraVars: spec.ExtraVars,
		Limit: spec.Limit, Labels: spec.Labels, EventUUID: eventUUID, Args: f.Args,
	}
	if !spec.EventUUIDLabel {
		req.EventUUID = ""
	}
	return req, spec, err
}

// firstChange finds the earliest change time among an action's matching
// events: an NFSDirectory's resource.firstChangeAt (when the VM wrote), else
// the payload's observedAt (when the forwarder saw the object change). kind is
// bounded to the event kinds the project ships, else "other".
func firstChange(f Fired) (time.Time, string) {
	var first time.Time
	kind := ""
	for _, ev := range f.Events() {
		body := ev
		if p, ok := ev["payload"].(map[string]any); ok {
			body = p
		}
		var at time.Time
		res, _ := body["resource"].(map[string]any)
		if s, ok := res["firstChangeAt"].(string); ok {
			at, _ = time.Parse(time.RFC3339Nano, s)
		}
		if s, ok := body["observedAt"].(string); ok && at.IsZero() {
			at, _ = time.Parse(time.RFC3339Nano, s)
		}
		if !at.IsZero() && (first.IsZero() || at.Before(first)) {
			first = at
			kind = str(body["kind"])
		}
	}
	switch kind {
	case "PersistentVolume", "VolumeSnapshot", "NFSDirectory":
	default:
		kind = "other"
	}
	return first, kind
}
