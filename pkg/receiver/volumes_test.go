// Per-volume state from real local jobs: forwarder-like PV events run a
// playbook (testdata/project/playbooks/sync_report.yml) with the real
// ansible-playbook that writes its report to the job result file;
// /api/v1/volumes and the metrics show each PV's state, worst first, and the
// state survives a restart.
package receiver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/pkg/aap/aaptest"
	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
)

// syncEngine fires "Sync report" for every PV event with the event's
// sync_report_* values as extra vars.
type syncEngine struct{}

func (syncEngine) Process(ev map[string]any) ([]dispatch.Fired, error) {
	p, _ := ev["payload"].(map[string]any)
	vars, _ := p["vars"].(map[string]any)
	if vars == nil {
		return nil, nil
	}
	return []dispatch.Fired{{Ruleset: "rs", Rule: "sync", Action: "run_job_template",
		Args:           map[string]any{"name": "Sync report", "organization": "Default", "job_args": map[string]any{"extra_vars": vars}},
		MatchingEvents: map[string]any{"m": ev}}}, nil
}
func (syncEngine) PostEvent(string, map[string]any) ([]dispatch.Fired, error) { return nil, nil }
func (syncEngine) SetFact(string, map[string]any) ([]dispatch.Fired, error)   { return nil, nil }

const testOperator = "receiver-test-operator-token-0123456789abcdef"

func volumeConfig(t *testing.T) Config {
	cfg := baseConfig(t)
	cfg.JobTemplates = "testdata/catalog.yml"
	cfg.OperatorToken = testOperator
	cfg.DefaultRPO = 2 * time.Hour
	return cfg
}

// pvEvent is a forwarder PV event whose job reports one volume.
func pvEvent(id, pv, rpo string, fail bool, entry map[string]any) string {
	ann := map[string]any{}
	if rpo != "" {
		ann[drstate.RPOAnnotation] = rpo
	}
	entry["name"] = pv
	ev := map[string]any{"id": id, "kind": "PersistentVolume", "type": "MODIFIED",
		"resource": map[string]any{"kind": "PersistentVolume",
			"metadata": map[string]any{"name": pv, "annotations": ann},
			"spec":     map[string]any{"claimRef": map[string]any{"namespace": "vms", "name": pv + "-claim"}}},
		"vars": map[string]any{"sync_report_volumes": []any{entry}, "sync_report_fail": fail}}
	b, _ := json.Marshal(ev)
	return string(b)
}

// feedVolumes posts three PV events (fresh, old with a 30m objective, failed)
// and waits until their jobs finished.
func feedVolumes(t *testing.T, base string) {
	t.Helper()
	now := time.Now().UTC()
	events := []string{
		pvEvent("e1", "pv-fresh", "", false, map[string]any{"status": "synced", "duration": 4.5, "vms": []any{"vms/vm-a"},
			"point": map[string]any{"time": now.Add(-10 * time.Minute).Format(time.RFC3339), "consistency": "application-consistent"}}),
		pvEvent("e2", "pv-old", "30m", false, map[string]any{"status": "synced", "consistency": "crash-consistent", "vms": []any{"vms/vm-b", "vms/vm-a"},
			"point": map[string]any{"time": now.Add(-time.Hour).Format(time.RFC3339), "consistency": "crash-consistent"}}),
		pvEvent("e3", "pv-bad", "", true, map[string]any{"status": "failed", "reason": "rsync: connection refused"}),
	}
	for _, e := range events {
		if s, b := do(t, http.DefaultClient, "POST", base+"/endpoint", testToken, e); s != 200 {
			t.Fatal(s, b)
		}
	}
	waitVolumes(t, base, 3)
}

type volumesView struct {
	Volumes  []drstate.View `json:"volumes"`
	InBreach int            `json:"in_breach"`
}

func waitVolumes(t *testing.T, base string, n int) volumesView {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		s, body := do(t, http.DefaultClient, "GET", base+"/api/v1/volumes", testOperator, "")
		var v volumesView
		if s != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatal(s, body)
		}
		if len(v.Volumes) == n {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("volumes not reported: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestVolumesFromLocalJobs(t *testing.T) {
	cfg := volumeConfig(t)
	r := serve(t, cfg, syncEngine{})
	base := "http://" + r.addr
	feedVolumes(t, base)
	v := waitVolumes(t, base, 3)
	var got []string
	for _, vol := range v.Volumes {
		got = append(got, fmt.Sprintf("%s:%s:%v:%s:%s", vol.Name, vol.State, vol.Breach, vol.Consistency, vol.FailureReason))
	}
	want := "pv-bad:failing:true::rsync: connection refused pv-old:breach:true:crash-consistent: pv-fresh:ok:false:application-consistent:"
	if strings.Join(got, " ") != want {
		t.Errorf("volumes worst first:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if fresh := v.Volumes[2]; fresh.Namespace != "vms" || fresh.PVC != "pv-fresh-claim" || fresh.LastSuccess == nil || fresh.LastDurationSeconds != 4.5 {
		t.Errorf("fresh volume %+v", fresh)
	}
	if v.Volumes[1].ObjectiveSec != 1800 {
		t.Errorf("pv-old objective %v, want the annotation's 1800 s", v.Volumes[1].ObjectiveSec)
	}
	if s, _ := do(t, http.DefaultClient, "GET", base+"/api/v1/volumes", testToken, ""); s != 403 {
		t.Errorf("webhook token reads volumes: %d", s)
	}
	_, metrics := do(t, http.DefaultClient, "GET", base+"/metrics", "", "")
	for _, m := range []string{`ocpdr_receiver_volumes{state="failing"} 1`, `ocpdr_receiver_volumes{state="breach"} 1`, "ocpdr_receiver_volumes_rpo_breach 2"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	r.cancel()
	<-r.done
	r.done <- nil // for the cleanup
	r2 := serve(t, cfg, syncEngine{})
	if again := waitVolumes(t, "http://"+r2.addr, 3); again.Volumes[0].Name != "pv-bad" || again.InBreach != 2 {
		t.Errorf("after a restart: %+v", again)
	}
}

// On the Controller a job hands its report back with set_stats: the job's
// artifacts carry ocpdr_report, and the volume state takes it the same way.
func TestVolumesFromControllerArtifacts(t *testing.T) {
	fake := aaptest.New("controller-token")
	defer fake.Close()
	point := time.Now().UTC().Add(-5 * time.Minute).Format(time.RFC3339)
	fake.AddTemplate(aaptest.Template{Name: "Sync report", AskVariablesOnLaunch: true,
		Artifacts: map[string]any{drstate.ReportKey: map[string]any{"kind": "event-sync", "volumes": []any{
			map[string]any{"name": "pv-aap", "status": "synced", "point": map[string]any{"time": point, "consistency": "application-consistent"}}}}}})
	cfg := volumeConfig(t)
	cfg.JobTemplates = ""
	cfg.ControllerURL, cfg.ControllerToken, cfg.PollInterval = fake.URL, "controller-token", 10*time.Millisecond
	r := serve(t, cfg, syncEngine{})
	base := "http://" + r.addr
	if s, b := do(t, http.DefaultClient, "POST", base+"/endpoint", testToken, pvEvent("c1", "pv-aap", "", true, map[string]any{})); s != 200 {
		t.Fatal(s, b)
	}
	v := waitVolumes(t, base, 1)
	if got := v.Volumes[0]; got.Name != "pv-aap" || got.State != drstate.StateOK || got.Consistency != "application-consistent" ||
		got.LastReport != "event-sync" || got.Namespace != "vms" || got.AgeSeconds < 290 {
		t.Errorf("volume from Controller artifacts: %+v", got)
	}
}

// Objectives by configuration on real jobs: a VM's objective beats its
// namespace's, a PV's annotation beats both.
func TestObjectivesFromConfiguration(t *testing.T) {
	cfg := volumeConfig(t)
	cfg.RPONamespaces, cfg.RPOVMs = []string{"vms=20m"}, []string{"vms/vm-a=5m"}
	r := serve(t, cfg, syncEngine{})
	feedVolumes(t, "http://"+r.addr)
	v := waitVolumes(t, "http://"+r.addr, 3)
	var got []string
	for _, vol := range v.Volumes {
		got = append(got, fmt.Sprintf("%s:%s:%.0f:%s", vol.Name, vol.State, vol.ObjectiveSec, vol.ObjectiveFrom))
	}
	// pv-fresh (vm-a, 10 minutes old) is over vm-a's 5m; pv-old keeps its
	// annotation's 30m; pv-bad (no VM) takes its namespace's 20m.
	want := "pv-bad:failing:1200:namespace pv-old:breach:1800:annotation pv-fresh:breach:300:vm"
	if strings.Join(got, " ") != want {
		t.Errorf("volumes:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}
