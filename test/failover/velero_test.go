// velero_test.go runs the failover against backups written by a real Velero
// server (v1.18, test/lab StartVelero) instead of the simulator: a Backup at
// the primary, the backup synced to DR through the shared bucket, the
// playbook's Restore completed by Velero at DR. KubeVirt stays simulated
// (sim.KubeVirt moves restored VMs to Running). `go test -run Velero` selects
// these tests.
package failover_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
)

var gvrPod = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// seedVMs creates namespace ns at the primary with, per disk, an NFS PV, a
// bound PVC, a running VM using it and a disk image in the export root.
func seedVMs(ctx context.Context, t *testing.T, l *lab.Lab, p dynamic.Interface, ns string, disks []string) {
	t.Helper()
	mustCreate(ctx, t, p.Resource(sim.GVRNamespace), map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	for _, disk := range disks {
		dir := filepath.Join(l.Primary.ExportRoot, ns+"-"+disk)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "disk.img"), []byte(strings.Repeat(disk, 3000)), 0o644); err != nil {
			t.Fatal(err)
		}
		pv := "pv-" + ns + "-" + disk
		mustCreate(ctx, t, p.Resource(sim.GVRPV), map[string]any{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": map[string]any{"name": pv},
			"spec": map[string]any{"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic",
				"persistentVolumeReclaimPolicy": "Delete", "claimRef": map[string]any{"namespace": ns, "name": disk},
				"nfs": map[string]any{"server": l.Primary.NFSHost, "path": dir}}})
		mustCreate(ctx, t, p.Resource(sim.GVRPVC).Namespace(ns), map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
			"metadata": map[string]any{"name": disk, "namespace": ns},
			"spec": map[string]any{"accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic", "volumeName": pv,
				"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}}}})
		mustCreate(ctx, t, p.Resource(sim.GVRVM).Namespace(ns), map[string]any{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
			"metadata": map[string]any{"name": strings.TrimSuffix(disk, "-root"), "namespace": ns},
			"spec": map[string]any{"runStrategy": "Always", "template": map[string]any{"spec": map[string]any{
				"volumes": []any{map[string]any{"name": "root", "persistentVolumeClaim": map[string]any{"claimName": disk}}}}}}})
	}
}

func mustCreate(ctx context.Context, t *testing.T, rc dynamic.ResourceInterface, obj map[string]any) {
	t.Helper()
	if _, err := rc.Create(ctx, u(obj), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// veleroBackup creates a real Velero Backup of namespaces at the primary
// (no volume snapshots, no file-system backup: this project copies the
// volumes) and waits for Velero to finish it; it fails the test unless the
// Backup ends in phase want.
func veleroBackup(ctx context.Context, t *testing.T, p dynamic.Interface, name string, namespaces []string, want string) *unstructured.Unstructured {
	t.Helper()
	rc := p.Resource(lab.GVRVeleroBackup).Namespace(lab.VeleroNamespace)
	mustCreate(ctx, t, rc, map[string]any{"apiVersion": "velero.io/v1", "kind": "Backup",
		"metadata": map[string]any{"name": name, "namespace": lab.VeleroNamespace},
		"spec": map[string]any{"includedNamespaces": namespaces, "storageLocation": lab.VeleroBSL, "ttl": "720h0m0s",
			"snapshotVolumes": false, "defaultVolumesToFsBackup": false}})
	var b *unstructured.Unstructured
	deadline := time.Now().Add(3 * time.Minute)
	for phase := ""; ; time.Sleep(300 * time.Millisecond) {
		var err error
		if b, err = rc.Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		phase, _, _ = unstructured.NestedString(b.Object, "status", "phase")
		switch phase {
		case "Completed", "PartiallyFailed", "Failed", "FailedValidation":
			if phase != want {
				t.Fatalf("backup %s ended %s, want %s: %v", name, phase, want, b.Object["status"])
			}
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("backup %s still %q after 3 minutes", name, phase)
		}
	}
}

// waitBackupSynced waits until the Backup written by the primary's Velero
// shows up at DR (the DR server's backup sync from the shared bucket).
func waitBackupSynced(ctx context.Context, t *testing.T, d dynamic.Interface, name string) {
	t.Helper()
	rc := d.Resource(lab.GVRVeleroBackup).Namespace(lab.VeleroNamespace)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if _, err := rc.Get(ctx, name, metav1.GetOptions{}); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backup %s never synced to DR", name)
		}
	}
}

// TestFailoverWithRealVelero: Velero backs up a namespace with VMs, PVCs and
// PVs at the primary; the failover chooses it from the bucket, binds the PVs
// to the DR NFS host, and Velero at DR restores the VMs, which run.
func TestFailoverWithRealVelero(t *testing.T) {
	l := lab.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	prc, _ := l.Primary.RESTConfig()
	drc, _ := l.DR.RESTConfig()
	p, d := dynamic.NewForConfigOrDie(prc), dynamic.NewForConfigOrDie(drc)
	const ns = "vms-velero"
	disks := []string{"db-root", "web-root"}
	dcs := kubernetes.NewForConfigOrDie(drc)
	liftFence(ctx, l, dcs) // earlier tests of this binary failed over
	seedVMs(ctx, t, l, p, ns, disks)

	vp := lab.StartVelero(t, l, &l.Primary)
	name := "real-" + time.Now().UTC().Format("20060102150405")
	veleroBackup(ctx, t, p, name, []string{ns}, "Completed")
	vp.StopServer() // one server at a time on this host (see lab.StartVelero)
	lab.StartVelero(t, l, &l.DR)
	waitBackupSynced(ctx, t, d, name)
	go (&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"primary": p, "dr": d}, Log: zaptest.NewLogger(t)}).Run(ctx, 200*time.Millisecond)

	vars := map[string]any{"backup_name": name, "dr_failover_namespaces": []string{ns}, "dr_failover_report_dir": t.TempDir(),
		"dr_failover_vm_timeout": 120, "oadp_backup_parser_prefix": lab.VeleroPrefix}
	out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars)
	if err != nil {
		t.Fatalf("failover from a real Velero backup: %v\n%s", err, tail(out))
	}
	if !strings.Contains(out, "Backup "+name+": 2 PV(s), 2 PVC(s)") {
		t.Errorf("the parser did not find the backup's 2 PVs and 2 PVCs:\n%s", tail(out))
	}
	restore := assertRealRestore(ctx, t, d, name)
	assertRestoredVMs(ctx, t, d, ns, name, restore)
	assertDRVolumes(ctx, t, l, dcs, ns, disks)
}

// assertRealRestore checks that Velero at DR completed the playbook's
// Restore and returns its name.
func assertRealRestore(ctx context.Context, t *testing.T, d dynamic.Interface, backup string) string {
	t.Helper()
	list, err := d.Resource(lab.GVRVeleroRestore).Namespace(lab.VeleroNamespace).List(ctx, metav1.ListOptions{LabelSelector: "ocpv-dr.io/backup=" + backup})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("want one Restore of %s at DR, got %v (%v)", backup, list, err)
	}
	r := list.Items[0]
	phase, _, _ := unstructured.NestedString(r.Object, "status", "phase")
	restored, _, _ := unstructured.NestedInt64(r.Object, "status", "progress", "itemsRestored")
	if phase != "Completed" || restored < 3 { // namespace + 2 VMs at least
		t.Errorf("Restore %s: phase %q, %d items restored: %v", r.GetName(), phase, restored, r.Object["status"])
	}
	return r.GetName()
}

// assertRestoredVMs: each VM at DR came from Velero (its restore labels) and
// runs; each VM at the primary was halted.
func assertRestoredVMs(ctx context.Context, t *testing.T, d dynamic.Interface, ns, backup, restore string) {
	t.Helper()
	vms, err := d.Resource(sim.GVRVM).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(vms.Items) != 2 {
		t.Fatalf("want 2 VMs at DR, got %d (%v)", len(vms.Items), err)
	}
	for _, vm := range vms.Items {
		if lb := vm.GetLabels(); lb["velero.io/backup-name"] != backup || lb["velero.io/restore-name"] != restore {
			t.Errorf("DR VM %s was not restored by Velero from %s/%s: labels %v", vm.GetName(), backup, restore, lb)
		}
		if st, _, _ := unstructured.NestedString(vm.Object, "status", "printableStatus"); st != "Running" {
			t.Errorf("DR VM %s is %q, want Running", vm.GetName(), st)
		}
	}
}

// assertDRVolumes: every PV at DR points at the DR NFS host with Retain,
// every PVC is Bound, and the disk data reached DR.
func assertDRVolumes(ctx context.Context, t *testing.T, l *lab.Lab, dcs kubernetes.Interface, ns string, disks []string) {
	t.Helper()
	for _, disk := range disks {
		pv, err := dcs.CoreV1().PersistentVolumes().Get(ctx, "pv-"+ns+"-"+disk, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(l.DR.ExportRoot, ns+"-"+disk)
		if pv.Spec.NFS == nil || pv.Spec.NFS.Server != l.DR.NFSHost || pv.Spec.NFS.Path != want {
			t.Errorf("PV %s source %+v, want %s:%s", pv.Name, pv.Spec.PersistentVolumeSource, l.DR.NFSHost, want)
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
			t.Errorf("PV %s reclaim policy %s, want Retain", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy)
		}
		pvc, err := dcs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, disk, metav1.GetOptions{})
		if err != nil || pvc.Status.Phase != corev1.ClaimBound {
			t.Errorf("PVC %s at DR: %v %v", disk, pvc.Status.Phase, err)
		}
		a, _ := os.ReadFile(filepath.Join(l.Primary.ExportRoot, ns+"-"+disk, "disk.img"))
		b, _ := os.ReadFile(filepath.Join(want, "disk.img"))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("%s: DR data differs from the primary", disk)
		}
	}
}

// TestBackupParserChoosesNewestCompletedVelero: among real backups, the
// newest of which Velero itself marked PartiallyFailed (a pre-backup hook on
// a pod that cannot run), an empty backup_name picks the newest Completed.
func TestBackupParserChoosesNewestCompletedVelero(t *testing.T) {
	l := lab.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	prc, _ := l.Primary.RESTConfig()
	p := dynamic.NewForConfigOrDie(prc)
	const ns, broken = "vms-velero-pick", "velero-broken"
	seedVMs(ctx, t, l, p, ns, []string{"app-root"})
	seedFailingHook(ctx, t, p, broken)

	lab.StartVelero(t, l, &l.Primary)
	stamp := time.Now().UTC().Format("20060102150405")
	var done []string
	for i, c := range []struct{ suffix, phase string }{{"a", "Completed"}, {"b", "Completed"}, {"c", "PartiallyFailed"}} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // completionTimestamp has 1 s resolution
		}
		nss := []string{ns}
		if c.phase == "PartiallyFailed" {
			nss = append(nss, broken)
		}
		b := veleroBackup(ctx, t, p, "pick-"+stamp+"-"+c.suffix, nss, c.phase)
		ts, _, _ := unstructured.NestedString(b.Object, "status", "completionTimestamp")
		done = append(done, ts)
	}
	if !(done[0] < done[1] && done[1] < done[2]) {
		t.Fatalf("backups did not complete in order: %v", done)
	}
	want := "pick-" + stamp + "-b"
	out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", map[string]any{"backup_name": "",
		"dr_failover_namespaces": []string{ns}, "dr_failover_report_dir": t.TempDir(), "oadp_backup_parser_prefix": lab.VeleroPrefix}, "--check")
	if err != nil {
		t.Fatalf("check-mode failover: %v\n%s", err, tail(out))
	}
	if !strings.Contains(out, "Backup "+want+": 1 PV(s), 1 PVC(s)") {
		t.Errorf("the parser did not choose %s (newest Completed):\n%s", want, tail(out))
	}
}

// seedFailingHook creates namespace ns with a pod whose pre-backup hook
// cannot run (the lab has no kubelet), so a backup including ns ends
// PartiallyFailed.
func seedFailingHook(ctx context.Context, t *testing.T, p dynamic.Interface, ns string) {
	t.Helper()
	mustCreate(ctx, t, p.Resource(sim.GVRNamespace), map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "hook-fails", "namespace": ns, "annotations": map[string]any{
			"pre.hook.backup.velero.io/command": `["/bin/true"]`, "pre.hook.backup.velero.io/container": "app",
			"pre.hook.backup.velero.io/on-error": "Fail", "pre.hook.backup.velero.io/timeout": "5s"}},
		"spec": map[string]any{"automountServiceAccountToken": false, "containers": []any{map[string]any{"name": "app", "image": "registry.invalid/app:1"}}}}
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		// The pod waits for the namespace's default ServiceAccount.
		if _, err = p.Resource(gvrPod).Namespace(ns).Create(ctx, u(pod), metav1.CreateOptions{}); err == nil {
			return
		}
	}
	t.Fatalf("create hook pod: %v", err)
}
