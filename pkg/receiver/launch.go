package receiver

// POST /api/v1/launch: an operator launches a template (the periodic sync, a
// drill, a failover) with extra vars, through the same executor the rules
// use. The vars are checked against the template's declared variables in
// the catalog (pkg/runner spec.go); a failover or failback is refused unless
// "confirm" names this site (--site-name). Every launch and refusal is
// audited in the log (template, variable names, who; never the values).
// GET /api/v1/jobs/{id} follows a job.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/runner"
)

// LaunchRequest is the body of POST /api/v1/launch.
type LaunchRequest struct {
	Template     string         `json:"template"`
	Kind         string         `json:"kind,omitempty"` // job_template (default) or workflow_job_template
	Organization string         `json:"organization,omitempty"`
	ExtraVars    map[string]any `json:"extra_vars,omitempty"`
	Confirm      string         `json:"confirm,omitempty"` // the site name, for failover and failback
}

// launcher runs launched jobs until Stop.
type launcher struct {
	cfg     Config
	cat     *runner.Catalog // nil: no catalog (Controller only)
	exec    dispatch.Executor
	store   *jobRecorder
	log     *zap.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	logDir  string
	maxBody int64
}

func newLauncher(cfg Config, exec dispatch.Executor, store *jobRecorder, log *zap.Logger) (*launcher, error) {
	l := &launcher{cfg: cfg, exec: exec, store: store, log: log, logDir: jobLogDir(cfg), maxBody: 1 << 20}
	if cfg.JobTemplates != "" {
		cat, err := runner.LoadCatalog(cfg.JobTemplates)
		if err != nil {
			return nil, err
		}
		l.cat = cat
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l, nil
}

// Stop interrupts launched jobs and waits until they are recorded.
func (l *launcher) Stop() {
	l.cancel()
	l.wg.Wait()
}

// check validates a launch: 0 and nil when it may run, else the status and why.
func (l *launcher) check(req *LaunchRequest) (int, error) {
	if req.Template == "" {
		return http.StatusBadRequest, errors.New("template is required")
	}
	if req.Kind == "" {
		req.Kind = dispatch.KindJobTemplate
	}
	if req.Kind != dispatch.KindJobTemplate && req.Kind != dispatch.KindWorkflowTemplate {
		return http.StatusBadRequest, fmt.Errorf("kind must be %s or %s", dispatch.KindJobTemplate, dispatch.KindWorkflowTemplate)
	}
	if l.exec == nil {
		return http.StatusServiceUnavailable, errors.New("no executor: neither --controller-url nor --job-templates with ansible-playbook")
	}
	n := strings.ToLower(req.Template)
	confirm := strings.Contains(n, "failover") || strings.Contains(n, "failback")
	var spec runner.TemplateSpec
	found := false
	if l.cat != nil {
		spec, found = l.cat.Spec(req.Kind, req.Template)
	}
	switch {
	case found:
		confirm = spec.Confirm
		if err := spec.Validate(req.ExtraVars); err != nil {
			return http.StatusBadRequest, fmt.Errorf("extra vars: %w", err)
		}
	case l.cfg.ControllerURL == "":
		return http.StatusNotFound, fmt.Errorf("%s %q is not in the catalog %s", req.Kind, req.Template, l.cfg.JobTemplates)
	}
	// Otherwise the Controller checks the vars against its survey.
	if confirm && req.Confirm != l.cfg.SiteName {
		return http.StatusPreconditionFailed, fmt.Errorf("%q changes which site runs the VMs: confirm it with the site name (--confirm %s)", req.Template, l.cfg.SiteName)
	}
	return 0, nil
}

// launch records the job and runs it in the background.
func (l *launcher) launch(req LaunchRequest) (uint64, error) {
	now := time.Now().UTC()
	org := req.Organization
	if org == "" {
		org = "Default"
	}
	action := "run_job_template"
	if req.Kind == dispatch.KindWorkflowTemplate {
		action = "run_workflow_template"
	}
	job := inbox.Job{Ruleset: "api", Rule: "launch", Action: action, Name: req.Template, Organization: org,
		Lane: "launch:" + req.Template, Status: "running", Attempts: 1, Created: now, Started: &now}
	id, err := l.store.PutJob(l.ctx, job)
	if err != nil {
		return 0, fmt.Errorf("record the job: %w", err)
	}
	job.ID = id
	if l.cfg.ControllerURL == "" {
		job.LogPath = filepath.Join(l.logDir, fmt.Sprintf("job-%d.log", id)) // followed while it runs
		_, _ = l.store.PutJob(l.ctx, job)
	}
	jr := dispatch.JobRequest{Kind: req.Kind, Name: req.Template, Organization: org, ExtraVars: maps.Clone(req.ExtraVars), JobID: id}
	if jr.ExtraVars == nil {
		jr.ExtraVars = map[string]any{}
	}
	l.wg.Go(func() { l.run(job, jr) })
	return id, nil
}

func (l *launcher) run(job inbox.Job, req dispatch.JobRequest) {
	res, err := l.exec.Run(l.ctx, req)
	switch {
	case l.ctx.Err() != nil:
		job.Status, job.Error = "canceled", "receiver stopped during the run"
	case err != nil:
		job.Status, job.Error = "error", err.Error()
	default:
		job.Status, job.Error = res.Status, res.Message
	}
	job.ControllerJobID, job.URL, job.Artifacts = res.ControllerJobID, res.URL, res.Artifacts
	if res.LogPath != "" {
		job.LogPath = res.LogPath
	}
	fin := time.Now().UTC()
	if !res.Finished.IsZero() {
		fin = res.Finished.UTC()
	}
	job.Finished = &fin
	job.DurationSeconds = fin.Sub(*job.Started).Seconds()
	if _, err := l.store.PutJob(context.Background(), job); err != nil {
		l.log.Error("record launched job", zap.Uint64("job", job.ID), zap.Error(err))
	}
	l.log.Info("launched job finished", zap.Uint64("job", job.ID), zap.String("template", job.Name), zap.String("status", job.Status))
}

// launchHandler serves POST /api/v1/launch.
func (a *apiHandler) launchHandler(w http.ResponseWriter, r *http.Request) {
	audit := a.log.Named("audit").With(zap.String("remote", r.RemoteAddr))
	if !a.auth.check(w, r) {
		audit.Warn("launch refused", zap.String("reason", "not authorized"))
		return
	}
	var req LaunchRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.launcher.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		audit.Warn("launch refused", zap.Int("status", http.StatusBadRequest), zap.Error(err))
		http.Error(w, "bad launch request: "+err.Error(), http.StatusBadRequest)
		return
	}
	names := slices.Sorted(maps.Keys(req.ExtraVars))
	audit = audit.With(zap.String("template", req.Template), zap.String("kind", req.Kind),
		zap.Strings("extra_vars", names), zap.String("confirm", req.Confirm))
	if code, err := a.launcher.check(&req); err != nil {
		audit.Warn("launch refused", zap.Int("status", code), zap.Error(err))
		http.Error(w, err.Error(), code)
		return
	}
	id, err := a.launcher.launch(req)
	if err != nil {
		audit.Error("launch failed", zap.Error(err))
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	audit.Warn("launch", zap.Uint64("job", id))
	w.Header().Set("Location", "/api/v1/jobs/"+strconv.FormatUint(id, 10))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	writeJSON(w, map[string]any{"job": id})
}

// job serves GET /api/v1/jobs/{id}.
func (a *apiHandler) job(w http.ResponseWriter, r *http.Request) {
	j, ok := a.requestedJob(w, r)
	if !ok {
		return
	}
	j.Artifacts = nil
	writeJSON(w, j)
}

// requestedJob authorizes the request and returns the job its {id} names,
// or answers the error itself (401/403, 400, 404) and returns false.
func (a *apiHandler) requestedJob(w http.ResponseWriter, r *http.Request) (*inbox.Job, bool) {
	if !a.auth.check(w, r) {
		return nil, false
	}
	id, err := strconv.ParseUint(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		http.Error(w, "bad job id", http.StatusBadRequest)
		return nil, false
	}
	j, err := a.in.GetJob(id)
	if err != nil || j == nil {
		http.Error(w, "no such job", http.StatusNotFound)
		return nil, false
	}
	return j, true
}
