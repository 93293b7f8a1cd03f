// Tests of the per-volume state: reports of finished jobs give each PV's last
// success, recovery point, failure and breach state, worst first, and the
// state survives a restart through its bbolt bucket.
package drstate

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// report is a periodic-sync report as roles/periodic_storage_sync writes it.
func report(t *testing.T, finished time.Time, volumes string) map[string]any {
	t.Helper()
	var vols []any
	if err := json.Unmarshal([]byte(volumes), &vols); err != nil {
		t.Fatal(err)
	}
	return map[string]any{ReportKey: map[string]any{"kind": "periodic-sync", "result": "ok",
		"finished": finished.Format("2006-01-02T15:04:05.000000") + "Z", "volumes": vols}}
}

func TestVolumesFromReports(t *testing.T) {
	now := t0.Add(3 * time.Hour)
	cases := []struct {
		name       string
		jobs       []Job
		pv         string
		state      string
		breach     bool
		age        float64
		reason     string
		consistent string
	}{
		{name: "synced with a recovery point", pv: "pv-a", state: StateOK, age: 3600, consistent: "application-consistent",
			jobs: []Job{{ID: 1, Status: "successful", Artifacts: report(t, now.Add(-59*time.Minute),
				`[{"name":"pv-a","status":"synced","consistency":"crash-consistent","duration":12.5,"bytes_transferred":1024,
				   "point":{"time":"2026-12-01T12:00:00Z","consistency":"application-consistent"}}]`)}}},
		{name: "copy older than the default objective", pv: "pv-b", state: StateBreach, breach: true, age: 3 * 3600,
			jobs: []Job{{ID: 1, Status: "successful", Artifacts: report(t, t0, `[{"name":"pv-b","status":"synced"}]`)}}},
		{name: "own annotation objective is longer", pv: "pv-c", state: StateOK, age: 3 * 3600,
			jobs: []Job{{ID: 1, Status: "successful", Hint: Hint{PV: "pv-c", RPO: 4 * time.Hour},
				Artifacts: report(t, t0, `[{"name":"pv-c","status":"synced"}]`)}}},
		{name: "failure after a success", pv: "pv-d", state: StateFailing, breach: false, age: 1800, reason: "rsync exited 23",
			jobs: []Job{
				{ID: 1, Status: "successful", Artifacts: report(t, now.Add(-30*time.Minute), `[{"name":"pv-d","status":"synced"}]`)},
				{ID: 2, Status: "failed", Artifacts: report(t, now.Add(-time.Minute), `[{"name":"pv-d","status":"failed","reason":"rsync exited 23"}]`)}}},
		{name: "failed job without report names its PV", pv: "pv-e", state: StateFailing, breach: true, age: -1, reason: "ansible-playbook exited with 2",
			jobs: []Job{{ID: 3, Status: "failed", Error: "ansible-playbook exited with 2", Finished: now, Hint: Hint{PV: "pv-e"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(Config{DefaultRPO: 2 * time.Hour, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range c.jobs {
				if err := s.Apply(j); err != nil {
					t.Fatal(err)
				}
			}
			vs := s.Views()
			if len(vs) != 1 || vs[0].Name != c.pv {
				t.Fatalf("views %+v, want one for %s", vs, c.pv)
			}
			v := vs[0]
			if v.State != c.state || v.Breach != c.breach || v.AgeSeconds != c.age || v.FailureReason != c.reason || v.Consistency != c.consistent {
				t.Errorf("got state %s breach %v age %v reason %q consistency %q, want %s %v %v %q %q",
					v.State, v.Breach, v.AgeSeconds, v.FailureReason, v.Consistency, c.state, c.breach, c.age, c.reason, c.consistent)
			}
		})
	}
}

func TestWorstFirstPersistedAndCounted(t *testing.T) {
	now := t0.Add(3 * time.Hour)
	db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := Config{Store: BoltStore{DB: db}, DefaultRPO: 2 * time.Hour, Now: func() time.Time { return now }}
	s, _ := New(cfg)
	_ = s.Apply(Job{ID: 1, Status: "failed", Artifacts: report(t, now.Add(-time.Hour), `[
		{"name":"ok-young","status":"synced","vms":["ns/vm1"]},
		{"name":"failing","status":"refused","reason":"outside export root"}]`)})
	_ = s.Apply(Job{ID: 2, Status: "successful", Artifacts: report(t, t0, `[{"name":"old","status":"synced"}]`)})

	s2, err := New(cfg) // a restart
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range s2.Views() {
		names = append(names, v.Name+"="+v.State)
	}
	if got := strings.Join(names, " "); got != "failing=failing old=breach ok-young=ok" {
		t.Errorf("after restart, worst first: %s", got)
	}
	reg := prometheus.NewRegistry()
	if err := s2.Register(reg); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP receiver_volumes_rpo_breach Protected volumes whose DR copy is older than their RPO objective.
# TYPE receiver_volumes_rpo_breach gauge
receiver_volumes_rpo_breach 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "receiver_volumes_rpo_breach"); err != nil {
		t.Error(err)
	}
}
