// jobs.go serves the job-launch contract's jobs: reading (which advances the
// lifecycle), cancelling, listing, and the paginated list shape shared by
// every list of that contract.
package aaptest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

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

func (s *Server) getJob(workflow bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, prefix string) {
		j := s.job(workflow, r.PathValue("id"))
		if j == nil {
			detail(w, 404, "Not found.")
			return
		}
		s.advance(j)
		writeJSON(w, 200, s.jobJSON(prefix, j))
	}
}

func (s *Server) cancelJob(workflow bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		j := s.job(workflow, r.PathValue("id"))
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
	}
}

func (s *Server) listJobs(workflow bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, prefix string) {
		q := r.URL.Query()
		var items []map[string]any
		ids := strings.Split(q.Get("id__in"), ",")
		for _, j := range s.jobs {
			if j.Template.Workflow != workflow {
				continue
			}
			if q.Get("id__in") != "" && !slices.Contains(ids, strconv.FormatInt(j.ID, 10)) {
				continue
			}
			s.advance(j)
			items = append(items, s.jobJSON(prefix, j))
		}
		s.page(w, r, prefix+collections(workflow).jobs+"/", items)
	}
}

func (s *Server) templateJobs(workflow bool) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, prefix string) {
		t := s.template(workflow, r.PathValue("id"))
		if t == nil {
			detail(w, 404, "Not found.")
			return
		}
		q := r.URL.Query()
		var items []map[string]any
		for _, j := range s.jobs {
			if j.Template == t && (q.Get("labels__name") == "" || slices.Contains(j.Labels, q.Get("labels__name"))) {
				items = append(items, s.jobJSON(prefix, j))
			}
		}
		if q.Get("order_by") == "-id" {
			slices.Reverse(items)
		}
		k := collections(workflow)
		s.page(w, r, fmt.Sprintf("%s%s/%d/%s/", prefix, k.templates, t.ID, k.jobs), items)
	}
}

func (s *Server) job(workflow bool, id string) *Job {
	for _, j := range s.jobs {
		if j.Template.Workflow == workflow && strconv.FormatInt(j.ID, 10) == id {
			return j
		}
	}
	return nil
}

// page answers one page of items with next/previous links in path.
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

func (s *Server) jobJSON(prefix string, j *Job) map[string]any {
	k := collections(j.Template.Workflow)
	u := fmt.Sprintf("%s%s/%d/", prefix, k.jobs, j.ID)
	ev, _ := json.Marshal(j.ExtraVars)
	out := map[string]any{
		"id": j.ID, "type": k.job, "url": u, "name": j.Template.Name, "status": j.Status, "failed": j.failed,
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
