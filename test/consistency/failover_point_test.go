// The failover side of recovery points: a failover asked for a chosen time
// restores each PV from the newest point at or before it, and the VM's disk
// at DR is that point's data, not the newest copy.
package consistency

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/ocpv-dr/ocpv-dr/test/sim"
	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

const failoverPlaybook = "playbooks/manual_dr/execute_failover.yml"

// failoverReport is the part of the failover report this test reads.
type failoverReport struct {
	Result        string `json:"result"`
	Error         string `json:"error"`
	RecoveryPoint string `json:"recovery_point"`
	Volumes       []struct {
		Name             string `json:"name"`
		Status           string `json:"status"`
		PointTime        string `json:"point_time"`
		PointConsistency string `json:"point_consistency"`
	} `json:"volumes"`
	VMs []struct {
		Name          string `json:"name"`
		RecoveryPoint string `json:"recovery_point"`
		Consistency   string `json:"consistency"`
	} `json:"vms"`
}

func readFailoverReport(t *testing.T, dir string) failoverReport {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "failover-*.json"))
	if len(m) == 0 {
		t.Fatal("no failover report")
	}
	b, err := os.ReadFile(m[len(m)-1])
	if err != nil {
		t.Fatal(err)
	}
	var r failoverReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", m[len(m)-1], err)
	}
	return r
}

// drSite starts the simulated Velero and KubeVirt of the DR cluster for the
// test and lifts the failover's fence afterwards, so later tests of this
// package can sync again.
func (e *env) drSite(t *testing.T) dynamic.Interface {
	t.Helper()
	cfg, err := e.l.DR.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	d := dynamic.NewForConfigOrDie(cfg)
	s3, err := e.l.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	log := zaptest.NewLogger(t)
	go (&sim.Velero{DR: d, S3: s3, Bucket: e.l.S3Bucket, Log: log}).Run(ctx, 200*time.Millisecond)
	go (&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"dr": d}, Log: log}).Run(ctx, 200*time.Millisecond)
	t.Cleanup(func() {
		stop()
		_ = os.Remove(filepath.Join(e.l.DR.ExportRoot, ".ocpdr-dr-active"))
		_ = d.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("openshift-adp").Delete(context.Background(), "ocpdr-dr-active", metav1.DeleteOptions{})
	})
	if err := sim.WriteBackup(t.Context(), e.p, s3, e.l.S3Bucket, sim.BackupOptions{Name: "points-nightly", Namespaces: []string{e.ns}}); err != nil {
		t.Fatal(err)
	}
	return d
}

// Three application-consistent points of a writing guest; a failover asked
// for a time between the second and the third (the primary gone: no final
// sync) restores the second: the DR disk is byte for byte the second point's
// image, the guest's checker finds that point's commit in it, and the report
// gives the point's time and consistency for the PV and the VM.
func TestFailoverAtChosenTimeUsesThatPoint(t *testing.T) {
	// Its own namespace: the failover restores every PV of the backed-up
	// namespace, and other tests leave PVs without points in theirs.
	e := startIn(t, "points-pit")
	pv := e.vm(t, "pit", nil)
	rel := e.ns + "-pit"
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(1500 * time.Millisecond) // distinct point times, whole seconds apart
		}
		e.sync(t, pv)
	}
	pts := e.points(t, rel)
	if len(pts) != 3 {
		t.Fatalf("%d points at DR, want 3", len(pts))
	}
	want := pts[1]
	wantImg, err := os.ReadFile(filepath.Join(want.path, "data", sim.DiskImage))
	if err != nil {
		t.Fatal(err)
	}
	wantCheck, err := guest.Check(filepath.Join(want.path, "data", sim.DiskImage))
	if err != nil {
		t.Fatalf("the chosen point itself: %v", err)
	}
	newest, _ := guest.Check(filepath.Join(pts[2].path, "data", sim.DiskImage))
	if newest.Commit == wantCheck.Commit {
		t.Fatalf("points 2 and 3 hold the same commit %d: the test could not tell them apart", newest.Commit)
	}
	at := midpoint(t, want.Time, pts[2].Time)

	d := e.drSite(t)
	reports := t.TempDir()
	vars := map[string]any{"backup_name": "points-nightly", "dr_failover_namespaces": []string{e.ns}, "dr_failover_report_dir": reports,
		"dr_failover_vm_timeout": 120, "dr_failover_final_sync": false, "dr_recovery_point": at}
	if out, err := e.l.Playbook(t.Context(), failoverPlaybook, vars); err != nil {
		t.Fatalf("failover at %s: %v\n%s", at, err, lastLines(out, 120))
	}

	got, err := os.ReadFile(filepath.Join(e.l.DR.ExportRoot, rel, sim.DiskImage))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantImg) {
		c, _ := guest.Check(filepath.Join(e.l.DR.ExportRoot, rel, sim.DiskImage))
		t.Fatalf("the DR disk is not point %s's image (DR commit %d, chosen point commit %d, newest %d)", want.Time, c.Commit, wantCheck.Commit, newest.Commit)
	}
	if c, err := guest.Check(filepath.Join(e.l.DR.ExportRoot, rel, sim.DiskImage)); err != nil || c.Commit != wantCheck.Commit {
		t.Fatalf("DR disk checked %v (commit %d), want the chosen point's commit %d", err, c.Commit, wantCheck.Commit)
	}
	r := readFailoverReport(t, reports)
	assertReportNamesPoint(t, r, pv, want)
	vm, err := d.Resource(sim.GVRVM).Namespace(e.ns).Get(t.Context(), "pit", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the VM was not restored at DR: %v", err)
	}
	if s, _, _ := unstructured.NestedString(vm.Object, "status", "printableStatus"); s != "Running" {
		t.Errorf("VM at DR is %q, want Running", s)
	}
}

func assertReportNamesPoint(t *testing.T, r failoverReport, pv map[string]any, want manifest) {
	t.Helper()
	if r.Result != "succeeded" && r.Result != "succeeded with warnings" {
		t.Fatalf("failover result %q: %s", r.Result, r.Error)
	}
	name, _, _ := unstructured.NestedString(pv, "metadata", "name")
	found := false
	for _, v := range r.Volumes {
		if v.Name != name {
			continue
		}
		found = true
		if !sameInstant(v.PointTime, want.Time) || v.PointConsistency != "application-consistent" {
			t.Errorf("report for %s: point %q %q, want %s application-consistent", name, v.PointTime, v.PointConsistency, want.Time)
		}
	}
	if !found {
		t.Errorf("report has no volume %s: %+v", name, r.Volumes)
	}
	for _, v := range r.VMs {
		if v.Name == "pit" && (!sameInstant(v.RecoveryPoint, want.Time) || v.Consistency != "application-consistent") {
			t.Errorf("report for VM pit: recovery point %q %q, want %s application-consistent", v.RecoveryPoint, v.Consistency, want.Time)
		}
	}
}

// midpoint is the RFC 3339 time halfway between two point times.
func midpoint(t *testing.T, a, b string) string {
	t.Helper()
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	if err1 != nil || err2 != nil || !tb.After(ta) {
		t.Fatalf("point times %q, %q: %v %v", a, b, err1, err2)
	}
	return ta.Add(tb.Sub(ta) / 2).UTC().Format(time.RFC3339Nano)
}

func sameInstant(a, b string) bool {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	return err1 == nil && err2 == nil && ta.Equal(tb)
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
