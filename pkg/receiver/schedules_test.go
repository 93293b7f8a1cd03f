package receiver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// A receiver started with --schedules launches the scheduled template
// through the local runner (the real ansible-playbook) and lists the run in
// /api/v1/jobs as a job of the "schedule" ruleset.
func TestScheduleRunsTemplateLocally(t *testing.T) {
	cfg := baseConfig(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.txt")
	cfg.Schedules = filepath.Join(dir, "schedules.yml")
	doc := fmt.Sprintf(`
- name: record
  cron: "@every 1s"
  job_template: Record
  organization: Default
  extra_vars:
    out_file: %q
    greeting: hi
    ansible_eda: {event: {payload: {name: scheduled}}}
`, out)
	if err := os.WriteFile(cfg.Schedules, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	r := serve(t, cfg, recordEngine{out: filepath.Join(dir, "unused.txt")})
	base := "http://" + r.addr
	job := waitScheduledJob(t, base, "record")
	if job.Action != "run_job_template" || job.Name != "Record" || job.EventSeq != 0 || job.Started == nil || job.Finished == nil ||
		!strings.HasPrefix(job.LogPath, filepath.Join(cfg.StateDir, "jobs")) {
		t.Errorf("scheduled job %+v", job)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "scheduled hi\n" {
		t.Fatalf("playbook output %q %v", got, err)
	}
	if st, err := os.ReadFile(filepath.Join(cfg.StateDir, "schedules.json")); err != nil || !strings.Contains(string(st), `"record"`) {
		t.Errorf("schedule state %s %v", st, err)
	}
	s, body := do(t, http.DefaultClient, "GET", base+"/metrics", "", "")
	if s != 200 || !strings.Contains(body, `ocpdr_receiver_schedule_runs_total{result="successful",schedule="record"}`) {
		t.Errorf("metrics %d lack the schedule's successful runs", s)
	}
}

// waitScheduledJob polls /api/v1/jobs until a run of the schedule succeeded.
func waitScheduledJob(t *testing.T, base, name string) inbox.Job {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		s, body := do(t, http.DefaultClient, "GET", base+"/api/v1/jobs?limit=100", testToken, "")
		var v struct {
			Jobs []inbox.Job `json:"jobs"`
		}
		if s != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("jobs %d %s", s, body)
		}
		for _, j := range v.Jobs {
			if j.Ruleset == "schedule" && j.Rule == name && j.Status == "successful" {
				return j
			}
			if j.Ruleset == "schedule" && (j.Status == "failed" || j.Status == "error") {
				t.Fatalf("scheduled run %s: %s", j.Status, j.Error)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful run of schedule %q: %s", name, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A bad schedules file, or one nothing can run, is refused at start with
// the entry named.
func TestValidateSchedules(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Schedules = filepath.Join(t.TempDir(), "schedules.yml")
	if err := os.WriteFile(cfg.Schedules, []byte("- {name: sync, cron: '@hourly', job_template: T, extra_var: {}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--schedules") || !strings.Contains(err.Error(), `("sync")`) ||
		!strings.Contains(err.Error(), `unknown key "extra_var"`) {
		t.Errorf("bad schedules file: %v", err)
	}
	cfg.JobTemplates = ""
	if err := os.WriteFile(cfg.Schedules, []byte("- {name: sync, cron: '@hourly', job_template: T}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--schedules needs --controller-url or --job-templates") {
		t.Errorf("schedules without an executor: %v", err)
	}
	cfg.JobTemplates = "../runner/testdata/catalog.yml"
	if err := cfg.Validate(); err != nil {
		t.Errorf("good configuration: %v", err)
	}
}
