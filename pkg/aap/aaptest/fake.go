// Package aaptest is a fake AAP/AWX Controller for tests, written to the
// contract in the project's research notes (aap.md §9): both API prefixes with
// relative links rendered in the request's prefix, Bearer and Basic auth with
// the Controller's 401 text, paginated lists with exact filters, job and
// workflow launches with ignored_fields, survey validation and the workflow
// 400s, the job lifecycle pending → waiting → running → final, labels, and
// injected faults (429/502/503/504, and a 502 after the job was created).
package aaptest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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

// Job is a launched job as the fake keeps it.
type Job struct {
	ID        int64
	Template  *Template
	Status    string
	ExtraVars map[string]any
	Limit     string
	Labels    []string
	Created   time.Time
	Started   *time.Time
	Finished  *time.Time
	Polls     int
	failed    bool
	released  bool
}

// Fault is an injected failure.
type Fault struct {
	Method string
	// PathContains selects requests (after the API prefix).
	PathContains string
	Status       int
	// AfterCreate applies to launches: the job is created, then Status is answered.
	AfterCreate bool
	// Times is how many requests it hits (default 1).
	Times int
}

// Server is the fake Controller.
type Server struct {
	*httptest.Server
	Token    string
	Username string
	Password string
	// ReadOnlyToken authenticates but may not launch (403).
	ReadOnlyToken string
	// PageSize is the default page size (25 as in AWX).
	PageSize int

	mu        sync.Mutex
	templates []*Template
	orgs      map[string]int64
	labels    map[string]int64 // name -> id
	jobs      []*Job
	faults    []*Fault
	nextID    int64
	requests  []string
}

// New starts a fake Controller with the given bearer token.
func New(token string) *Server {
	s := &Server{Token: token, PageSize: 25, orgs: map[string]int64{"Default": 1}, labels: map[string]int64{}, nextID: 100}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewTLS starts a fake Controller on HTTPS (its certificate is
// s.Certificate(); write it as PEM to test a CA bundle).
func NewTLS(token string) *Server {
	s := &Server{Token: token, PageSize: 25, orgs: map[string]int64{"Default": 1}, labels: map[string]int64{}, nextID: 100}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
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

// Inject queues a fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// Jobs returns copies of the launched jobs, oldest first.
func (s *Server) Jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Job, len(s.jobs))
	for i, j := range s.jobs {
		out[i] = *j
	}
	return out
}

// Requests returns "METHOD path" for every request served.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Release lets held jobs finish, and later jobs run unheld.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		j.released = true
	}
	for _, t := range s.templates {
		t.Hold = false
	}
}

var prefixRe = regexp.MustCompile(`^(/api/v2/|/api/controller/v2/)(.*)$`)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-API-Product-Name", "AWX")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"detail": msg})
}

func (s *Server) auth(r *http.Request) (ok, readOnly bool) {
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "Bearer "):
		tok := strings.TrimPrefix(h, "Bearer ")
		if s.ReadOnlyToken != "" && tok == s.ReadOnlyToken {
			return true, true
		}
		return s.Token != "" && tok == s.Token, false
	case strings.HasPrefix(h, "Basic "):
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err != nil || s.Username == "" {
			return false, false
		}
		return string(b) == s.Username+":"+s.Password, false
	}
	return false, false
}

func (s *Server) fault(method, rest string, launch bool) *Fault {
	for _, f := range s.faults {
		if f.Times > 0 && (f.Method == "" || f.Method == method) && strings.Contains(rest, f.PathContains) {
			if f.AfterCreate && !launch {
				continue
			}
			f.Times--
			return f
		}
	}
	return nil
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	m := prefixRe.FindStringSubmatch(r.URL.Path)
	if m == nil {
		detail(w, http.StatusNotFound, "Not found.")
		return
	}
	prefix, rest := m[1], m[2]
	if rest == "ping/" {
		writeJSON(w, 200, map[string]any{"ha": false, "version": "24.6.1", "active_node": "fake"})
		return
	}
	ok, readOnly := s.auth(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", "Bearer realm=api authorization_url=/api/o/authorize/")
		if strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
			detail(w, 401, "Invalid username/password. To establish a login session, visit /api/login/.")
		} else {
			detail(w, 401, "Authentication credentials were not provided. To establish a login session, visit /api/login/.")
		}
		return
	}
	isLaunch := strings.HasSuffix(rest, "/launch/") && r.Method == http.MethodPost
	if f := s.fault(r.Method, rest, isLaunch); f != nil && !f.AfterCreate {
		detail(w, f.Status, http.StatusText(f.Status))
		return
	} else if f != nil {
		// Create the job, then answer the fault as a proxy would.
		rec := httptest.NewRecorder()
		s.route(rec, r, prefix, rest, readOnly)
		detail(w, f.Status, http.StatusText(f.Status))
		return
	}
	s.route(w, r, prefix, rest, readOnly)
}

var (
	launchRe   = regexp.MustCompile(`^(job_templates|workflow_job_templates)/(\d+)/launch/$`)
	jobRe      = regexp.MustCompile(`^(jobs|workflow_jobs)/(\d+)/$`)
	cancelRe   = regexp.MustCompile(`^(jobs|workflow_jobs)/(\d+)/cancel/$`)
	tmplJobsRe = regexp.MustCompile(`^(job_templates|workflow_job_templates)/(\d+)/(jobs|workflow_jobs)/$`)
)

func (s *Server) route(w http.ResponseWriter, r *http.Request, prefix, rest string, readOnly bool) {
	q := r.URL.Query()
	switch {
	case rest == "config/" && r.Method == http.MethodGet:
		writeJSON(w, 200, map[string]any{"version": "24.6.1"})
	case rest == "unified_job_templates/" && r.Method == http.MethodGet:
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
		s.page(w, r, prefix+rest, items)
	case (rest == "job_templates/" || rest == "workflow_job_templates/") && r.Method == http.MethodGet:
		var items []map[string]any
		for _, t := range s.templates {
			if t.Workflow != (rest == "workflow_job_templates/") {
				continue
			}
			if (q.Get("name") == "" || q.Get("name") == t.Name) && (q.Get("organization__name") == "" || q.Get("organization__name") == t.Organization) {
				items = append(items, s.templateJSON(prefix, t))
			}
		}
		s.page(w, r, prefix+rest, items)
	case rest == "organizations/" && r.Method == http.MethodGet:
		var items []map[string]any
		for name, id := range s.orgs {
			if q.Get("name") == "" || q.Get("name") == name {
				items = append(items, map[string]any{"id": id, "name": name, "url": fmt.Sprintf("%sorganizations/%d/", prefix, id)})
			}
		}
		sort.Slice(items, func(i, j int) bool { return items[i]["id"].(int64) < items[j]["id"].(int64) })
		s.page(w, r, prefix+rest, items)
	case rest == "labels/" && r.Method == http.MethodGet:
		var items []map[string]any
		for name, id := range s.labels {
			if q.Get("name") == "" || q.Get("name") == name {
				items = append(items, map[string]any{"id": id, "name": name, "organization": 1})
			}
		}
		s.page(w, r, prefix+rest, items)
	case rest == "labels/" && r.Method == http.MethodPost:
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
	case launchRe.MatchString(rest):
		mm := launchRe.FindStringSubmatch(rest)
		t := s.template(mm[1] == "workflow_job_templates", mm[2])
		if t == nil {
			detail(w, 404, "Not found.")
			return
		}
		if r.Method != http.MethodPost {
			writeJSON(w, 200, map[string]any{"ask_variables_on_launch": t.AskVariablesOnLaunch, "ask_limit_on_launch": t.AskLimitOnLaunch,
				"survey_enabled": len(t.Survey) > 0, "can_start_without_user_input": len(t.Survey) == 0})
			return
		}
		if readOnly {
			detail(w, 403, "You do not have permission to perform this action.")
			return
		}
		s.launch(w, r, prefix, t)
	case jobRe.MatchString(rest) && r.Method == http.MethodGet:
		mm := jobRe.FindStringSubmatch(rest)
		j := s.job(mm[1] == "workflow_jobs", mm[2])
		if j == nil {
			detail(w, 404, "Not found.")
			return
		}
		s.advance(j)
		writeJSON(w, 200, s.jobJSON(prefix, j))
	case cancelRe.MatchString(rest) && r.Method == http.MethodPost:
		mm := cancelRe.FindStringSubmatch(rest)
		j := s.job(mm[1] == "workflow_jobs", mm[2])
		if j == nil {
			detail(w, 404, "Not found.")
			return
		}
		if final(j.Status) {
			detail(w, 405, `Method "POST" not allowed.`)
			return
		}
		s.finish(j, "canceled")
		w.WriteHeader(202)
	case (rest == "jobs/" || rest == "workflow_jobs/") && r.Method == http.MethodGet:
		var items []map[string]any
		ids := strings.Split(q.Get("id__in"), ",")
		for _, j := range s.jobs {
			if j.Template.Workflow != (rest == "workflow_jobs/") {
				continue
			}
			if q.Get("id__in") != "" && !slices.Contains(ids, strconv.FormatInt(j.ID, 10)) {
				continue
			}
			s.advance(j)
			items = append(items, s.jobJSON(prefix, j))
		}
		s.page(w, r, prefix+rest, items)
	case tmplJobsRe.MatchString(rest) && r.Method == http.MethodGet:
		mm := tmplJobsRe.FindStringSubmatch(rest)
		t := s.template(mm[1] == "workflow_job_templates", mm[2])
		if t == nil {
			detail(w, 404, "Not found.")
			return
		}
		var items []map[string]any
		for _, j := range s.jobs {
			if j.Template == t && (q.Get("labels__name") == "" || slices.Contains(j.Labels, q.Get("labels__name"))) {
				items = append(items, s.jobJSON(prefix, j))
			}
		}
		if q.Get("order_by") == "-id" {
			slices.Reverse(items)
		}
		s.page(w, r, prefix+rest, items)
	default:
		detail(w, 404, "Not found.")
	}
}

func (s *Server) template(workflow bool, id string) *Template {
	for _, t := range s.templates {
		if t.Workflow == workflow && strconv.FormatInt(t.ID, 10) == id {
			return t
		}
	}
	return nil
}

func (s *Server) job(workflow bool, id string) *Job {
	for _, j := range s.jobs {
		if j.Template.Workflow == workflow && strconv.FormatInt(j.ID, 10) == id {
			return j
		}
	}
	return nil
}

func (s *Server) page(w http.ResponseWriter, r *http.Request, path string, items []map[string]any) {
	q := r.URL.Query()
	size := s.PageSize
	if v, err := strconv.Atoi(q.Get("page_size")); err == nil && v > 0 {
		size = min(v, 200)
	}
	pg := 1
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		pg = v
	}
	start := (pg - 1) * size
	if start > len(items) || (start == len(items) && pg > 1) {
		detail(w, 404, "Invalid page.")
		return
	}
	end := min(start+size, len(items))
	link := func(p int) any {
		q2 := r.URL.Query()
		q2.Set("page", strconv.Itoa(p))
		return path + "?" + q2.Encode()
	}
	var next, prev any
	if end < len(items) {
		next = link(pg + 1)
	}
	if pg > 1 {
		prev = link(pg - 1)
	}
	if items == nil {
		items = []map[string]any{}
	}
	writeJSON(w, 200, map[string]any{"count": len(items), "next": next, "previous": prev, "results": items[start:end]})
}

func (s *Server) templateJSON(prefix string, t *Template) map[string]any {
	kind, coll, jobs := "job_template", "job_templates", "jobs"
	if t.Workflow {
		kind, coll, jobs = "workflow_job_template", "workflow_job_templates", "workflow_jobs"
	}
	u := fmt.Sprintf("%s%s/%d/", prefix, coll, t.ID)
	return map[string]any{
		"id": t.ID, "type": kind, "url": u, "name": t.Name, "organization": s.orgs[t.Organization],
		"related":        map[string]any{"launch": u + "launch/", jobs: u + jobs + "/", "survey_spec": u + "survey_spec/"},
		"summary_fields": map[string]any{"organization": map[string]any{"id": s.orgs[t.Organization], "name": t.Organization, "description": ""}},
		"survey_enabled": len(t.Survey) > 0, "extra_vars": "---",
		"ask_variables_on_launch": t.AskVariablesOnLaunch, "ask_limit_on_launch": t.AskLimitOnLaunch,
		"ask_labels_on_launch": t.AskLabelsOnLaunch, "ask_inventory_on_launch": false,
	}
}

func (s *Server) jobJSON(prefix string, j *Job) map[string]any {
	kind, coll := "job", "jobs"
	if j.Template.Workflow {
		kind, coll = "workflow_job", "workflow_jobs"
	}
	u := fmt.Sprintf("%s%s/%d/", prefix, coll, j.ID)
	ev, _ := json.Marshal(j.ExtraVars)
	out := map[string]any{
		"id": j.ID, "type": kind, "url": u, "name": j.Template.Name, "status": j.Status, "failed": j.failed,
		"started": j.Started, "finished": j.Finished, "elapsed": elapsed(j), "extra_vars": string(ev),
		"job_explanation": "", "launch_type": "manual", "created": j.Created,
		"related": map[string]any{"cancel": u + "cancel/"},
	}
	if !j.Template.Workflow {
		out["job_template"] = j.Template.ID
		out["limit"] = j.Limit
		out["artifacts"] = map[string]any{}
		if j.Status == "successful" && j.Template.Artifacts != nil {
			out["artifacts"] = j.Template.Artifacts
		}
		out["related"].(map[string]any)["stdout"] = u + "stdout/"
	} else {
		out["workflow_job_template"] = j.Template.ID
	}
	return out
}

func elapsed(j *Job) float64 {
	switch {
	case j.Started == nil:
		return 0
	case j.Finished != nil:
		return j.Finished.Sub(*j.Started).Seconds()
	default:
		return time.Since(*j.Started).Seconds()
	}
}

func final(s string) bool {
	return s == "successful" || s == "failed" || s == "error" || s == "canceled"
}

func (s *Server) finish(j *Job, status string) {
	now := time.Now().UTC()
	if j.Started == nil {
		j.Started = &now
	}
	j.Status, j.Finished = status, &now
	j.failed = status == "failed" || status == "error" || status == "canceled"
}

// advance moves a job along its lifecycle: one step per read, or by the
// template's wall-clock Duration.
func (s *Server) advance(j *Job) {
	if final(j.Status) {
		return
	}
	j.Polls++
	t := j.Template
	next := func() string {
		switch j.Status {
		case "pending":
			return "waiting"
		case "waiting":
			return "running"
		}
		return ""
	}
	if t.Duration > 0 {
		age := time.Since(j.Created)
		switch {
		case age >= t.Duration && !t.Hold || t.Hold && j.released:
		case age >= t.Duration/10:
			if j.Status != "running" {
				now := time.Now().UTC()
				j.Status, j.Started = "running", &now
			}
			return
		default:
			return
		}
	} else if n := next(); n != "" {
		j.Status = n
		if n == "running" {
			now := time.Now().UTC()
			j.Started = &now
		}
		return
	} else if t.Hold && !j.released {
		return
	}
	status := t.FinalStatus
	if t.FailFirst > 0 {
		t.FailFirst--
		status = "failed"
	}
	s.finish(j, status)
}

func (s *Server) launch(w http.ResponseWriter, r *http.Request, prefix string, t *Template) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil && err.Error() != "EOF" {
		detail(w, 400, "JSON parse error - "+err.Error())
		return
	}
	vars := map[string]any{}
	switch ev := body["extra_vars"].(type) {
	case map[string]any:
		vars = ev
	case string:
		if err := json.Unmarshal([]byte(ev), &vars); err != nil && strings.TrimSpace(ev) != "" {
			writeJSON(w, 400, map[string]any{"extra_vars": []string{"Cannot parse as JSON (error: " + err.Error() + ") or YAML."}})
			return
		}
	}
	// Survey validation (both template kinds).
	var surveyErrs []string
	surveyVars := map[string]bool{}
	for _, q := range t.Survey {
		surveyVars[q.Variable] = true
		v, ok := vars[q.Variable]
		if !ok {
			if q.Required {
				surveyErrs = append(surveyErrs, fmt.Sprintf("'%s' value missing", q.Variable))
			}
			continue
		}
		switch q.Type {
		case "text", "textarea", "password":
			if _, ok := v.(string); !ok {
				surveyErrs = append(surveyErrs, fmt.Sprintf("Value %v for '%s' expected to be a string.", v, q.Variable))
			}
		case "integer":
			if f, ok := v.(float64); !ok || f != float64(int64(f)) {
				surveyErrs = append(surveyErrs, fmt.Sprintf("Value %v for '%s' expected to be an integer.", v, q.Variable))
			}
		case "multiplechoice":
			if sv, _ := v.(string); !slices.Contains(q.Choices, sv) {
				surveyErrs = append(surveyErrs, fmt.Sprintf("Value %v for '%s' expected to be one of %s.", v, q.Variable, pyList(q.Choices)))
			}
		}
	}
	if len(surveyErrs) > 0 {
		writeJSON(w, 400, map[string]any{"variables_needed_to_start": surveyErrs})
		return
	}
	ignored := map[string]any{}
	accepted := map[string]any{}
	var rejectedVars []string
	for k, v := range vars {
		if surveyVars[k] || t.AskVariablesOnLaunch {
			accepted[k] = v
		} else {
			rejectedVars = append(rejectedVars, k)
		}
	}
	sort.Strings(rejectedVars)
	limit, _ := body["limit"].(string)
	_, hasLimit := body["limit"]
	var labels []string
	labelIDs, hasLabels := body["labels"].([]any)
	if t.Workflow {
		// Workflow templates reject what they do not prompt for.
		if hasLimit && !t.AskLimitOnLaunch {
			writeJSON(w, 400, map[string]any{"limit": []string{"Field is not configured to prompt on launch."}})
			return
		}
		if hasLabels && !t.AskLabelsOnLaunch {
			writeJSON(w, 400, map[string]any{"labels": []string{"Field is not configured to prompt on launch."}})
			return
		}
		if len(rejectedVars) > 0 {
			writeJSON(w, 400, map[string]any{"extra_vars": []string{fmt.Sprintf(
				"Variables %s are not allowed on launch. Check the Prompt on Launch setting on the Workflow Job Template to include Extra Variables.",
				strings.Join(rejectedVars, ", "))}})
			return
		}
	} else {
		if len(rejectedVars) > 0 {
			iv := map[string]any{}
			for _, k := range rejectedVars {
				iv[k] = vars[k]
			}
			ignored["extra_vars"] = iv
		}
		if hasLimit && !t.AskLimitOnLaunch {
			ignored["limit"] = limit
			limit = ""
		}
		if hasLabels && !t.AskLabelsOnLaunch {
			ignored["labels"] = labelIDs
			hasLabels = false
		}
	}
	if hasLabels {
		for _, raw := range labelIDs {
			id, _ := raw.(float64)
			for name, lid := range s.labels {
				if float64(lid) == id {
					labels = append(labels, name)
				}
			}
		}
	}
	s.nextID++
	j := &Job{ID: s.nextID, Template: t, Status: "pending", ExtraVars: accepted, Limit: limit, Labels: labels, Created: time.Now().UTC()}
	s.jobs = append(s.jobs, j)
	out := s.jobJSON(prefix, j)
	out["ignored_fields"] = ignored
	if t.Workflow {
		out["workflow_job"] = j.ID
	} else {
		out["job"] = j.ID
	}
	w.Header().Set("Location", out["url"].(string))
	writeJSON(w, 201, out)
}

func pyList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}
