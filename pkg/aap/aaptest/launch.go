// launch.go serves the job-launch contract's catalogue: templates,
// organizations, labels and the launch endpoint with survey validation and
// the ignored_fields / workflow 400 rules.
package aaptest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// SurveyQuestion is one survey_spec item.
type SurveyQuestion struct {
	Variable string
	Type     string // text, integer, multiplechoice
	Required bool
	Choices  []string
}

// Template is a job template or workflow job template of the fake.
type Template struct {
	ID                   int64
	Workflow             bool
	Name                 string
	Organization         string
	AskVariablesOnLaunch bool
	AskLimitOnLaunch     bool
	AskLabelsOnLaunch    bool
	Survey               []SurveyQuestion
	// FinalStatus is the status jobs of this template end in (default successful).
	FinalStatus string
	// FailFirst makes the first N jobs end "failed" before FinalStatus applies.
	FailFirst int
	// Artifacts are set on finished jobs (job templates only, as in AWX).
	Artifacts map[string]any
	// Duration, when set, makes jobs run for that long (wall clock); otherwise
	// each status read advances a job one step.
	Duration time.Duration
	// Hold keeps jobs running until Release is called.
	Hold bool
}

// launchState is what the job-launch contract keeps.
type launchState struct {
	templates []*Template
	orgs      map[string]int64
	labels    map[string]int64 // name -> id
	jobs      []*Job
}

func newLaunch(token string) *Server {
	s := &Server{Token: token, PageSize: 25, version: "24.6.1", nextID: 100}
	s.orgs = map[string]int64{"Default": 1}
	s.labels = map[string]int64{}
	return s
}

// launchRoutes is the job-launch contract, under both API prefixes.
func (s *Server) launchRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	both := []string{controllerPrefix, gatewayPrefix}
	for pattern, h := range map[string]func(http.ResponseWriter, *http.Request, string){
		"GET config/{$}":                                    s.getConfig,
		"GET unified_job_templates/{$}":                     s.listUnified,
		"GET job_templates/{$}":                             s.listTemplates(false),
		"GET workflow_job_templates/{$}":                    s.listTemplates(true),
		"GET organizations/{$}":                             s.listOrgs,
		"GET labels/{$}":                                    s.listLabels,
		"POST labels/{$}":                                   s.createLabel,
		"GET job_templates/{id}/launch/{$}":                 s.launchInfo(false),
		"GET workflow_job_templates/{id}/launch/{$}":        s.launchInfo(true),
		"POST job_templates/{id}/launch/{$}":                s.postLaunch(false),
		"POST workflow_job_templates/{id}/launch/{$}":       s.postLaunch(true),
		"GET jobs/{id}/{$}":                                 s.getJob(false),
		"GET workflow_jobs/{id}/{$}":                        s.getJob(true),
		"POST jobs/{id}/cancel/{$}":                         s.cancelJob(false),
		"POST workflow_jobs/{id}/cancel/{$}":                s.cancelJob(true),
		"GET jobs/{$}":                                      s.listJobs(false),
		"GET workflow_jobs/{$}":                             s.listJobs(true),
		"GET job_templates/{id}/jobs/{$}":                   s.templateJobs(false),
		"GET workflow_job_templates/{id}/workflow_jobs/{$}": s.templateJobs(true),
	} {
		route(mux, pattern, h, both...)
	}
	return mux
}

// AddTemplate registers a template and returns it (ID assigned).
func (s *Server) AddTemplate(t Template) *Template {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	t.ID = s.nextID
	if t.Organization == "" {
		t.Organization = "Default"
	}
	if _, ok := s.orgs[t.Organization]; !ok {
		s.orgs[t.Organization] = int64(len(s.orgs) + 1)
	}
	if t.FinalStatus == "" {
		t.FinalStatus = "successful"
	}
	tp := &t
	s.templates = append(s.templates, tp)
	return tp
}

func (s *Server) getConfig(w http.ResponseWriter, _ *http.Request, _ string) {
	writeJSON(w, 200, map[string]any{"version": "24.6.1"})
}

func (s *Server) listUnified(w http.ResponseWriter, r *http.Request, prefix string) {
	q := r.URL.Query()
	var items []map[string]any
	// A project with the same name shows that lists mix types.
	if q.Get("name") != "" {
		items = append(items, map[string]any{"id": 1, "type": "project", "name": q.Get("name"), "url": prefix + "projects/1/",
			"summary_fields": map[string]any{"organization": map[string]any{"id": 1, "name": "Default"}}})
	}
	for _, t := range s.templates {
		if q.Get("name") == "" || q.Get("name") == t.Name {
			items = append(items, s.templateJSON(prefix, t))
		}
	}
	s.page(w, r, prefix+"unified_job_templates/", items)
}

func (s *Server) listTemplates(workflow bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, prefix string) {
		q := r.URL.Query()
		var items []map[string]any
		for _, t := range s.templates {
			if t.Workflow != workflow {
				continue
			}
			if (q.Get("name") == "" || q.Get("name") == t.Name) && (q.Get("organization__name") == "" || q.Get("organization__name") == t.Organization) {
				items = append(items, s.templateJSON(prefix, t))
			}
		}
		s.page(w, r, prefix+collections(workflow).templates+"/", items)
	}
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request, prefix string) {
	q := r.URL.Query()
	var items []map[string]any
	for name, id := range s.orgs {
		if q.Get("name") == "" || q.Get("name") == name {
			items = append(items, map[string]any{"id": id, "name": name, "url": fmt.Sprintf("%sorganizations/%d/", prefix, id)})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i]["id"].(int64) < items[j]["id"].(int64) })
	s.page(w, r, prefix+"organizations/", items)
}

func (s *Server) listLabels(w http.ResponseWriter, r *http.Request, prefix string) {
	q := r.URL.Query()
	var items []map[string]any
	for name, id := range s.labels {
		if q.Get("name") == "" || q.Get("name") == name {
			items = append(items, map[string]any{"id": id, "name": name, "organization": 1})
		}
	}
	s.page(w, r, prefix+"labels/", items)
}

func (s *Server) createLabel(w http.ResponseWriter, r *http.Request, _ string) {
	var b struct {
		Name         string `json:"name"`
		Organization int64  `json:"organization"`
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.Name == "" || b.Organization == 0 {
		writeJSON(w, 400, map[string]any{"name": []string{"This field is required."}})
		return
	}
	if _, ok := s.labels[b.Name]; ok {
		writeJSON(w, 400, map[string]any{"__all__": []string{"Label with this Name and Organization already exists."}})
		return
	}
	s.nextID++
	s.labels[b.Name] = s.nextID
	writeJSON(w, 201, map[string]any{"id": s.nextID, "name": b.Name, "organization": b.Organization})
}

func (s *Server) launchInfo(workflow bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		t := s.template(workflow, r.PathValue("id"))
		if t == nil {
			detail(w, 404, "Not found.")
			return
		}
		writeJSON(w, 200, map[string]any{"ask_variables_on_launch": t.AskVariablesOnLaunch, "ask_limit_on_launch": t.AskLimitOnLaunch,
			"survey_enabled": len(t.Survey) > 0, "can_start_without_user_input": len(t.Survey) == 0})
	}
}

func (s *Server) postLaunch(workflow bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, prefix string) {
		t := s.template(workflow, r.PathValue("id"))
		if t == nil {
			detail(w, 404, "Not found.")
			return
		}
		if _, readOnly := s.auth(r); readOnly {
			detail(w, 403, "You do not have permission to perform this action.")
			return
		}
		s.launch(w, r, prefix, t)
	}
}

func (s *Server) template(workflow bool, id string) *Template {
	for _, t := range s.templates {
		if t.Workflow == workflow && fmt.Sprint(t.ID) == id {
			return t
		}
	}
	return nil
}

// kinds names a template kind's collections and types.
type kinds struct{ template, templates, job, jobs string }

func collections(workflow bool) kinds {
	if workflow {
		return kinds{"workflow_job_template", "workflow_job_templates", "workflow_job", "workflow_jobs"}
	}
	return kinds{"job_template", "job_templates", "job", "jobs"}
}

func (s *Server) templateJSON(prefix string, t *Template) map[string]any {
	k := collections(t.Workflow)
	u := fmt.Sprintf("%s%s/%d/", prefix, k.templates, t.ID)
	return map[string]any{
		"id": t.ID, "type": k.template, "url": u, "name": t.Name, "organization": s.orgs[t.Organization],
		"related":        map[string]any{"launch": u + "launch/", k.jobs: u + k.jobs + "/", "survey_spec": u + "survey_spec/"},
		"summary_fields": map[string]any{"organization": map[string]any{"id": s.orgs[t.Organization], "name": t.Organization, "description": ""}},
		"survey_enabled": len(t.Survey) > 0, "extra_vars": "---",
		"ask_variables_on_launch": t.AskVariablesOnLaunch, "ask_limit_on_launch": t.AskLimitOnLaunch,
		"ask_labels_on_launch": t.AskLabelsOnLaunch, "ask_inventory_on_launch": false,
	}
}

func pyList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// launchBody is a launch request's prompts as the Controller reads them.
type launchBody struct {
	vars      map[string]any
	limit     string
	hasLimit  bool
	labelIDs  []any
	hasLabels bool
}

func decodeLaunch(w http.ResponseWriter, r *http.Request) (launchBody, bool) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil && err.Error() != "EOF" {
		detail(w, 400, "JSON parse error - "+err.Error())
		return launchBody{}, false
	}
	b := launchBody{vars: map[string]any{}}
	switch ev := body["extra_vars"].(type) {
	case map[string]any:
		b.vars = ev
	case string:
		if err := json.Unmarshal([]byte(ev), &b.vars); err != nil && strings.TrimSpace(ev) != "" {
			writeJSON(w, 400, map[string]any{"extra_vars": []string{"Cannot parse as JSON (error: " + err.Error() + ") or YAML."}})
			return launchBody{}, false
		}
	}
	b.limit, _ = body["limit"].(string)
	_, b.hasLimit = body["limit"]
	b.labelIDs, b.hasLabels = body["labels"].([]any)
	return b, true
}

// surveyErrors checks answers against the template's survey (both kinds).
func surveyErrors(t *Template, vars map[string]any) []string {
	var errs []string
	for _, q := range t.Survey {
		v, ok := vars[q.Variable]
		if !ok {
			if q.Required {
				errs = append(errs, fmt.Sprintf("'%s' value missing", q.Variable))
			}
			continue
		}
		switch q.Type {
		case "text", "textarea", "password":
			if _, ok := v.(string); !ok {
				errs = append(errs, fmt.Sprintf("Value %v for '%s' expected to be a string.", v, q.Variable))
			}
		case "integer":
			if f, ok := v.(float64); !ok || f != float64(int64(f)) {
				errs = append(errs, fmt.Sprintf("Value %v for '%s' expected to be an integer.", v, q.Variable))
			}
		case "multiplechoice":
			if sv, _ := v.(string); !slices.Contains(q.Choices, sv) {
				errs = append(errs, fmt.Sprintf("Value %v for '%s' expected to be one of %s.", v, q.Variable, pyList(q.Choices)))
			}
		}
	}
	return errs
}

// splitVars keeps the variables the template accepts; the rest, sorted, are rejected.
func splitVars(t *Template, vars map[string]any) (accepted map[string]any, rejected []string) {
	surveyVars := map[string]bool{}
	for _, q := range t.Survey {
		surveyVars[q.Variable] = true
	}
	accepted = map[string]any{}
	for k, v := range vars {
		if surveyVars[k] || t.AskVariablesOnLaunch {
			accepted[k] = v
		} else {
			rejected = append(rejected, k)
		}
	}
	sort.Strings(rejected)
	return accepted, rejected
}

// workflowRefusal is the 400 a workflow template answers for what it does
// not prompt for (nil when it accepts the launch).
func workflowRefusal(t *Template, b launchBody, rejected []string) map[string]any {
	switch {
	case b.hasLimit && !t.AskLimitOnLaunch:
		return map[string]any{"limit": []string{"Field is not configured to prompt on launch."}}
	case b.hasLabels && !t.AskLabelsOnLaunch:
		return map[string]any{"labels": []string{"Field is not configured to prompt on launch."}}
	case len(rejected) > 0:
		return map[string]any{"extra_vars": []string{fmt.Sprintf(
			"Variables %s are not allowed on launch. Check the Prompt on Launch setting on the Workflow Job Template to include Extra Variables.",
			strings.Join(rejected, ", "))}}
	}
	return nil
}

// ignoreUnprompted drops, for a job template, what it does not prompt for
// and reports it as ignored_fields.
func ignoreUnprompted(t *Template, b *launchBody, rejected []string) map[string]any {
	ignored := map[string]any{}
	if len(rejected) > 0 {
		iv := map[string]any{}
		for _, k := range rejected {
			iv[k] = b.vars[k]
		}
		ignored["extra_vars"] = iv
	}
	if b.hasLimit && !t.AskLimitOnLaunch {
		ignored["limit"] = b.limit
		b.limit = ""
	}
	if b.hasLabels && !t.AskLabelsOnLaunch {
		ignored["labels"] = b.labelIDs
		b.hasLabels = false
	}
	return ignored
}

func (s *Server) labelNames(ids []any) []string {
	var labels []string
	for _, raw := range ids {
		id, _ := raw.(float64)
		for name, lid := range s.labels {
			if float64(lid) == id {
				labels = append(labels, name)
			}
		}
	}
	return labels
}

// launch validates a launch request and creates its job.
func (s *Server) launch(w http.ResponseWriter, r *http.Request, prefix string, t *Template) {
	b, ok := decodeLaunch(w, r)
	if !ok {
		return
	}
	if errs := surveyErrors(t, b.vars); len(errs) > 0 {
		writeJSON(w, 400, map[string]any{"variables_needed_to_start": errs})
		return
	}
	accepted, rejected := splitVars(t, b.vars)
	ignored := map[string]any{}
	if t.Workflow {
		if refusal := workflowRefusal(t, b, rejected); refusal != nil {
			writeJSON(w, 400, refusal)
			return
		}
	} else {
		ignored = ignoreUnprompted(t, &b, rejected)
	}
	var labels []string
	if b.hasLabels {
		labels = s.labelNames(b.labelIDs)
	}
	s.nextID++
	j := &Job{ID: s.nextID, Template: t, Status: "pending", ExtraVars: accepted, Limit: b.limit, Labels: labels, Created: time.Now().UTC()}
	s.jobs = append(s.jobs, j)
	out := s.jobJSON(prefix, j)
	out["ignored_fields"] = ignored
	out[collections(t.Workflow).job] = j.ID
	w.Header().Set("Location", out["url"].(string))
	writeJSON(w, 201, out)
}
