// Package failover_test runs playbooks/manual_dr/execute_failover.yml with
// Debian's ansible against the lab: real API servers, sshd, rsync and S3;
// Velero's restore and KubeVirt's VM status come from test/sim.
package failover_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

func tail(s string) string {
	l := strings.Split(s, "\n")
	if len(l) > 150 {
		l = l[len(l)-150:]
	}
	return strings.Join(l, "\n")
}

func u(obj map[string]any) *unstructured.Unstructured { return &unstructured.Unstructured{Object: obj} }

// TestFailover: VMs, PVs, PVCs and data on the primary, a Velero-format
// backup in S3; the failover binds the PVs at DR on the DR NFS server, runs
// the VMs, copies the data, reports every step; a second run changes
// nothing; a missing backup fails before any DR change; afterwards the sync
// roles refuse to pull from the primary.
func TestFailover(t *testing.T) {
	l := lab.Get(t)
	// Six failover runs: about 5 minutes on 2 idle cores, more on a busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	prc, _ := l.Primary.RESTConfig()
	drc, _ := l.DR.RESTConfig()
	p, d := dynamic.NewForConfigOrDie(prc), dynamic.NewForConfigOrDie(drc)
	dcs := kubernetes.NewForConfigOrDie(drc)
	s3, err := l.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	const ns = "vms"
	create := func(dc dynamic.Interface, obj map[string]any) {
		t.Helper()
		o := u(obj)
		var err error
		switch o.GetKind() {
		case "Namespace":
			_, err = dc.Resource(sim.GVRNamespace).Create(ctx, o, metav1.CreateOptions{})
		case "PersistentVolume":
			_, err = dc.Resource(sim.GVRPV).Create(ctx, o, metav1.CreateOptions{})
		case "PersistentVolumeClaim":
			_, err = dc.Resource(sim.GVRPVC).Namespace(ns).Create(ctx, o, metav1.CreateOptions{})
		case "VirtualMachine":
			_, err = dc.Resource(sim.GVRVM).Namespace(ns).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	create(p, map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	// Tenants write annotations: Jinja in one must travel through the backup
	// and the failover as text and never run on the Ansible host.
	marker := filepath.Join(t.TempDir(), "backup-template-ran")
	const hostileKey = "ocpv-dr.io/note"
	hostile := "{{ lookup('pipe', 'touch " + marker + "') }}"
	disks := []string{"vm-a-root", "vm-b-root"}
	for i, disk := range disks {
		dir := filepath.Join(l.Primary.ExportRoot, ns+"-"+disk)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "disk.img"), []byte(strings.Repeat(disk, 5000)), 0o644); err != nil {
			t.Fatal(err)
		}
		src := map[string]any{"nfs": map[string]any{"server": l.Primary.NFSHost, "path": dir}}
		if i == 1 { // csi-driver-nfs form
			src = map[string]any{"csi": map[string]any{"driver": "nfs.csi.k8s.io", "volumeHandle": l.Primary.NFSHost + "#" + strings.TrimPrefix(l.Primary.ExportRoot, "/") + "#" + ns + "-" + disk + "##",
				"volumeAttributes": map[string]any{"server": l.Primary.NFSHost, "share": l.Primary.ExportRoot, "subdir": ns + "-" + disk}}}
		}
		spec := map[string]any{"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic",
			"persistentVolumeReclaimPolicy": "Delete", "claimRef": map[string]any{"namespace": ns, "name": disk}}
		for k, v := range src {
			spec[k] = v
		}
		create(p, map[string]any{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": map[string]any{"name": "pv-" + disk}, "spec": spec})
		create(p, map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": map[string]any{"name": disk, "namespace": ns,
			"annotations": map[string]any{hostileKey: hostile}},
			"spec": map[string]any{"accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic", "volumeName": "pv-" + disk,
				"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}}}})
		vmSpec := map[string]any{"template": map[string]any{"spec": map[string]any{"volumes": []any{map[string]any{"name": "root", "persistentVolumeClaim": map[string]any{"claimName": disk}}}}}}
		if i == 0 {
			vmSpec["runStrategy"] = "Always"
		} else {
			vmSpec["running"] = true // deprecated form, still found in the field
		}
		create(p, map[string]any{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": map[string]any{"name": strings.TrimSuffix(disk, "-root"), "namespace": ns}, "spec": vmSpec})
	}
	log := zaptest.NewLogger(t)
	go (&sim.Velero{DR: d, S3: s3, Bucket: l.S3Bucket, Log: log}).Run(ctx, 200*time.Millisecond)
	go (&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"primary": p, "dr": d}, Log: log}).Run(ctx, 200*time.Millisecond)
	if err := sim.WriteBackup(ctx, p, s3, l.S3Bucket, sim.BackupOptions{Name: "nightly-20261124", Namespaces: []string{ns}}); err != nil {
		t.Fatal(err)
	}

	// A missing backup fails before anything at DR changes.
	reports := t.TempDir()
	vars := map[string]any{"backup_name": "does-not-exist", "dr_failover_namespaces": []string{ns}, "dr_failover_report_dir": reports, "dr_failover_vm_timeout": 120}
	out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars)
	if err == nil || !strings.Contains(out, "Nothing at the DR site was changed") {
		t.Fatalf("missing backup did not fail clearly:\n%s", tail(out))
	}
	if pvs, _ := dcs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); len(pvs.Items) != 0 {
		t.Fatalf("a failed failover created %d PVs at DR", len(pvs.Items))
	}

	// --check shows what would be done and changes nothing at DR.
	vars["backup_name"] = "nightly-20261124"
	if out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars, "--check"); err != nil {
		t.Fatalf("check-mode failover: %v\n%s", err, tail(out))
	}
	if pvs, _ := dcs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); len(pvs.Items) != 0 {
		t.Fatalf("--check created %d PVs at DR", len(pvs.Items))
	}
	if _, err := os.Stat(filepath.Join(l.DR.ExportRoot, ".ocpdr-dr-active")); err == nil {
		t.Fatal("--check wrote the fence marker")
	}

	// Data written after the last sync reaches DR through the final sync.
	_ = os.WriteFile(filepath.Join(l.Primary.ExportRoot, ns+"-vm-a-root", "late.txt"), []byte("written just before the disaster"), 0o644)
	vars["backup_name"] = "" // newest Completed
	// The primary export is made read-only through the configured exports file.
	exports := filepath.Join(l.Dir, "primary", "ocpdr.exports")
	_ = os.WriteFile(exports, []byte(l.Primary.ExportRoot+" 10.0.0.0/8(rw,sync,no_root_squash)\n"), 0o644)
	vars["dr_pre_failover_readonly_export"] = true
	vars["dr_pre_failover_exports_file"] = exports
	vars["dr_pre_failover_reexport_command"] = []string{"true"}
	out, err = l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars)
	if err != nil {
		t.Fatalf("failover: %v\n%s", err, tail(out))
	}
	for _, disk := range disks {
		pv, err := dcs.CoreV1().PersistentVolumes().Get(ctx, "pv-"+disk, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wantPath := filepath.Join(l.DR.ExportRoot, ns+"-"+disk)
		switch {
		case pv.Spec.NFS != nil:
			if pv.Spec.NFS.Server != l.DR.NFSHost || pv.Spec.NFS.Path != wantPath {
				t.Errorf("%s points at %s:%s, want %s:%s", pv.Name, pv.Spec.NFS.Server, pv.Spec.NFS.Path, l.DR.NFSHost, wantPath)
			}
		case pv.Spec.CSI != nil:
			a := pv.Spec.CSI.VolumeAttributes
			if a["server"] != l.DR.NFSHost || filepath.Join(a["share"], a["subdir"]) != wantPath || !strings.HasPrefix(pv.Spec.CSI.VolumeHandle, l.DR.NFSHost+"#") {
				t.Errorf("%s CSI attributes %v handle %s", pv.Name, a, pv.Spec.CSI.VolumeHandle)
			}
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
			t.Errorf("%s reclaim policy %s, want Retain", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy)
		}
		pvc, err := dcs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, disk, metav1.GetOptions{})
		if err != nil || pvc.Status.Phase != corev1.ClaimBound {
			t.Errorf("PVC %s: %v %v", disk, pvc.Status.Phase, err)
		}
		if err == nil && pvc.Annotations[hostileKey] != hostile {
			t.Errorf("PVC %s annotation %s = %q at DR, want it verbatim", disk, hostileKey, pvc.Annotations[hostileKey])
		}
		a, _ := os.ReadFile(filepath.Join(l.Primary.ExportRoot, ns+"-"+disk, "disk.img"))
		b, _ := os.ReadFile(filepath.Join(wantPath, "disk.img"))
		if string(a) != string(b) || len(a) == 0 {
			t.Errorf("%s: DR data differs from the primary", disk)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a template in a PVC annotation of the backup ran on the Ansible host")
	}
	if b, _ := os.ReadFile(filepath.Join(l.DR.ExportRoot, ns+"-vm-a-root", "late.txt")); string(b) != "written just before the disaster" {
		t.Error("the final sync did not copy the latest data")
	}
	if b, _ := os.ReadFile(exports); !strings.Contains(string(b), "(ro,sync") {
		t.Errorf("primary export not made read-only: %s", b)
	}
	for _, vm := range []string{"vm-a", "vm-b"} {
		o, err := d.Resource(sim.GVRVM).Namespace(ns).Get(ctx, vm, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st, _, _ := unstructured.NestedString(o.Object, "status", "printableStatus"); st != "Running" {
			t.Errorf("DR VM %s is %q", vm, st)
		}
		po, _ := p.Resource(sim.GVRVM).Namespace(ns).Get(ctx, vm, metav1.GetOptions{})
		if rs, _, _ := unstructured.NestedString(po.Object, "spec", "runStrategy"); rs != "Halted" {
			t.Errorf("primary VM %s runStrategy %q, want Halted", vm, rs)
		}
		if _, has, _ := unstructured.NestedFieldNoCopy(po.Object, "spec", "running"); has {
			t.Errorf("primary VM %s still has the deprecated spec.running", vm)
		}
	}
	m, _ := filepath.Glob(filepath.Join(reports, "failover-*.json"))
	if len(m) == 0 {
		t.Fatal("no failover report")
	}
	var rep struct {
		Result string `json:"result"`
		Steps  []struct {
			Name    string  `json:"name"`
			Result  string  `json:"result"`
			Seconds float64 `json:"seconds"`
		} `json:"steps"`
		VMs  []map[string]any `json:"vms"`
		PVCs []struct {
			Name, Status string
		} `json:"pvcs"`
	}
	b, _ := os.ReadFile(m[len(m)-1])
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Result != "succeeded" || len(rep.Steps) < 6 || len(rep.VMs) != 2 {
		t.Errorf("report incomplete: %s", b)
	}
	if len(rep.PVCs) != 2 || rep.PVCs[0].Status != "Bound" || rep.PVCs[1].Status != "Bound" {
		t.Errorf("report lacks the PVCs' outcome: %+v", rep.PVCs)
	}
	if _, err := os.Stat(strings.TrimSuffix(m[len(m)-1], ".json") + ".md"); err != nil {
		t.Error("no Markdown report")
	}

	// A second run changes nothing at DR.
	pvBefore, _ := dcs.CoreV1().PersistentVolumes().Get(ctx, "pv-vm-a-root", metav1.GetOptions{})
	if out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars); err != nil {
		t.Fatalf("second failover: %v\n%s", err, tail(out))
	}
	pvAfter, _ := dcs.CoreV1().PersistentVolumes().Get(ctx, "pv-vm-a-root", metav1.GetOptions{})
	if pvBefore.ResourceVersion != pvAfter.ResourceVersion {
		t.Errorf("second run modified the DR PV (resourceVersion %s -> %s)", pvBefore.ResourceVersion, pvAfter.ResourceVersion)
	}
	restores, _ := d.Resource(sim.GVRRestore).Namespace("openshift-adp").List(ctx, metav1.ListOptions{})
	if len(restores.Items) != 1 {
		t.Errorf("%d Restores after two runs, want the first one reused", len(restores.Items))
	}

	// With the primary gone (API and NFS host unreachable), a failover still
	// succeeds, with warnings, from the backup and the last synced data.
	unreachable := map[string]any{}
	for k, v := range vars {
		unreachable[k] = v
	}
	unreachable["ocpdr_primary_kubeconfig"] = filepath.Join(l.Dir, "no-such-kubeconfig")
	unreachable["ocpdr_primary_ssh_port"] = 1 // nothing listens there
	unreachable["dr_pre_failover_readonly_export"] = false
	out, err = l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", unreachable)
	if err != nil {
		t.Fatalf("failover with the primary unreachable failed: %v\n%s", err, tail(out))
	}
	m, _ = filepath.Glob(filepath.Join(reports, "failover-*.json"))
	b, _ = os.ReadFile(m[len(m)-1])
	if !strings.Contains(string(b), "succeeded with warnings") || !strings.Contains(string(b), "primary API unreachable") || !strings.Contains(string(b), "primary NFS host unreachable") {
		t.Errorf("report of the unreachable-primary failover lacks its warnings: %s", b)
	}

	// The DR site is active: the event sync refuses to pull from the old primary.
	pvObj, err := p.Resource(sim.GVRPV).Get(ctx, "pv-vm-a-root", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read the primary PV: %v", err)
	}
	out, err = l.Playbook(t.Context(), "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pvObj.Object})
	if err != nil || !strings.Contains(out, "the DR site is active") {
		t.Errorf("sync after failover was not refused:\n%s", tail(out))
	}
}
