// Server-side render time of the status page with 1,000 volumes and 1,000
// recorded jobs (target: < 100 ms a page).
package receiver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

func BenchmarkStatusPage1000Volumes1000Jobs(b *testing.B) {
	in, err := inbox.Open(inbox.Options{Dir: b.TempDir(), RetainAge: 24 * time.Hour, RetainCount: 100000, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	st, _ := drstate.New(drstate.Config{DefaultRPO: 2 * time.Hour})
	now := time.Now().UTC()
	for i := range 1000 {
		fin := now.Add(-time.Duration(i) * time.Minute)
		id, err := in.PutJob(context.Background(), inbox.Job{Name: "EDA - Sync NFS PV to DR", Status: "successful", Created: fin, Started: &fin, Finished: &fin,
			LogPath: fmt.Sprintf("/var/lib/x/jobs/job-%d.log", i)})
		if err != nil {
			b.Fatal(err)
		}
		status := "synced"
		if i%10 == 0 {
			status = "failed"
		}
		_ = st.Apply(drstate.Job{ID: id, Status: "successful", Finished: fin, Artifacts: map[string]any{drstate.ReportKey: map[string]any{
			"kind": "periodic-sync", "volumes": []any{map[string]any{"name": fmt.Sprintf("pv-%04d", i), "status": status, "reason": "rsync failed",
				"vms": []any{fmt.Sprintf("ns/vm-%d", i/2)}, "point": map[string]any{"time": fin.Format(time.RFC3339), "consistency": "crash-consistent"}}}}}})
	}
	addBenchReports(b, st, now)
	a := &apiHandler{in: in, state: st, auth: newOperatorAuth(testOperator, testToken, nil), log: zap.NewNop()}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+testOperator)
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		a.page(w, req)
		if w.Code != 200 || !strings.Contains(w.Body.String(), "pv-0999") {
			b.Fatalf("page %d", w.Code)
		}
	}
}

// addBenchReports adds a readiness report and a periodic-sync report of 1,000
// volumes (the newest reports the page lists).
func addBenchReports(b *testing.B, st *drstate.State, now time.Time) {
	b.Helper()
	checks := make([]any, 0, len(drstate.ReadinessChecks))
	for _, n := range drstate.ReadinessChecks {
		checks = append(checks, map[string]any{"name": n, "ok": n != "fence", "detail": n + " detail", "at": now.Format(time.RFC3339)})
	}
	vols := make([]any, 1000)
	for i := range vols {
		vols[i] = map[string]any{"name": fmt.Sprintf("pv-%04d", i), "status": "synced", "duration": 1.5, "bytes_transferred": 4096.0,
			"point": map[string]any{"time": now.Format(time.RFC3339), "consistency": "crash-consistent"}}
	}
	for i, rep := range []map[string]any{
		{"kind": drstate.KindReadiness, "result": "not-ready", "checks": checks},
		{"kind": "periodic-sync", "result": "ok", "summary": map[string]any{"synced": 1000.0}, "volumes": vols},
	} {
		if err := st.Apply(drstate.Job{ID: uint64(5000 + i), Status: "successful", Finished: now, Artifacts: map[string]any{drstate.ReportKey: rep}}); err != nil {
			b.Fatal(err)
		}
	}
}

// The newest periodic-sync report of 1,000 volumes at /reports/periodic-sync.
func BenchmarkReportPage1000Volumes(b *testing.B) {
	st, _ := drstate.New(drstate.Config{DefaultRPO: 2 * time.Hour})
	addBenchReports(b, st, time.Now().UTC())
	a := &apiHandler{state: st, auth: newOperatorAuth(testOperator, testToken, nil), log: zap.NewNop()}
	r := chi.NewRouter()
	r.Get("/reports/{kind}", a.reportPage)
	req := httptest.NewRequest(http.MethodGet, "/reports/periodic-sync", nil)
	req.Header.Set("Authorization", "Bearer "+testOperator)
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != 200 || !strings.Contains(w.Body.String(), "pv-0999") {
			b.Fatalf("report page %d", w.Code)
		}
	}
}
