package receiver

// The newest report of each kind on the status page and at
// GET /reports/{kind}: the summary, the steps with their timings, the
// per-volume rows, the VMs and the readiness checks, from the report the job
// handed back (pkg/drstate keeps the newest of each kind).

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
)

//go:embed report.html
var reportHTML string

var reportTmpl = pageTemplate("report", reportHTML)

// reportOrder is the order of the kinds on the page; others follow by name.
var reportOrder = []string{"failover", "drill", "periodic-sync", drstate.KindReadiness, "event-sync"}

// kv is one named value of a report.
type kv struct{ Key, Value string }

// reportView is a report as the page shows it.
type reportView struct {
	Kind, Result, Error, Started string
	Job                          uint64
	JobStatus                    string
	Finished                     time.Time
	AgeSeconds                   float64
	Summary                      []kv
	Fields                       []kv
	Warnings                     []string
	Steps                        []map[string]string
	Volumes                      []map[string]string
	VMs                          []map[string]string
	Checks                       []drstate.Check
}

// SummaryLine is the report's summary as one line.
func (r reportView) SummaryLine() string {
	parts := make([]string, len(r.Summary))
	for i, s := range r.Summary {
		parts[i] = s.Key + " " + s.Value
	}
	return strings.Join(parts, ", ")
}

// Failed says whether the report's result is a failure.
func (r reportView) Failed() bool {
	return r.Result != "" && r.Result != "ok" && r.Result != "ready" && r.Result != "successful"
}

// reportFields are rendered in their own sections, not as plain fields.
var reportFields = []string{"kind", "result", "error", "started", "finished", "summary", "warnings", "steps", "volumes", "vms", "checks"}

func viewReport(r *drstate.Report, now time.Time) reportView {
	b := r.Body
	v := reportView{Kind: r.Kind, Job: r.Job, JobStatus: r.JobStatus, Finished: r.Finished, AgeSeconds: max(0, now.Sub(r.Finished).Seconds()),
		Result: scalar(b["result"]), Error: scalar(b["error"]), Started: scalar(b["started"])}
	if s, ok := b["summary"].(map[string]any); ok {
		v.Summary = sortedScalars(s, nil)
	}
	v.Fields = sortedScalars(b, reportFields)
	if l, ok := b["warnings"].([]any); ok {
		for _, w := range l {
			if s := scalar(w); s != "" {
				v.Warnings = append(v.Warnings, s)
			}
		}
	}
	v.Steps = rows(b["steps"], "name", "result", "seconds", "note")
	v.Volumes = rows(b["volumes"], "name", "namespace", "pvc", "status", "consistency", "point", "duration", "bytes_transferred", "reason")
	v.VMs = rows(b["vms"], "name", "namespace", "status", "message")
	if r.Kind == drstate.KindReadiness {
		v.Checks = drstate.ReadinessOf(r, now).Checks
	}
	return v
}

// rows turns a list of objects into rows of the named columns.
func rows(v any, cols ...string) []map[string]string {
	l, _ := v.([]any)
	out := make([]map[string]string, 0, len(l))
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		row := make(map[string]string, len(cols))
		for _, c := range cols {
			val := m[c]
			if c == "point" {
				if p, ok := val.(map[string]any); ok {
					val = p["time"]
				}
			}
			row[c] = scalar(val)
		}
		out = append(out, row)
	}
	return out
}

// sortedScalars lists m's scalar values by key, without the skipped keys.
func sortedScalars(m map[string]any, skip []string) []kv {
	var out []kv
	for k, val := range m {
		if slices.Contains(skip, k) {
			continue
		}
		if s := scalar(val); s != "" {
			out = append(out, kv{k, s})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// scalar prints a string, number or bool; "" for anything else.
func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return fmt.Sprint(x)
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%.2f", x)
	case int, int64:
		return fmt.Sprint(x)
	}
	return ""
}

// latestReports returns the newest report of each kind in page order.
func latestReports(st *drstate.State, now time.Time) []reportView {
	reps := st.Reports()
	kinds := make([]string, 0, len(reps))
	for k := range reps {
		kinds = append(kinds, k)
	}
	rank := func(k string) int {
		if i := slices.Index(reportOrder, k); i >= 0 {
			return i
		}
		return len(reportOrder)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if ri, rj := rank(kinds[i]), rank(kinds[j]); ri != rj {
			return ri < rj
		}
		return kinds[i] < kinds[j]
	})
	out := make([]reportView, 0, len(kinds))
	for _, k := range kinds {
		r := reps[k]
		// The list shows only the summary: no rows to build.
		out = append(out, reportView{Kind: k, Job: r.Job, JobStatus: r.JobStatus, Finished: r.Finished,
			AgeSeconds: max(0, now.Sub(r.Finished).Seconds()), Result: scalar(r.Body["result"]), Error: scalar(r.Body["error"]),
			Summary: summaryOf(r.Body)})
	}
	return out
}

func summaryOf(b map[string]any) []kv {
	s, _ := b["summary"].(map[string]any)
	return sortedScalars(s, nil)
}

// reportPage serves GET /reports/{kind}: the newest report of that kind.
func (a *apiHandler) reportPage(w http.ResponseWriter, r *http.Request) {
	if !a.auth.pageAllowed(r) {
		a.render(w, http.StatusOK, &pageData{Login: true})
		return
	}
	rep := a.state.LatestReport(chi.URLParam(r, "kind"))
	if rep == nil {
		http.Error(w, "no report of this kind", http.StatusNotFound)
		return
	}
	a.renderTemplate(w, reportTmpl, viewReport(rep, time.Now().UTC()))
}

// renderTemplate writes t with d as the page, with the page's headers.
func (a *apiHandler) renderTemplate(w http.ResponseWriter, t *template.Template, d any) {
	var buf strings.Builder
	if err := t.Execute(&buf, d); err != nil {
		a.log.Error("render "+t.Name(), zap.Error(err))
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	pageHeaders(w)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(buf.String()))
}
