// Failover readiness facts: the newest readiness report (as roles/dr_readiness
// hands it back) gives each check ok or failed with its age, the newest
// report of each kind is kept across a restart, and the metrics keep a fixed
// label set.
package drstate

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
)

func readinessReport(finished time.Time, checks ...map[string]any) map[string]any {
	l := make([]any, len(checks))
	for i, c := range checks {
		l[i] = c
	}
	return map[string]any{ReportKey: map[string]any{"kind": KindReadiness, "finished": finished.Format(time.RFC3339), "checks": l}}
}

func allChecks(okFence bool, at time.Time) []map[string]any {
	var out []map[string]any
	for _, n := range ReadinessChecks {
		out = append(out, map[string]any{"name": n, "ok": n != "fence" || okFence, "detail": n + " detail", "at": at.Format(time.RFC3339)})
	}
	return out
}

func TestReadinessFacts(t *testing.T) {
	now := t0.Add(time.Hour)
	cases := []struct {
		name    string
		jobs    []Job
		ready   bool
		summary string // name=ok|FAIL per check, in order
		age     float64
	}{
		{name: "every check ok", ready: true, age: 600,
			jobs:    []Job{{ID: 1, Status: "successful", Artifacts: readinessReport(now.Add(-10*time.Minute), allChecks(true, now.Add(-10*time.Minute))...)}},
			summary: "backup=ok s3=ok dr_api=ok dr_nfs=ok storage_classes=ok fence=ok"},
		{name: "the fence is up", age: 60,
			jobs:    []Job{{ID: 1, Status: "failed", Artifacts: readinessReport(now.Add(-time.Minute), allChecks(false, now.Add(-time.Minute))...)}},
			summary: "backup=ok s3=ok dr_api=ok dr_nfs=ok storage_classes=ok fence=FAIL"},
		{name: "a missing check is not ready", age: 0,
			jobs:    []Job{{ID: 1, Status: "successful", Artifacts: readinessReport(now, map[string]any{"name": "s3", "ok": true})}},
			summary: "backup=FAIL s3=ok dr_api=FAIL dr_nfs=FAIL storage_classes=FAIL fence=FAIL"},
		{name: "an older report does not replace a newer one", ready: true, age: 120,
			jobs: []Job{
				{ID: 2, Status: "successful", Artifacts: readinessReport(now.Add(-2*time.Minute), allChecks(true, now)...)},
				{ID: 1, Status: "failed", Artifacts: readinessReport(now.Add(-time.Hour), allChecks(false, now)...)}},
			summary: "backup=ok s3=ok dr_api=ok dr_nfs=ok storage_classes=ok fence=ok"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := New(Config{Now: func() time.Time { return now }})
			for _, j := range c.jobs {
				if err := s.Apply(j); err != nil {
					t.Fatal(err)
				}
			}
			rd := s.Readiness()
			if rd == nil {
				t.Fatal("no readiness")
			}
			var got []string
			for _, k := range rd.Checks {
				mark := "ok"
				if !k.OK {
					mark = "FAIL"
				}
				got = append(got, k.Name+"="+mark)
			}
			if strings.Join(got, " ") != c.summary || rd.Ready != c.ready || rd.AgeSeconds != c.age {
				t.Errorf("got %s ready %v age %v, want %s ready %v age %v", strings.Join(got, " "), rd.Ready, rd.AgeSeconds, c.summary, c.ready, c.age)
			}
		})
	}
	if s, _ := New(Config{}); s.Readiness() != nil {
		t.Error("readiness without any report")
	}
}

func TestNewestReportsPersistedWithMetrics(t *testing.T) {
	now := t0.Add(time.Hour)
	db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := Config{Store: BoltStore{DB: db}, Now: func() time.Time { return now }}
	s, _ := New(cfg)
	checks := allChecks(false, now.Add(-5*time.Minute))
	checks[0]["detail"] = "velero-daily-20261201 completed 2026-12-01T09:00:00Z"
	if err := s.Apply(Job{ID: 7, Status: "failed", Artifacts: readinessReport(now.Add(-5*time.Minute), checks...)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Job{ID: 8, Status: "successful", Artifacts: report(t, now, `[{"name":"pv-a","status":"synced"}]`)}); err != nil {
		t.Fatal(err)
	}
	// A report of a bad kind is not kept.
	_ = s.Apply(Job{ID: 9, Status: "successful", Artifacts: map[string]any{ReportKey: map[string]any{"kind": "../x"}}})

	s2, err := New(cfg) // a restart
	if err != nil {
		t.Fatal(err)
	}
	reps := s2.Reports()
	if len(reps) != 2 || reps["periodic-sync"].Job != 8 || reps[KindReadiness].Job != 7 || reps[KindReadiness].JobStatus != "failed" {
		t.Fatalf("reports after a restart: %+v", reps)
	}
	rd := s2.Readiness()
	if rd.Checks[0].Detail != "velero-daily-20261201 completed 2026-12-01T09:00:00Z" || rd.Checks[0].AgeSeconds != 300 || rd.Ready {
		t.Errorf("readiness after a restart: %+v", rd)
	}
	reg := prometheus.NewRegistry()
	if err := s2.Register(reg); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP receiver_failover_ready 1 when the newest failover readiness check passed every check, else 0 (also when none reported).
# TYPE receiver_failover_ready gauge
receiver_failover_ready 0
# HELP receiver_readiness_age_seconds Age of the newest failover readiness report.
# TYPE receiver_readiness_age_seconds gauge
receiver_readiness_age_seconds 300
# HELP receiver_readiness_check Checks of the newest failover readiness report: 1 ok, 0 failed or not reported.
# TYPE receiver_readiness_check gauge
receiver_readiness_check{check="backup"} 1
receiver_readiness_check{check="dr_api"} 1
receiver_readiness_check{check="dr_nfs"} 1
receiver_readiness_check{check="fence"} 0
receiver_readiness_check{check="s3"} 1
receiver_readiness_check{check="storage_classes"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "receiver_failover_ready", "receiver_readiness_check", "receiver_readiness_age_seconds"); err != nil {
		t.Error(err)
	}
}
