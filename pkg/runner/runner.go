// Package runner is the receiver's embedded job runner: with no Controller
// configured, run_job_template and run_workflow_template run the playbook a
// catalog file maps the template name to, and run_playbook runs a playbook
// directly, with ansible-playbook (argv only, never a shell), the configured
// inventory and the extra vars in a YAML file that marks every string
// !unsafe (unsafevars.go). Each job writes its own log.
package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	yaml "go.yaml.in/yaml/v3"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

// Catalog maps template names to playbooks.
type Catalog struct {
	// ProjectDir is the directory playbooks are relative to and
	// ansible-playbook runs in (so its ansible.cfg applies).
	ProjectDir        string
	JobTemplates      map[string]string // name -> absolute playbook path
	WorkflowTemplates map[string]string
	// Specs are the declared inputs of each template, by Kind+"/"+name
	// (see Spec): what a launch through the operator API may set.
	Specs map[string]TemplateSpec
}

type catalogEntry struct {
	Name      string     `yaml:"name"`
	Playbook  string     `yaml:"playbook"`
	Variables []Variable `yaml:"variables"`
	Confirm   *bool      `yaml:"confirm"`
}

type catalogFile struct {
	ProjectDir string         `yaml:"project_dir"`
	Job        []catalogEntry `yaml:"job_templates"`
	Workflow   []catalogEntry `yaml:"workflow_job_templates"`
}

// LoadCatalog reads a catalog file. project_dir is relative to the file
// (default: the file's directory); playbooks are relative to project_dir and
// may not leave it.
func LoadCatalog(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("runner: read catalog: %w", err)
	}
	var f catalogFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("runner: parse catalog %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	c := &Catalog{ProjectDir: filepath.Dir(abs), JobTemplates: map[string]string{}, WorkflowTemplates: map[string]string{},
		Specs: map[string]TemplateSpec{}}
	if f.ProjectDir != "" {
		if filepath.IsAbs(f.ProjectDir) {
			c.ProjectDir = filepath.Clean(f.ProjectDir)
		} else {
			c.ProjectDir = filepath.Join(c.ProjectDir, f.ProjectDir)
		}
	}
	var errs []error
	add := func(m map[string]string, kind, name, pb string) {
		switch {
		case name == "" || pb == "":
			errs = append(errs, fmt.Errorf("%s entry needs name and playbook (name %q)", kind, name))
		case m[name] != "":
			errs = append(errs, fmt.Errorf("%s %q listed twice", kind, name))
		default:
			p, err := c.resolve(pb)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", kind, name, err))
				return
			}
			m[name] = p
		}
	}
	for _, e := range f.Job {
		add(c.JobTemplates, "job template", e.Name, e.Playbook)
		errs = append(errs, c.addSpec(dispatch.KindJobTemplate, e))
	}
	for _, e := range f.Workflow {
		add(c.WorkflowTemplates, "workflow job template", e.Name, e.Playbook)
		errs = append(errs, c.addSpec(dispatch.KindWorkflowTemplate, e))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("runner: catalog %s: %w", path, err)
	}
	return c, nil
}

func (c *Catalog) resolve(pb string) (string, error) {
	p := pb
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.ProjectDir, p)
	}
	p = filepath.Clean(p)
	if rel, err := filepath.Rel(c.ProjectDir, p); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("playbook %q is outside the project directory %s", pb, c.ProjectDir)
	}
	return p, nil
}

// Check reports catalog playbooks that do not exist.
func (c *Catalog) Check() error {
	var errs []error
	for _, m := range []map[string]string{c.JobTemplates, c.WorkflowTemplates} {
		for name, p := range m {
			if st, err := os.Stat(p); err != nil || st.IsDir() {
				errs = append(errs, fmt.Errorf("template %q: playbook %s not found", name, p))
			}
		}
	}
	return errors.Join(errs...)
}

// Config configures a Runner.
type Config struct {
	Catalog *Catalog // may be nil when only run_playbook is used
	// ProjectDir is where run_playbook paths are resolved and ansible-playbook
	// runs (default: the catalog's project dir, else the working directory).
	ProjectDir string
	Inventory  string
	// LogDir receives job-<id>.log per job (created if missing).
	LogDir string
	// AnsiblePlaybook is the program (default "ansible-playbook" from PATH).
	AnsiblePlaybook string
	// Env is added to the inherited environment.
	Env    []string
	Logger *zap.Logger
}

// Runner runs playbooks locally. It implements dispatch.Executor.
type Runner struct {
	cfg Config
	log *zap.Logger
}

// New validates cfg and returns a runner.
func New(cfg Config) (*Runner, error) {
	if cfg.AnsiblePlaybook == "" {
		cfg.AnsiblePlaybook = "ansible-playbook"
	}
	if _, err := exec.LookPath(cfg.AnsiblePlaybook); err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	if cfg.ProjectDir == "" {
		if cfg.Catalog != nil {
			cfg.ProjectDir = cfg.Catalog.ProjectDir
		} else if wd, err := os.Getwd(); err == nil {
			cfg.ProjectDir = wd
		}
	}
	if cfg.Inventory != "" {
		abs, err := filepath.Abs(cfg.Inventory)
		if err != nil {
			return nil, fmt.Errorf("runner: inventory: %w", err)
		}
		cfg.Inventory = abs
		if _, err := os.Stat(cfg.Inventory); err != nil {
			return nil, fmt.Errorf("runner: inventory: %w", err)
		}
	}
	if cfg.LogDir == "" {
		return nil, errors.New("runner: log directory is empty")
	}
	if err := os.MkdirAll(cfg.LogDir, 0o750); err != nil {
		return nil, fmt.Errorf("runner: create log directory: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Runner{cfg: cfg, log: cfg.Logger}, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (r *Runner) playbook(req dispatch.JobRequest) (string, error) {
	switch req.Kind {
	case dispatch.KindJobTemplate, dispatch.KindWorkflowTemplate:
		if r.cfg.Catalog == nil {
			return "", fmt.Errorf("no job template catalog configured for %q", req.Name)
		}
		m := r.cfg.Catalog.JobTemplates
		if req.Kind == dispatch.KindWorkflowTemplate {
			m = r.cfg.Catalog.WorkflowTemplates
		}
		p, ok := m[req.Name]
		if !ok {
			return "", fmt.Errorf("template %q is not in the catalog", req.Name)
		}
		return p, nil
	default:
		p := req.Name
		if !filepath.IsAbs(p) {
			p = filepath.Join(r.cfg.ProjectDir, p)
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("playbook %s not found", p)
		}
		return p, nil
	}
}

// Run runs one job and waits for it. A playbook that fails is a result with
// status "failed"; a playbook that cannot be started is an error.
func (r *Runner) Run(ctx context.Context, req dispatch.JobRequest) (dispatch.JobResult, error) {
	pb, err := r.playbook(req)
	if err != nil {
		return dispatch.JobResult{}, fmt.Errorf("runner: %w", err)
	}
	base := fmt.Sprintf("job-%d", req.JobID)
	if req.JobID == 0 {
		base = fmt.Sprintf("job-%s-%d", unsafeName.ReplaceAllString(req.Name, "_"), time.Now().UnixNano())
	}
	varsPath := filepath.Join(r.cfg.LogDir, base+".vars.yml")
	logPath := filepath.Join(r.cfg.LogDir, base+".log")
	resultPath := filepath.Join(r.cfg.LogDir, base+".result.json")
	_ = os.Remove(resultPath) // a retry must not read the previous attempt's result
	vars := maps.Clone(req.ExtraVars)
	if vars == nil {
		vars = map[string]any{}
	}
	vars[ResultFileVar] = resultPath
	vb, err := encodeUnsafeVars(vars)
	if err != nil {
		return dispatch.JobResult{}, fmt.Errorf("runner: %w", err)
	}
	if err := os.WriteFile(varsPath, vb, 0o600); err != nil {
		return dispatch.JobResult{}, fmt.Errorf("runner: write extra vars: %w", err)
	}
	defer os.Remove(varsPath)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return dispatch.JobResult{}, fmt.Errorf("runner: open job log: %w", err)
	}
	defer logf.Close()

	args := []string{}
	if r.cfg.Inventory != "" {
		args = append(args, "-i", r.cfg.Inventory)
	}
	args = append(args, "-e", "@"+varsPath)
	if req.Limit != "" && req.Limit != "all" {
		args = append(args, "--limit", req.Limit)
	}
	args = append(args, pb)
	cmd := exec.CommandContext(ctx, r.cfg.AnsiblePlaybook, args...)
	cmd.Dir = r.cfg.ProjectDir
	cmd.Env = append(append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_RETRY_FILES_ENABLED=0"), r.cfg.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second

	started := time.Now()
	fmt.Fprintf(logf, "# %s %s job %d: %s\n# argv: %s\n", started.UTC().Format(time.RFC3339), req.Kind, req.JobID, req.Name,
		strings.Join(append([]string{r.cfg.AnsiblePlaybook}, args...), " "))
	res := dispatch.JobResult{LogPath: logPath, Started: started}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("runner: start %s: %w", r.cfg.AnsiblePlaybook, err)
	}
	r.log.Info("playbook started", zap.String("name", req.Name), zap.String("playbook", pb), zap.Int("pid", cmd.Process.Pid), zap.String("log", logPath))
	werr := cmd.Wait()
	res.Finished = time.Now()
	var ee *exec.ExitError
	switch {
	case werr == nil:
		res.Status = "successful"
	case ctx.Err() != nil:
		res.Status = "canceled"
	case errors.As(werr, &ee):
		res.Status = "failed"
		res.Message = fmt.Sprintf("ansible-playbook exited with %d (log %s)", ee.ExitCode(), logPath)
	default:
		res.Status = "error"
		res.Message = werr.Error()
	}
	fmt.Fprintf(logf, "# %s status %s after %.1fs\n", res.Finished.UTC().Format(time.RFC3339), res.Status, res.Finished.Sub(started).Seconds())
	if art, err := readResult(resultPath); err != nil {
		fmt.Fprintf(logf, "# result file: %v\n", err)
		r.log.Warn("job result file unreadable", zap.String("name", req.Name), zap.String("path", resultPath), zap.Error(err))
	} else {
		res.Artifacts = art
	}
	return res, nil
}
