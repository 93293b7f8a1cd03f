package receiver

// The DR status page at /: one server-rendered page (html/template,
// embedded, no JavaScript, refreshes itself) with every protected volume
// worst first, the recent jobs with links to their logs and what the
// receiver knows about failover readiness. Behind the operator token: the
// Bearer header, or the login form that sets an HttpOnly, SameSite=Strict
// session cookie.

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

const sessionCookie = "ocpdr_session"

// pageJobs is how many recent jobs the page lists.
const pageJobs = 50

//go:embed page.html
var pageHTML string

//go:embed style.html
var styleHTML string

var pageTmpl = pageTemplate("page", pageHTML)

// pageTemplate parses an HTML page with the shared style and functions.
func pageTemplate(name, text string) *template.Template {
	t := template.Must(template.New(name).Funcs(template.FuncMap{"age": age, "when": when}).Parse(text))
	return template.Must(t.Parse(styleHTML))
}

// pageData is what the page shows.
type pageData struct {
	Login      bool
	LoginError string
	Now        time.Time
	VMs        int
	Volumes    []drstate.View
	Counts     map[string]int
	InBreach   int
	Jobs       []inbox.Job
	Periodic   *inbox.Job         // newest periodic sync
	Readiness  *inbox.Job         // newest failover readiness check job
	Ready      *drstate.Readiness // facts of the newest readiness report
	Reports    []reportView       // newest report of each kind
	Failover   *inbox.Job         // newest failover or failback
	Drill      *inbox.Job         // newest drill
	Refresh    int
}

// page serves GET /.
func (a *apiHandler) page(w http.ResponseWriter, r *http.Request) {
	if !a.auth.pageAllowed(r) {
		// 200, not 401: the form is the page until one logs in (the
		// API answers 401).
		a.render(w, http.StatusOK, &pageData{Login: true})
		return
	}
	d, err := a.pageData()
	if err != nil {
		a.log.Error("status page", zap.Error(err))
		http.Error(w, "cannot read the state", http.StatusInternalServerError)
		return
	}
	a.render(w, http.StatusOK, d)
}

func (a *apiHandler) pageData() (*pageData, error) {
	jobs, err := a.in.RecentJobs(pageJobs)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	d := &pageData{Now: now, Volumes: a.state.Views(), Jobs: jobs, Refresh: 30, Ready: a.state.Readiness(),
		Reports: latestReports(a.state, now)}
	d.Counts, d.InBreach = a.state.Counts()
	vms := map[string]bool{}
	for _, v := range d.Volumes {
		for _, vm := range v.VMs {
			vms[vm] = true
		}
	}
	d.VMs = len(vms)
	for i := range jobs {
		j := &jobs[i]
		n := strings.ToLower(j.Name)
		switch {
		case d.Periodic == nil && strings.Contains(n, "periodic"):
			d.Periodic = j
		case d.Readiness == nil && (strings.Contains(n, "readiness") || strings.Contains(n, "pre-failover") || strings.Contains(n, "preflight")):
			d.Readiness = j
		case d.Failover == nil && (strings.Contains(n, "failover") || strings.Contains(n, "failback")):
			d.Failover = j
		case d.Drill == nil && strings.Contains(n, "drill"):
			d.Drill = j
		}
	}
	return d, nil
}

func (a *apiHandler) render(w http.ResponseWriter, code int, d *pageData) {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		a.log.Error("render status page", zap.Error(err))
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	pageHeaders(w)
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// pageHeaders sets the headers of the HTML pages: no caching, a strict
// Content-Security-Policy (no script at all).
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
}

// login serves POST /api/v1/login: the form's token for a session cookie.
func (a *apiHandler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		a.render(w, http.StatusBadRequest, &pageData{Login: true, LoginError: "Bad form."})
		return
	}
	if code, msg := a.auth.token(r.PostForm.Get("token")); code != http.StatusOK {
		a.log.Warn("status page login refused", zap.Int("status", code), zap.String("remote", r.RemoteAddr))
		a.render(w, code, &pageData{Login: true, LoginError: msg})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: a.auth.session, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600})
	a.log.Info("status page login", zap.String("remote", r.RemoteAddr))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// jobLog serves GET /api/v1/jobs/{id}/log: a local job's log, when it is
// inside the job log directory.
func (a *apiHandler) jobLog(w http.ResponseWriter, r *http.Request) {
	j, ok := a.requestedJob(w, r)
	if !ok {
		return
	}
	if j.LogPath == "" {
		if j.URL != "" {
			http.Redirect(w, r, j.URL, http.StatusFound)
			return
		}
		http.Error(w, "this job has no log", http.StatusNotFound)
		return
	}
	rel, err := filepath.Rel(a.logDir, j.LogPath)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		http.Error(w, "log outside the job log directory", http.StatusForbidden)
		return
	}
	f, err := os.Open(j.LogPath)
	if err != nil {
		http.Error(w, "log not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// favicon answers browsers' /favicon.ico (the page's own icon is inline):
// no 405 from the webhook routes in their console.
func favicon(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

// age prints seconds as the largest sensible unit ("-" for none).
func age(sec float64) string {
	switch {
	case sec < 0:
		return "none"
	case sec < 120:
		return fmt.Sprintf("%.0fs", sec)
	case sec < 2*3600:
		return fmt.Sprintf("%.0fm", sec/60)
	case sec < 2*86400:
		return fmt.Sprintf("%.1fh", sec/3600)
	default:
		return fmt.Sprintf("%.1fd", sec/86400)
	}
}

// when prints a time (time.Time or *time.Time) in UTC, or "-".
func when(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
