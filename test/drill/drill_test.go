// The drill end to end: VMs restored at DR in <ns>-drill from recovery point
// clones while replication goes on, an evidence report, a teardown that
// leaves nothing behind; and the refusal while the DR site is active.
package drill

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/ocpv-dr/ocpv-dr/test/sim"
	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

// drillReport is the part of the drill report the tests read.
type drillReport struct {
	Kind   string `json:"kind"`
	Result string `json:"result"`
	Error  string `json:"error"`
	VMs    []struct {
		Namespace      string   `json:"namespace"`
		Name           string   `json:"name"`
		Status         string   `json:"status"`
		RecoveryPoints []string `json:"recovery_points"`
		RPO            *float64 `json:"rpo_seconds"`
		RTO            *float64 `json:"rto_seconds"`
	} `json:"vms"`
}

func readReport(t *testing.T, dir string) drillReport {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "drill-*.json"))
	if len(m) == 0 {
		t.Fatal("no drill report")
	}
	b, err := os.ReadFile(m[len(m)-1])
	if err != nil {
		t.Fatal(err)
	}
	var r drillReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", m[len(m)-1], err)
	}
	return r
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A drill kept running (dr_drill_keep) shows its VM Running in <ns>-drill on
// the point's data with the secondary network removed; a sync during it
// brings the primary's new writes to the DR working copy and leaves the
// drill's disk alone; the drill run again without keep reports RPO/RTO and
// removes all it made, and the point it used is as it was.
func TestDrillKeepsReplicationRunning(t *testing.T) {
	e := startIn(t, "drill-ok")
	pv := e.vm(t, "dvm")
	rel := e.ns + "-dvm"
	e.sync(t, pv)
	pts := e.points(t, rel)
	if len(pts) == 0 {
		t.Fatal("no recovery point after the sync")
	}
	want := pts[len(pts)-1]
	wantImg := readFile(t, filepath.Join(want.path, "data", sim.DiskImage))
	d := e.drSite(t, "drill-nightly")
	reports := t.TempDir()
	vars := map[string]any{"dr_drill_namespaces": []string{e.ns}, "dr_drill_backup_name": "drill-nightly", "dr_drill_id": "t1",
		"dr_drill_report_dir": reports, "dr_drill_vm_timeout": 120, "dr_drill_keep": true}
	e.l.MustPlaybook(t, drillPlaybook, vars)

	drillDisk := filepath.Join(e.l.DR.ExportRoot, ".ocpdr-drills", "t1", rel, sim.DiskImage)
	if !bytes.Equal(readFile(t, drillDisk), wantImg) {
		t.Fatal("the drill's disk is not the recovery point's image")
	}
	assertDrillVM(t, d, e.ns+"-drill", "dvm")
	e.sync(t, pv)
	wc, err := guest.Check(filepath.Join(e.l.DR.ExportRoot, rel, sim.DiskImage))
	pc, _ := guest.Check(filepath.Join(want.path, "data", sim.DiskImage))
	if err != nil || wc.Commit <= pc.Commit {
		t.Fatalf("a sync during the drill did not bring the primary's writes: DR commit %d (%v), point commit %d", wc.Commit, err, pc.Commit)
	}
	if !bytes.Equal(readFile(t, drillDisk), wantImg) {
		t.Fatal("the sync during the drill changed the drill's disk")
	}

	vars["dr_drill_keep"] = false
	e.l.MustPlaybook(t, drillPlaybook, vars)
	assertReport(t, readReport(t, reports), e.ns+"-drill", want.Time)
	assertGone(t, e, d, "t1")
	if !bytes.Equal(readFile(t, filepath.Join(want.path, "data", sim.DiskImage)), wantImg) {
		t.Fatal("the recovery point the drill used changed")
	}
}

func assertDrillVM(t *testing.T, d dynamic.Interface, ns, name string) {
	t.Helper()
	vm, err := d.Resource(sim.GVRVM).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("drill VM %s/%s: %v", ns, name, err)
	}
	if s, _, _ := unstructured.NestedString(vm.Object, "status", "printableStatus"); s != "Running" {
		t.Errorf("drill VM is %q, want Running", s)
	}
	nets, _, _ := unstructured.NestedSlice(vm.Object, "spec", "template", "spec", "networks")
	ifs, _, _ := unstructured.NestedSlice(vm.Object, "spec", "template", "spec", "domain", "devices", "interfaces")
	if len(nets) != 1 || len(ifs) != 1 {
		t.Errorf("drill VM networks %v interfaces %v: want the pod network only", nets, ifs)
	}
}

func assertReport(t *testing.T, r drillReport, ns, point string) {
	t.Helper()
	if r.Kind != "drill" || r.Result != "ok" || len(r.VMs) != 1 {
		t.Fatalf("report kind %q result %q (%s), %d VMs", r.Kind, r.Result, r.Error, len(r.VMs))
	}
	v := r.VMs[0]
	if v.Namespace != ns || v.Status != "Running" || len(v.RecoveryPoints) != 1 || v.RecoveryPoints[0] != point {
		t.Errorf("report VM %+v: want %s Running from point %s", v, ns, point)
	}
	if v.RPO == nil || *v.RPO <= 0 || v.RTO == nil || *v.RTO <= 0 {
		t.Errorf("report VM RPO %v RTO %v: want both measured", v.RPO, v.RTO)
	}
	t.Logf("drill: RPO %.1fs RTO %.1fs", *v.RPO, *v.RTO)
}

func assertGone(t *testing.T, e *env, d dynamic.Interface, id string) {
	t.Helper()
	if left := drillPVs(t, d, id); len(left) > 0 {
		t.Errorf("drill PVs left: %v", left)
	}
	if _, err := d.Resource(sim.GVRNamespace).Get(t.Context(), e.ns+"-drill", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("drill namespace left (err=%v)", err)
	}
	if _, err := os.Lstat(filepath.Join(e.l.DR.ExportRoot, ".ocpdr-drills", id)); !os.IsNotExist(err) {
		t.Errorf("drill directory left (err=%v)", err)
	}
	if _, err := os.Stat(filepath.Join(e.l.DR.ExportRoot, e.ns+"-dvm", sim.DiskImage)); err != nil {
		t.Errorf("the DR working copy: %v", err)
	}
}

// With the failover's fence marker in the DR export root the drill fails
// before it creates anything at DR.
func TestDrillRefusedWhileDRActive(t *testing.T) {
	e := startIn(t, "drill-fenced")
	marker := filepath.Join(e.l.DR.ExportRoot, ".ocpdr-dr-active")
	if err := os.WriteFile(marker, []byte("test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(marker) })
	cfg, err := e.l.DR.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	d := dynamic.NewForConfigOrDie(cfg)
	out, err := e.l.Playbook(t.Context(), drillPlaybook, map[string]any{"dr_drill_namespaces": []string{e.ns}, "dr_drill_id": "t2",
		"dr_drill_report_dir": t.TempDir()})
	if err == nil {
		t.Fatalf("the drill ran while the DR site was active:\n%s", out)
	}
	if !bytes.Contains([]byte(out), []byte("no drill until after failback")) {
		t.Errorf("output does not say the DR site is active:\n%s", out)
	}
	if _, err := d.Resource(sim.GVRNamespace).Get(t.Context(), e.ns+"-drill", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a drill namespace was created (err=%v)", err)
	}
	if _, err := os.Lstat(filepath.Join(e.l.DR.ExportRoot, ".ocpdr-drills", "t2")); !os.IsNotExist(err) {
		t.Errorf("a drill directory was created (err=%v)", err)
	}
	if left := drillPVs(t, d, "t2"); len(left) > 0 {
		t.Errorf("drill PVs created: %v", left)
	}
}
