// The action registry: every action a rulebook may name, with its allowed
// and required arguments and who carries it out (the engine, the
// dispatcher's job lanes, or the dispatcher itself), in one table, as
// ansible-rulebook keeps ACTION_CLASSES. Actions with engine behaviour have
// a file each (action_set_fact.go, action_post_event.go,
// action_retract_fact.go); the run_* argument semantics are in
// action_job.go.

package rulebook

import (
	"maps"
	"slices"
)

// Job kinds: what the dispatcher runs for a run_* action.
const (
	JobTemplate         = "job_template"
	JobWorkflowTemplate = "workflow_job_template"
	JobPlaybook         = "playbook"
)

// ActionSpec is what the project knows about one action.
type ActionSpec struct {
	Args     []string // allowed arguments
	Required []string
	// Job is the kind of job the dispatcher runs in a lane ("" for none).
	Job string
	// Builtin: the engine applies it to its own state (apply; or nothing,
	// for none), the dispatcher only records it.
	Builtin bool
	// Dispatcher: the dispatcher carries it out itself (logging, shutdown).
	Dispatcher bool
	// apply is the engine's part of a builtin, set by its file's init
	// (see registerApply).
	apply applyFunc
}

type applyFunc func(s *Session, c actionCall) ([]Fired, error)

// registerApply gives a builtin its engine behaviour (from init: the table
// cannot name functions that fire rules without an initialisation cycle).
func registerApply(name string, f applyFunc) {
	a := actions[name]
	a.apply = f
	actions[name] = a
}

// actionCall is one fired action as its apply function sees it.
type actionCall struct {
	rule   *Rule
	target *rsState // the ruleset named by the ruleset argument, else the rule's
	args   map[string]any
}

var templateArgs = []string{"name", "organization", "job_args", "post_events", "set_facts", "ruleset", "var_root", "retry", "retries", "delay", "include_events", "lock", "labels", "add_event_uuid_label"}

// actions is the registry. run_module is accepted at load (ansible-rulebook
// knows it) but has no executor: the dispatcher fails it as unsupported.
var actions = map[string]ActionSpec{
	"run_job_template":      {Args: templateArgs, Required: []string{"name", "organization"}, Job: JobTemplate},
	"run_workflow_template": {Args: templateArgs, Required: []string{"name", "organization"}, Job: JobWorkflowTemplate},
	"run_playbook":          {Args: []string{"name", "copy_files", "post_events", "set_facts", "ruleset", "verbosity", "var_root", "json_mode", "retry", "retries", "delay", "extra_vars", "lock"}, Required: []string{"name"}, Job: JobPlaybook},
	"run_module":            {Args: []string{"name", "module_args", "post_events", "set_facts", "ruleset", "verbosity", "var_root", "json_mode", "retry", "retries", "delay", "extra_vars", "lock"}, Required: []string{"name"}},
	"post_event":            {Args: []string{"event", "ruleset"}, Required: []string{"event"}, Builtin: true},
	"set_fact":              {Args: []string{"fact", "ruleset"}, Required: []string{"fact"}, Builtin: true},
	"retract_fact":          {Args: []string{"fact", "ruleset", "partial"}, Required: []string{"fact"}, Builtin: true},
	"none":                  {Builtin: true},
	"print_event":           {Args: []string{"var_root", "pretty"}, Dispatcher: true},
	"debug":                 {Args: []string{"msg", "var"}, Dispatcher: true},
	"shutdown":              {Args: []string{"delay", "message", "kind"}, Dispatcher: true},
}

// LookupAction returns the registry entry of an action.
func LookupAction(name string) (ActionSpec, bool) {
	a, ok := actions[name]
	return a, ok
}

// ActionNames lists the known actions, sorted.
func ActionNames() []string { return slices.Sorted(maps.Keys(actions)) }
