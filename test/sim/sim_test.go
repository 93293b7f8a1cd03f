package sim_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"archive/tar"
	"compress/gzip"

	"github.com/minio/minio-go/v7"
	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

func dyn(t *testing.T, s *lab.Site) dynamic.Interface {
	rc, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return dynamic.NewForConfigOrDie(rc)
}

func obj(apiVersion, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if ns != "" {
		md["namespace"] = ns
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md, "spec": spec}}
}

// A backup written by the simulator has Velero's layout, and the simulated
// Velero restores what is not excluded; the simulated KubeVirt runs a VM
// only once its PVC is Bound.
func TestBackupRestoreAndVMStatus(t *testing.T) {
	l := lab.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, d := dyn(t, &l.Primary), dyn(t, &l.DR)
	s3, err := l.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	must(p.Resource(sim.GVRNamespace).Create(ctx, obj("v1", "Namespace", "", "simns", nil), metav1.CreateOptions{}))
	must(p.Resource(sim.GVRPV).Create(ctx, obj("v1", "PersistentVolume", "", "sim-pv", map[string]any{
		"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic",
		"nfs":      map[string]any{"server": l.Primary.NFSHost, "path": l.Primary.ExportRoot + "/sim"},
		"claimRef": map[string]any{"namespace": "simns", "name": "sim-pvc"},
	}), metav1.CreateOptions{}))
	must(p.Resource(sim.GVRPVC).Namespace("simns").Create(ctx, obj("v1", "PersistentVolumeClaim", "simns", "sim-pvc", map[string]any{
		"accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic", "volumeName": "sim-pv",
		"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}},
	}), metav1.CreateOptions{}))
	must(p.Resource(sim.GVRVM).Namespace("simns").Create(ctx, obj("kubevirt.io/v1", "VirtualMachine", "simns", "sim-vm", map[string]any{
		"runStrategy": "Always",
		"template":    map[string]any{"spec": map[string]any{"volumes": []any{map[string]any{"name": "root", "persistentVolumeClaim": map[string]any{"claimName": "sim-pvc"}}}}},
	}), metav1.CreateOptions{}))

	// A halted VM next to it, and a second namespace the Restore leaves out.
	must(p.Resource(sim.GVRVM).Namespace("simns").Create(ctx, obj("kubevirt.io/v1", "VirtualMachine", "simns", "sim-vm-off", map[string]any{
		"runStrategy": "Halted", "template": map[string]any{"spec": map[string]any{}},
	}), metav1.CreateOptions{}))
	must(p.Resource(sim.GVRNamespace).Create(ctx, obj("v1", "Namespace", "", "simother", nil), metav1.CreateOptions{}))
	must(p.Resource(sim.GVRVM).Namespace("simother").Create(ctx, obj("kubevirt.io/v1", "VirtualMachine", "simother", "other-vm", map[string]any{
		"running": true, "template": map[string]any{"spec": map[string]any{}},
	}), metav1.CreateOptions{}))

	if err := sim.WriteBackup(ctx, p, s3, l.S3Bucket, sim.BackupOptions{Name: "simb", Namespaces: []string{"simns", "simother"}}); err != nil {
		t.Fatal(err)
	}
	o, err := s3.GetObject(ctx, l.S3Bucket, "backups/simb/simb.tar.gz", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(o)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
	for _, want := range []string{"metadata/version", "resources/persistentvolumes/cluster/sim-pv.json", "resources/persistentvolumes/v1-preferredversion/cluster/sim-pv.json",
		"resources/persistentvolumeclaims/namespaces/simns/sim-pvc.json", "resources/persistentvolumeclaims/v1-preferredversion/namespaces/simns/sim-pvc.json",
		"resources/virtualmachines.kubevirt.io/namespaces/simns/sim-vm.json", "resources/virtualmachines.kubevirt.io/v1-preferredversion/namespaces/simns/sim-vm.json",
		"resources/namespaces/cluster/simns.json"} {
		if !names[want] {
			t.Errorf("tarball lacks %s (has %v)", want, names)
		}
	}

	log := zaptest.NewLogger(t)
	v := &sim.Velero{DR: d, S3: s3, Bucket: l.S3Bucket, Log: log}
	k := &sim.KubeVirt{Clusters: map[string]dynamic.Interface{"dr": d}, Log: log}
	go v.Run(ctx, 100*time.Millisecond)
	go k.Run(ctx, 100*time.Millisecond)
	must(d.Resource(sim.GVRNamespace).Create(ctx, obj("v1", "Namespace", "", "openshift-adp", nil), metav1.CreateOptions{}))
	must(d.Resource(sim.GVRRestore).Namespace("openshift-adp").Create(ctx, obj("velero.io/v1", "Restore", "openshift-adp", "simr", map[string]any{
		"backupName": "simb", "excludedResources": []any{"persistentvolumes", "persistentvolumeclaims"}, "includedNamespaces": []any{"simns"},
	}), metav1.CreateOptions{}))
	waitFor(ctx, t, "restore Completed", func() string {
		r, err := d.Resource(sim.GVRRestore).Namespace("openshift-adp").Get(ctx, "simr", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		ph, _, _ := unstructured.NestedString(r.Object, "status", "phase")
		if ph != "Completed" {
			return "phase " + ph
		}
		return ""
	})
	if _, err := d.Resource(sim.GVRPVC).Namespace("simns").Get(ctx, "sim-pvc", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("excluded PVC was restored (err=%v)", err)
	}
	if _, err := d.Resource(sim.GVRVM).Namespace("simother").Get(ctx, "other-vm", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a VM outside includedNamespaces was restored (err=%v)", err)
	}
	waitFor(ctx, t, "halted VM Stopped", func() string {
		vm, err := d.Resource(sim.GVRVM).Namespace("simns").Get(ctx, "sim-vm-off", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		s, _, _ := unstructured.NestedString(vm.Object, "status", "printableStatus")
		if s != "Stopped" {
			return s
		}
		return ""
	})
	vmStatus := func() string {
		vm, err := d.Resource(sim.GVRVM).Namespace("simns").Get(ctx, "sim-vm", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		s, _, _ := unstructured.NestedString(vm.Object, "status", "printableStatus")
		return s
	}
	waitFor(ctx, t, "VM waiting for its volume", func() string {
		if s := vmStatus(); s != "WaitingForVolumeBinding" {
			return s
		}
		return ""
	})
	// The product would now apply the PV and PVC at DR.
	must(d.Resource(sim.GVRPV).Create(ctx, obj("v1", "PersistentVolume", "", "sim-pv", map[string]any{
		"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic",
		"nfs": map[string]any{"server": l.DR.NFSHost, "path": l.DR.ExportRoot + "/sim"}, "claimRef": map[string]any{"namespace": "simns", "name": "sim-pvc"},
	}), metav1.CreateOptions{}))
	must(d.Resource(sim.GVRPVC).Namespace("simns").Create(ctx, obj("v1", "PersistentVolumeClaim", "simns", "sim-pvc", map[string]any{
		"accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic", "volumeName": "sim-pv",
		"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}},
	}), metav1.CreateOptions{}))
	waitFor(ctx, t, "VM Running", func() string {
		if s := vmStatus(); s != "Running" {
			return s
		}
		return ""
	})

	// spec.namespaceMapping (the drill) restores the VMs into another namespace.
	must(d.Resource(sim.GVRRestore).Namespace("openshift-adp").Create(ctx, obj("velero.io/v1", "Restore", "openshift-adp", "mapped", map[string]any{
		"backupName": "simb", "excludedResources": []any{"persistentvolumes", "persistentvolumeclaims"}, "includedNamespaces": []any{"simns"},
		"namespaceMapping": map[string]any{"simns": "simns-drill"},
	}), metav1.CreateOptions{}))
	waitFor(ctx, t, "VM restored into the mapped namespace", func() string {
		if _, err := d.Resource(sim.GVRNamespace).Get(ctx, "simns-drill", metav1.GetOptions{}); err != nil {
			return err.Error()
		}
		vm, err := d.Resource(sim.GVRVM).Namespace("simns-drill").Get(ctx, "sim-vm", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if vm.GetNamespace() != "simns-drill" {
			return "namespace " + vm.GetNamespace()
		}
		return ""
	})

	// A restore of a backup that does not exist fails with the reason.
	must(d.Resource(sim.GVRRestore).Namespace("openshift-adp").Create(ctx, obj("velero.io/v1", "Restore", "openshift-adp", "missing", map[string]any{"backupName": "nope"}), metav1.CreateOptions{}))
	waitFor(ctx, t, "restore Failed", func() string {
		r, err := d.Resource(sim.GVRRestore).Namespace("openshift-adp").Get(ctx, "missing", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		ph, _, _ := unstructured.NestedString(r.Object, "status", "phase")
		reason, _, _ := unstructured.NestedString(r.Object, "status", "failureReason")
		if ph != "Failed" || !strings.Contains(reason, "nope") {
			return "phase " + ph + " " + reason
		}
		return ""
	})
}

func waitFor(ctx context.Context, t *testing.T, what string, check func() string) {
	t.Helper()
	last := ""
	for {
		if last = check(); last == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %s", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
