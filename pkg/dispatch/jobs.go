package dispatch

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
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
	for _, k := range sortedKeys(f.MatchingEvents) {
		if ev, ok := f.MatchingEvents[k].(map[string]any); ok {
			if key = LaneKey(ev); key != "" {
				break
			}
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
		job.Status, job.Error = "error", err.Error()
		id, _ := d.cfg.Store.PutJob(context.WithoutCancel(ctx), job)
		d.m.actions.WithLabelValues(f.Action, "error").Inc()
		log.Warn("invalid action arguments", zap.Error(err))
		d.finishTrackers(t, id, "invalid action arguments: "+err.Error())
		return
	}
	exec := d.cfg.Templates
	if req.Kind == KindPlaybook {
		exec = d.cfg.Playbooks
	}
	if exec == nil {
		job.Status, job.Error = "error", "no executor configured for "+f.Action
		id, _ := d.cfg.Store.PutJob(context.WithoutCancel(ctx), job)
		d.m.actions.WithLabelValues(f.Action, "error").Inc()
		d.finishTrackers(t, id, job.Error)
		return
	}
	job.Status = "running"
	id, err := d.cfg.Store.PutJob(ctx, job)
	if err != nil {
		log.Error("record job", zap.Error(err))
	}
	job.ID, req.JobID = id, id
	d.m.running.Inc()
	defer func() {
		if r := recover(); r != nil {
			d.m.running.Dec()
			job.Status, job.Error = "error", fmt.Sprint("internal error: ", r)
			_, _ = d.cfg.Store.PutJob(context.WithoutCancel(ctx), job)
			panic(r) // runTaskSafely fails the events
		}
	}()
	var res JobResult
	var runErr error
	for attempt := 0; ; attempt++ {
		job.Attempts = attempt + 1
		req.Attempt = attempt
		res, runErr = exec.Run(ctx, req)
		if runErr != nil || res.Status != "failed" || attempt >= spec.retries || ctx.Err() != nil {
			break
		}
		log.Info("job failed, retrying", zap.Int("attempt", attempt+1), zap.Int("retries", spec.retries), zap.Duration("delay", spec.delay))
		select {
		case <-time.After(spec.delay):
		case <-ctx.Done():
		}
	}
	d.m.running.Dec()
	if ctx.Err() != nil {
		// Shutting down: the entry stays pending and runs again after a
		// restart (a Controller job is found again by its event label).
		log.Info("job interrupted by shutdown")
		for _, tr := range t.trackers {
			tr.done(0, "", "")
		}
		return
	}
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
			d.m.duration.WithLabelValues(f.Action).Observe(job.DurationSeconds)
		}
		if job.Status == "successful" && !t.firstChange.IsZero() {
			lag := res.Finished.Sub(t.firstChange).Seconds()
			if lag < 0 {
				lag = 0
			}
			job.ReplicationLagSeconds = lag
			first := t.firstChange.UTC()
			job.FirstChange = &first
			d.m.lag.WithLabelValues(t.changeKind).Observe(lag)
		}
	}
	if _, err := d.cfg.Store.PutJob(context.WithoutCancel(ctx), job); err != nil {
		log.Error("record job", zap.Error(err))
	}
	d.m.actions.WithLabelValues(f.Action, job.Status).Inc()
	log.Info("job finished", zap.Uint64("job", id), zap.String("name", req.Name), zap.String("status", job.Status),
		zap.Float64("seconds", job.DurationSeconds), zap.Int("coalesced", job.Coalesced), zap.String("error", job.Error))

	// Artifacts go back to the engine as an event or a fact; what they fire
	// belongs to the newest entry.
	if len(res.Artifacts) > 0 && (spec.postEvents || spec.setFacts) {
		ruleset := f.Ruleset
		if spec.ruleset != "" {
			ruleset = spec.ruleset
		}
		ev := internalEvent(res.Artifacts, f.Action, d.cfg.Now())
		d.engineMu.Lock()
		var more []Fired
		var err error
		if spec.setFacts {
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
	failure := ""
	if job.Status != "successful" {
		failure = fmt.Sprintf("job %d (%s %q) %s", id, f.Action, req.Name, job.Status)
		if job.Error != "" {
			failure += ": " + job.Error
		}
	}
	d.finishTrackers(t, id, failure)
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

type actionSpec struct {
	retries    int
	delay      time.Duration
	postEvents bool
	setFacts   bool
	ruleset    string
}

// buildRequest resolves a job action's arguments as ansible-rulebook does:
// extra_vars plus ansible_eda (unless include_events is false), the limit
// from job_args.limit or the event's meta.hosts.
func buildRequest(f Fired, eventUUID string) (JobRequest, actionSpec, error) {
	var spec actionSpec
	req := JobRequest{Args: f.Args, EventUUID: eventUUID}
	switch f.Action {
	case "run_job_template":
		req.Kind = KindJobTemplate
	case "run_workflow_template":
		req.Kind = KindWorkflowTemplate
	default:
		req.Kind = KindPlaybook
	}
	req.Name = str(f.Args["name"])
	if req.Name == "" {
		return req, spec, fmt.Errorf("%s: name is required", f.Action)
	}
	req.Organization = str(f.Args["organization"])
	if req.Kind != KindPlaybook && req.Organization == "" {
		return req, spec, fmt.Errorf("%s: organization is required", f.Action)
	}
	var userVars map[string]any
	var limit any
	if req.Kind == KindPlaybook {
		userVars, _ = f.Args["extra_vars"].(map[string]any)
	} else {
		jobArgs, _ := f.Args["job_args"].(map[string]any)
		userVars, _ = jobArgs["extra_vars"].(map[string]any)
		limit = jobArgs["limit"]
	}
	vars := maps.Clone(userVars)
	if vars == nil {
		vars = map[string]any{}
	}
	if b, ok := f.Args["include_events"].(bool); !ok || b {
		eda := map[string]any{"ruleset": f.Ruleset, "rule": f.Rule}
		if ev, ok := f.MatchingEvents["m"]; ok && len(f.MatchingEvents) == 1 {
			eda["event"] = ev
		} else {
			eda["events"] = f.MatchingEvents
		}
		vars["ansible_eda"] = eda
	}
	req.ExtraVars = vars
	switch l := limit.(type) {
	case string:
		req.Limit = l
	case []any:
		parts := make([]string, 0, len(l))
		for _, p := range l {
			parts = append(parts, fmt.Sprint(p))
		}
		req.Limit = strings.Join(parts, ",")
	}
	if req.Limit == "" {
		req.Limit = eventHosts(f.MatchingEvents)
	}
	for _, l := range asList(f.Args["labels"]) {
		req.Labels = append(req.Labels, fmt.Sprint(l))
	}
	if b, ok := f.Args["add_event_uuid_label"].(bool); ok && !b {
		req.EventUUID = ""
	}
	if r, ok := toInt(f.Args["retries"]); ok {
		spec.retries = r
	} else if b, _ := f.Args["retry"].(bool); b {
		spec.retries = 1
	}
	if dl, ok := toFloat(f.Args["delay"]); ok {
		spec.delay = time.Duration(dl * float64(time.Second))
	}
	spec.postEvents, _ = f.Args["post_events"].(bool)
	spec.setFacts, _ = f.Args["set_facts"].(bool)
	spec.ruleset = str(f.Args["ruleset"])
	return req, spec, nil
}

func eventHosts(matching map[string]any) string {
	var hosts []string
	for _, k := range sortedKeys(matching) {
		ev, _ := matching[k].(map[string]any)
		meta, _ := ev["meta"].(map[string]any)
		for _, h := range asList(meta["hosts"]) {
			hosts = append(hosts, fmt.Sprint(h))
		}
	}
	return strings.Join(hosts, ",")
}

func asList(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	case string:
		if x == "" {
			return nil
		}
		return []any{x}
	default:
		return []any{x}
	}
}

func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), true
	case string:
		n, err := strconv.Atoi(x)
		return n, err == nil
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case string:
		n, err := strconv.ParseFloat(x, 64)
		return n, err == nil
	}
	return 0, false
}

// sortedKeys gives m_0, m_1, ... (or m) in a stable order.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// firstChange finds the earliest change time among an action's matching
// events: an NFSDirectory's resource.firstChangeAt (when the VM wrote), else
// the payload's observedAt (when the forwarder saw the object change). kind is
// bounded to the event kinds the project ships, else "other".
func firstChange(f Fired) (time.Time, string) {
	var first time.Time
	kind := ""
	for _, k := range sortedKeys(f.MatchingEvents) {
		ev, _ := f.MatchingEvents[k].(map[string]any)
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
