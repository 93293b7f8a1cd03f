package failover_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
)

type mixedReport struct {
	Result   string   `json:"result"`
	Error    string   `json:"error"`
	Warnings []string `json:"warnings"`
	Volumes  []struct {
		Name, Status, Reason string
		StorageClass         string `json:"storage_class"`
	} `json:"volumes"`
	Checks []struct {
		Name, VM, Check, Result, Message string
		Required                         bool
	} `json:"checks"`
}

func latestFailoverReport(t *testing.T, dir string) (mixedReport, string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "failover-*.json"))
	if len(m) == 0 {
		t.Fatal("no failover report")
	}
	b, _ := os.ReadFile(m[len(m)-1])
	var r mixedReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(strings.TrimSuffix(m[len(m)-1], ".json") + ".md")
	return r, string(md)
}

// TestFailoverStorageClassesAndGuestChecks: a backup holding an NFS PV, a PV
// of another class with no hook and a PV of a class with a configured hook.
// The NFS PV is rewritten and applied, the hooked one is provisioned by its
// hook, the other is skipped with the reason and never applied (nor its
// PVC). In-guest checks run after the VMs are Running: a failing optional
// check makes the failover "degraded"; made required, it fails it.
func TestFailoverStorageClassesAndGuestChecks(t *testing.T) {
	l := lab.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	prc, _ := l.Primary.RESTConfig()
	drc, _ := l.DR.RESTConfig()
	p, d := dynamic.NewForConfigOrDie(prc), dynamic.NewForConfigOrDie(drc)
	pcs, dcs := kubernetes.NewForConfigOrDie(prc), kubernetes.NewForConfigOrDie(drc)
	s3, err := l.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	liftFence(ctx, l, dcs)

	const ns = "mixed"
	must := func(err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	_, err = pcs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must(err)
	for _, sc := range []struct{ name, provisioner string }{{"ceph-rbd", "rbd.csi.ceph.com"}, {"fast-local", "local.csi.example.com"}} {
		_, err := pcs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: sc.name}, Provisioner: sc.provisioner}, metav1.CreateOptions{})
		must(err)
	}
	webDir := filepath.Join(l.Primary.ExportRoot, ns+"-web")
	if err := os.MkdirAll(webDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(webDir, "disk.img"), []byte("web disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	vols := []struct {
		pvc, class string
		source     corev1.PersistentVolumeSource
	}{
		{"web", "nfs-dynamic", corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: l.Primary.NFSHost, Path: webDir}}},
		{"db", "ceph-rbd", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "rbd.csi.ceph.com", VolumeHandle: "0001-0009-rook-ceph-db"}}},
		{"cache", "fast-local", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "local.csi.example.com", VolumeHandle: "cache-1"}}},
	}
	for _, v := range vols {
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + ns + "-" + v.pvc}, Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resourceQuantity("1Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: v.class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete, PersistentVolumeSource: v.source,
			ClaimRef: &corev1.ObjectReference{Namespace: ns, Name: v.pvc}}}
		_, err := pcs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
		must(err)
		class := v.class
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: v.pvc, Namespace: ns}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class, VolumeName: pv.Name,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resourceQuantity("1Gi")}}}}
		_, err = pcs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
		must(err)
	}
	vm := map[string]any{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": map[string]any{"name": "web", "namespace": ns},
		"spec": map[string]any{"runStrategy": "Always", "template": map[string]any{"spec": map[string]any{
			"volumes": []any{map[string]any{"name": "root", "persistentVolumeClaim": map[string]any{"claimName": "web"}}}}}}}
	_, err = p.Resource(sim.GVRVM).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: vm}, metav1.CreateOptions{})
	must(err)
	log := zaptest.NewLogger(t)
	go (&sim.Velero{DR: d, S3: s3, Bucket: l.S3Bucket, Log: log}).Run(ctx, 200*time.Millisecond)
	go (&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"primary": p, "dr": d}, Log: log}).Run(ctx, 200*time.Millisecond)
	if err := sim.WriteBackup(ctx, p, s3, l.S3Bucket, sim.BackupOptions{Name: "mixed-classes", Namespaces: []string{ns}}); err != nil {
		t.Fatal(err)
	}

	// What the in-guest checks talk to: a TCP service, an HTTP health URL,
	// and a port where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer health.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	root, _ := lab.RepoRoot()
	reports := t.TempDir()
	checks := []map[string]any{
		{"name": "web port", "vm": ns + "/web", "tcp": map[string]any{"host": "127.0.0.1", "port": ln.Addr().(*net.TCPAddr).Port}, "timeout": 2, "retries": 2, "delay": 1},
		{"name": "web health", "vm": ns + "/web", "http": map[string]any{"url": health.URL + "/health"}, "timeout": 2, "retries": 2, "delay": 1},
		{"name": "metrics port", "vm": ns + "/web", "tcp": map[string]any{"host": "127.0.0.1", "port": closedPort}, "timeout": 1, "retries": 2, "delay": 1},
	}
	vars := map[string]any{
		"backup_name": "mixed-classes", "dr_failover_namespaces": []string{ns}, "dr_failover_report_dir": reports, "dr_failover_vm_timeout": 120,
		"dr_storage_provisioner_class_hooks": map[string]any{"fast-local": map[string]any{"tasks": filepath.Join(root, "test/failover/testdata/fast-local-hook.yml")}},
		"dr_guest_checks":                    checks,
	}
	out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars)
	if err != nil {
		t.Fatalf("failover: %v\n%s", err, tail(out))
	}
	rep, md := latestFailoverReport(t, reports)

	// Storage: dispatch by class.
	status := map[string]string{}
	for _, v := range rep.Volumes {
		status[v.Name] = v.Status
		if v.Name == "pv-mixed-db" && (!strings.Contains(v.Reason, "ceph-rbd") || !strings.Contains(v.Reason, "dr_storage_provisioner_class_hooks")) {
			t.Errorf("skipped PV's reason does not say why: %q", v.Reason)
		}
	}
	if status["pv-mixed-web"] != "rewritten" || status["pv-mixed-db"] != "skipped" || status["pv-mixed-cache"] != "hook" {
		t.Errorf("volume outcomes %v, want web rewritten, db skipped, cache by hook", status)
	}
	if !strings.Contains(md, "pv-mixed-db | skipped") {
		t.Errorf("Markdown report does not list the skipped PV:\n%s", md)
	}
	if _, err := dcs.CoreV1().PersistentVolumes().Get(ctx, "pv-mixed-db", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ceph-rbd PV was applied at DR (err %v): it would point at the primary's storage", err)
	}
	if _, err := dcs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "db", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the PVC of the skipped PV was applied at DR (err %v)", err)
	}
	cache, err := dcs.CoreV1().PersistentVolumes().Get(ctx, "pv-mixed-cache", metav1.GetOptions{})
	if err != nil || cache.Labels["ocpdr-test/provisioned-by"] != "fast-local-hook" || cache.Spec.HostPath == nil {
		t.Errorf("the hooked PV is not the hook's definition: %v %+v", err, cache)
	}
	for _, pvc := range []string{"web", "cache"} {
		c, err := dcs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc, metav1.GetOptions{})
		if err != nil || c.Status.Phase != corev1.ClaimBound {
			t.Errorf("PVC %s at DR: %v %v", pvc, c.Status.Phase, err)
		}
	}
	web, err := dcs.CoreV1().PersistentVolumes().Get(ctx, "pv-mixed-web", metav1.GetOptions{})
	if err != nil || web.Spec.NFS == nil || web.Spec.NFS.Server != l.DR.NFSHost {
		t.Errorf("NFS PV not rewritten for the DR server: %v %+v", err, web.Spec.PersistentVolumeSource)
	}

	// In-guest checks: two pass, an optional one fails -> degraded.
	results := map[string]string{}
	for _, c := range rep.Checks {
		results[c.Name] = c.Result
	}
	if results["web port"] != "passed" || results["web health"] != "passed" || results["metrics port"] != "failed" {
		t.Errorf("check results %v", results)
	}
	if rep.Result != "degraded" || !strings.Contains(strings.Join(rep.Warnings, ";"), "in-guest check(s) failed: metrics port") ||
		!strings.Contains(strings.Join(rep.Warnings, ";"), "pv-mixed-db") {
		t.Errorf("result %q warnings %v, want degraded naming the failed check and the skipped PV", rep.Result, rep.Warnings)
	}
	if !strings.Contains(md, "## In-guest checks") || !strings.Contains(md, "| metrics port |") {
		t.Errorf("Markdown report lacks the checks:\n%s", md)
	}

	// The same check made required fails the failover, and says why.
	checks[2]["required"] = true
	out, err = l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", vars)
	if err == nil {
		t.Fatalf("a failed required check did not fail the failover:\n%s", tail(out))
	}
	rep, _ = latestFailoverReport(t, reports)
	if rep.Result != "failed" || !strings.Contains(rep.Error, "metrics port") {
		t.Errorf("result %q error %q, want failed naming the required check", rep.Result, rep.Error)
	}
}

func resourceQuantity(s string) resource.Quantity { return resource.MustParse(s) }

// liftFence undoes an earlier test's failover (the DR-active marker and
// ConfigMap): with the fence up, the final sync of the next failover refuses
// to pull from the primary.
func liftFence(ctx context.Context, l *lab.Lab, dcs kubernetes.Interface) {
	_ = os.Remove(filepath.Join(l.DR.ExportRoot, ".ocpdr-dr-active"))
	_ = dcs.CoreV1().ConfigMaps("openshift-adp").Delete(ctx, "ocpdr-dr-active", metav1.DeleteOptions{})
}
