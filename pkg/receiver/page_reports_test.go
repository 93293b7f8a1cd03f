// The readiness panel and the latest reports on the status page, from real
// local jobs launched through the API: each readiness fact with ok or FAILED
// and its age, the newest report of each kind with its summary, and
// /reports/{kind} with the steps and their timings and the per-volume rows.
package receiver

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// launchAndWait launches a catalog template with the operator token and
// waits until its job finished.
func launchAndWait(t *testing.T, base, body string) {
	t.Helper()
	s, out := do(t, http.DefaultClient, "POST", base+"/api/v1/launch", testOperator, body)
	var res struct {
		Job uint64 `json:"job"`
	}
	if s != http.StatusAccepted || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("launch %s: %d %s", body, s, out)
	}
	waitJob(t, base, res.Job)
}

// fencedReadiness is a readiness check whose fence is up.
const fencedReadiness = `{"template":"DR - Readiness Check","extra_vars":{"readiness_checks":[
 {"name":"backup","ok":true,"detail":"velero-daily completed 2026-12-04T03:00:00Z (1.0 h old)"},
 {"name":"s3","ok":true,"detail":"bucket oadp-backups lists 12 object(s)"},
 {"name":"dr_api","ok":true,"detail":"the DR API answers"},
 {"name":"dr_nfs","ok":true,"detail":"dr-nfs answers"},
 {"name":"storage_classes","ok":true,"detail":"present: nfs-dynamic"},
 {"name":"fence","ok":false,"detail":"DR site active (failed over since 2026-12-04T02:00:00Z): the fence is up"}]}}`

// failoverReport is a failover report as playbooks/manual_dr/execute_failover.yml
// writes it, about the volumes feedVolumes reports (so the browser test's
// counts stay those of feedVolumes).
const failoverReport = `{"template":"Write report","extra_vars":{"write_report":{"kind":"failover","result":"ok",
 "started":"2026-12-04T02:00:00Z","backup":"velero-daily","recovery_point":"latest",
 "summary":{"pvs":2,"pvcs":2,"vms":1},
 "steps":[{"name":"parse backup velero-daily","result":"ok","seconds":3.25,"note":""},
          {"name":"final data sync","result":"warning","seconds":41.5,"note":"1 PV differs"}],
 "volumes":[{"name":"pv-fresh","namespace":"vms","pvc":"pv-fresh-claim","status":"synced","consistency":"application-consistent","duration":12.5,"bytes_transferred":1048576},
            {"name":"pv-bad","namespace":"vms","pvc":"pv-bad-claim","status":"failed","reason":"rsync: connection refused"}],
 "vms":[{"name":"vm-a","namespace":"vms","status":"Running"}]}}}`

// textOf drops the tags of an HTML fragment and squeezes the white space.
func textOf(html string) string {
	s := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(html, " ")
	return strings.Join(strings.Fields(s), " ")
}

func section(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("page has no #%s:\n%s", id, page)
	}
	j := strings.Index(page[i:], "</table>")
	if j < 0 {
		j = strings.Index(page[i:], "</ul>")
	}
	return textOf(page[i : i+j])
}

func TestStatusPageReadinessAndReports(t *testing.T) {
	cfg := volumeConfig(t)
	r := serve(t, cfg, syncEngine{})
	base := "http://" + r.addr

	_, page := do(t, http.DefaultClient, "GET", base+"/", testOperator, "")
	if got := section(t, page, "readiness-checks"); !strings.Contains(got, "not reported yet") {
		t.Errorf("readiness before any check: %s", got)
	}
	if s, _ := do(t, http.DefaultClient, "GET", base+"/api/v1/readiness", testOperator, ""); s != http.StatusNotFound {
		t.Errorf("readiness before any check: %d", s)
	}
	launchAndWait(t, base, fencedReadiness)
	launchAndWait(t, base, failoverReport)

	_, page = do(t, http.DefaultClient, "GET", base+"/", testOperator, "")
	checks := section(t, page, "readiness-checks")
	for _, want := range []string{"Newest completed backup ok velero-daily completed 2026-12-04T03:00:00Z (1.0 h old)",
		"S3 reachable ok", "DR API reachable ok", "DR NFS reachable ok", "Storage classes present at DR ok present: nfs-dynamic",
		"Fence state FAILED DR site active (failed over since 2026-12-04T02:00:00Z): the fence is up"} {
		if !strings.Contains(checks, want) {
			t.Errorf("readiness checks lack %q:\n%s", want, checks)
		}
	}
	if !regexp.MustCompile(`fence is up \d+s`).MatchString(checks) {
		t.Errorf("readiness checks without the age of the fact: %s", checks)
	}
	if panel := section(t, page, "readiness"); !strings.Contains(panel, "Failover ready: NOT READY") || !strings.Contains(panel, "failed") {
		t.Errorf("readiness panel: %s", panel)
	}
	reports := section(t, page, "report-table")
	if !strings.Contains(reports, "failover ok") || !strings.Contains(reports, "pvcs 2, pvs 2, vms 1") ||
		!strings.Contains(reports, "readiness not-ready") || strings.Index(reports, "failover") > strings.Index(reports, "readiness") {
		t.Errorf("latest reports, failover first: %s", reports)
	}
	if !strings.Contains(page, `href="/reports/failover"`) {
		t.Error("no link to the failover report")
	}

	s, rep := do(t, http.DefaultClient, "GET", base+"/reports/failover", testOperator, "")
	if s != 200 {
		t.Fatalf("report page: %d %s", s, rep)
	}
	steps, vols := section(t, rep, "report-steps"), section(t, rep, "report-volumes")
	if !strings.Contains(steps, "parse backup velero-daily ok 3.25") || !strings.Contains(steps, "final data sync warning 41.50 1 PV differs") {
		t.Errorf("report steps: %s", steps)
	}
	if !strings.Contains(vols, "pv-fresh vms/pv-fresh-claim synced application-consistent") || !strings.Contains(vols, "1048576") ||
		!strings.Contains(vols, "pv-bad vms/pv-bad-claim failed") || !strings.Contains(vols, "rsync: connection refused") {
		t.Errorf("report volumes: %s", vols)
	}
	if !strings.Contains(textOf(rep), "backup velero-daily") || !strings.Contains(section(t, rep, "report-vms"), "vms/vm-a Running") {
		t.Errorf("report details or VMs missing:\n%s", textOf(rep))
	}
	if s, _ := do(t, http.DefaultClient, "GET", base+"/reports/drill", testOperator, ""); s != http.StatusNotFound {
		t.Errorf("a kind never reported: %d", s)
	}
	if _, anon := do(t, http.DefaultClient, "GET", base+"/reports/failover", "", ""); strings.Contains(anon, "pv-fresh") || !strings.Contains(anon, `id="token"`) {
		t.Error("the report page without a token shows the report or no login form")
	}
	_, metrics := do(t, http.DefaultClient, "GET", base+"/metrics", "", "")
	for _, m := range []string{"ocpdr_receiver_failover_ready 0", `ocpdr_receiver_readiness_check{check="fence"} 0`, `ocpdr_receiver_readiness_check{check="s3"} 1`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}
