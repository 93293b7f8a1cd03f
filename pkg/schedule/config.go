// Package schedule runs job and workflow templates on cron-like schedules
// inside the receiver, so that the periodic work AAP schedules (the hourly
// periodic sync) also runs without AAP. A run goes through the same
// dispatch.Executor as the rulebook's run_job_template actions (the local
// runner or the Controller) and is recorded as a job in the inbox.
package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	yaml "go.yaml.in/yaml/v3"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

// Entry is one schedule of the --schedules file.
type Entry struct {
	Name             string         `yaml:"name"`
	Cron             string         `yaml:"cron"`
	JobTemplate      string         `yaml:"job_template"`
	WorkflowTemplate string         `yaml:"workflow_template"`
	Organization     string         `yaml:"organization"`
	ExtraVars        map[string]any `yaml:"extra_vars"`
	Enabled          *bool          `yaml:"enabled"`

	spec cron.Schedule
}

// knownKeys are the keys an entry may have, in documentation order.
var knownKeys = []string{"name", "cron", "job_template", "workflow_template", "organization", "extra_vars", "enabled"}

// maxNameLength bounds a schedule name (it is a metric label value).
const maxNameLength = 100

// IsEnabled reports whether the entry runs (enabled defaults to true).
func (e Entry) IsEnabled() bool { return e.Enabled == nil || *e.Enabled }

// Kind is the dispatch job kind: KindJobTemplate or KindWorkflowTemplate.
func (e Entry) Kind() string {
	if e.WorkflowTemplate != "" {
		return dispatch.KindWorkflowTemplate
	}
	return dispatch.KindJobTemplate
}

// Template is the job or workflow template name.
func (e Entry) Template() string {
	if e.WorkflowTemplate != "" {
		return e.WorkflowTemplate
	}
	return e.JobTemplate
}

// Action is the rulebook action a run corresponds to.
func (e Entry) Action() string {
	if e.WorkflowTemplate != "" {
		return "run_workflow_template"
	}
	return "run_job_template"
}

// Next is the first due time after t (zero if the spec never comes due).
func (e Entry) Next(t time.Time) time.Time { return e.spec.Next(t) }

// Load reads and validates a schedules file.
func Load(path string) ([]Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	entries, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("schedules %s: %w", path, err)
	}
	return entries, nil
}

// Parse decodes and validates a schedules document: a YAML list of entries.
// Unknown keys, bad cron specs and ambiguous templates are errors naming the
// entry; an empty document is an empty list.
func Parse(data []byte) ([]Entry, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: want a list of schedules (- name: ..., cron: ..., job_template: ...)", root.Line)
	}
	var errs []error
	entries := make([]Entry, 0, len(root.Content))
	seen := map[string]int{}
	for i, n := range root.Content {
		e, err := parseEntry(i, n)
		if err == nil && seen[e.Name] > 0 {
			err = fmt.Errorf("%s: the name is already used by schedule %d", describe(i, n, e.Name), seen[e.Name])
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen[e.Name] = i + 1
		entries = append(entries, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return entries, nil
}

// describe names entry i (0-based) for an error: its line, position and name.
func describe(i int, n *yaml.Node, name string) string {
	if name == "" {
		return fmt.Sprintf("line %d: schedule %d", n.Line, i+1)
	}
	return fmt.Sprintf("line %d: schedule %d (%q)", n.Line, i+1, name)
}

func parseEntry(i int, n *yaml.Node) (Entry, error) {
	var e Entry
	if n.Kind != yaml.MappingNode {
		return e, fmt.Errorf("%s: want a mapping with %s", describe(i, n, ""), strings.Join(knownKeys, ", "))
	}
	name := ""
	for k := 0; k+1 < len(n.Content); k += 2 {
		if n.Content[k].Value == "name" {
			name = n.Content[k+1].Value
		}
	}
	where := describe(i, n, name)
	for k := 0; k < len(n.Content); k += 2 {
		if key := n.Content[k]; !slices.Contains(knownKeys, key.Value) {
			return e, fmt.Errorf("%s: unknown key %q on line %d (known: %s)", where, key.Value, key.Line, strings.Join(knownKeys, ", "))
		}
	}
	if err := n.Decode(&e); err != nil {
		return e, fmt.Errorf("%s: %w", where, err)
	}
	if err := e.validate(time.Now()); err != nil {
		return e, fmt.Errorf("%s: %w", where, err)
	}
	return e, nil
}

// validate checks the fields and parses the cron spec; now is used to check
// that the spec comes due at all.
func (e *Entry) validate(now time.Time) error {
	switch {
	case strings.TrimSpace(e.Name) == "":
		return errors.New("name is required")
	case len(e.Name) > maxNameLength:
		return fmt.Errorf("name is longer than %d characters", maxNameLength)
	case e.JobTemplate == "" && e.WorkflowTemplate == "":
		return errors.New("job_template or workflow_template is required")
	case e.JobTemplate != "" && e.WorkflowTemplate != "":
		return errors.New("give job_template or workflow_template, not both")
	case strings.TrimSpace(e.Cron) == "":
		return errors.New("cron is required (e.g. \"@hourly\", \"0 * * * *\", \"@every 30m\")")
	}
	spec, err := cron.ParseStandard(e.Cron)
	if err != nil {
		return fmt.Errorf("cron %q: %w", e.Cron, err)
	}
	if spec.Next(now).IsZero() {
		return fmt.Errorf("cron %q never comes due", e.Cron)
	}
	e.spec = spec
	return nil
}
