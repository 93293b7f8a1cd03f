// The run_* actions (run_job_template, run_workflow_template, run_playbook):
// their arguments resolved as ansible-rulebook does, for the dispatcher that
// runs the job.

package rulebook

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// JobAction is a run_* action's arguments, resolved.
type JobAction struct {
	Kind         string // JobTemplate, JobWorkflowTemplate or JobPlaybook
	Name         string // template name, or playbook path
	Organization string
	// ExtraVars is extra_vars (job_args.extra_vars for templates) plus
	// ansible_eda {ruleset, rule, event or events} unless include_events is
	// false.
	ExtraVars map[string]any
	// Limit is job_args.limit (a string or a list), else the matched
	// events' meta.hosts; "" when neither names hosts.
	Limit  string
	Labels []string
	// EventUUIDLabel is false when add_event_uuid_label is false.
	EventUUIDLabel bool
	Retries        int // retries, or 1 for retry: true
	Delay          time.Duration
	// PostEvents / SetFacts send the job's artifacts back to Ruleset (""
	// for the rule's own) as an event or a fact.
	PostEvents, SetFacts bool
	Ruleset              string
}

// JobAction resolves f's arguments; it fails for an action that runs no
// job and for a missing name or (templates) organization.
func (f Fired) JobAction() (JobAction, error) {
	spec, _ := LookupAction(f.Action)
	j := JobAction{Kind: spec.Job, Name: argString(f.Args["name"]), Organization: argString(f.Args["organization"]), EventUUIDLabel: true}
	switch {
	case j.Kind == "":
		return j, fmt.Errorf("%s runs no job", f.Action)
	case j.Name == "":
		return j, fmt.Errorf("%s: name is required", f.Action)
	case j.Kind != JobPlaybook && j.Organization == "":
		return j, fmt.Errorf("%s: organization is required", f.Action)
	}
	userVars, limit := f.Args["extra_vars"], any(nil)
	if j.Kind != JobPlaybook {
		jobArgs, _ := f.Args["job_args"].(map[string]any)
		userVars, limit = jobArgs["extra_vars"], jobArgs["limit"]
	}
	j.ExtraVars = f.extraVars(userVars)
	j.Limit = limitString(limit)
	if j.Limit == "" {
		j.Limit = f.eventHosts()
	}
	for _, l := range asList(f.Args["labels"]) {
		j.Labels = append(j.Labels, fmt.Sprint(l))
	}
	if b, ok := f.Args["add_event_uuid_label"].(bool); ok && !b {
		j.EventUUIDLabel = false
	}
	if r, ok := argInt(f.Args["retries"]); ok {
		j.Retries = r
	} else if b, _ := f.Args["retry"].(bool); b {
		j.Retries = 1
	}
	if dl, ok := argFloat(f.Args["delay"]); ok {
		j.Delay = time.Duration(dl * float64(time.Second))
	}
	j.PostEvents, _ = f.Args["post_events"].(bool)
	j.SetFacts, _ = f.Args["set_facts"].(bool)
	j.Ruleset = argString(f.Args["ruleset"])
	return j, nil
}

func (f Fired) extraVars(user any) map[string]any {
	userVars, _ := user.(map[string]any)
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
	return vars
}

func limitString(limit any) string {
	switch l := limit.(type) {
	case string:
		return l
	case []any:
		parts := make([]string, 0, len(l))
		for _, p := range l {
			parts = append(parts, fmt.Sprint(p))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

func (f Fired) eventHosts() string {
	var hosts []string
	for _, ev := range f.Events() {
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

func argString(v any) string {
	s, _ := v.(string)
	return s
}

// argInt reads a count argument: a number, or a string of digits.
func argInt(v any) (int, bool) {
	if s, ok := v.(string); ok {
		n, err := strconv.Atoi(s)
		return n, err == nil
	}
	f, ok := toFloat(v)
	return int(f), ok
}

// argFloat reads a seconds argument: a number, or a string holding one.
func argFloat(v any) (float64, bool) {
	if s, ok := v.(string); ok {
		n, err := strconv.ParseFloat(s, 64)
		return n, err == nil
	}
	return toFloat(v)
}
