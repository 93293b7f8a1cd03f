// The sync roles hand their report back to the receiver that launched them
// (the job result file its local runner names), which is where the status
// page's per-volume state comes from.
package ansible_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func TestEventSyncHandsBackItsReport(t *testing.T) {
	l := lab.Get(t)
	p := l.Primary.ExportRoot
	writeFile(t, filepath.Join(p, "handback", "disk.img"), strings.Repeat("h", 4096))
	result := filepath.Join(t.TempDir(), "job-1.result.json")
	pv := nfsPV("handback", l.Primary.NFSHost, filepath.Join(p, "handback"))
	l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pv, "ocpdr_job_result_file": result})
	b, err := os.ReadFile(result)
	if err != nil {
		t.Fatalf("the sync wrote no job result file: %v", err)
	}
	var got struct {
		Report struct {
			Kind, Result, Finished string
			Volumes                []struct {
				Name, Status string
				Point        struct{ Time string }
			}
		} `json:"ocpdr_report"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("job result file: %v\n%s", err, b)
	}
	r := got.Report
	if r.Kind != "event-sync" || r.Result != "ok" || r.Finished == "" || len(r.Volumes) != 1 {
		t.Fatalf("report %+v: want one event-sync volume, ok, with its finish time", r)
	}
	if v := r.Volumes[0]; v.Name != "handback" || v.Status != "synced" {
		t.Errorf("volume %+v: want handback synced", v)
	}
}
