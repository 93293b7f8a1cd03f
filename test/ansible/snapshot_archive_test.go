// VolumeSnapshot archives at DR: a csi-driver-nfs snapshot archive laid out
// as the driver lays it out, replicated by the snapshot sync playbook,
// archived at DR on delete and imported by the failover's storage provisioner.
package ansible_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

var (
	vsGVR  = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	vscGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
)

const snapNS = "snap-arch"

// driverArchive writes <share>/<snap>/<vol>.tar.gz with the driver's own
// command (tar -C <volume dir> -czvf <archive> .) and returns its path.
func driverArchive(t *testing.T, share, snap, vol string) string {
	t.Helper()
	writeFile(t, filepath.Join(share, vol, "disk.img"), strings.Repeat("snapshot data ", 20000))
	writeFile(t, filepath.Join(share, vol, "sub", "f"), "f")
	dst := filepath.Join(share, snap, vol+".tar.gz")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", filepath.Join(share, vol), "-czvf", dst, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	return dst
}

func dynClient(t *testing.T, s *lab.Site) dynamic.Interface {
	t.Helper()
	rc, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return dynamic.NewForConfigOrDie(rc)
}

// createWithStatus creates obj and sets its status (a subresource).
func createWithStatus(ctx context.Context, t *testing.T, r dynamic.ResourceInterface, obj map[string]any, status map[string]any) map[string]any {
	t.Helper()
	u, err := r.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Object["status"] = status
	if u, err = r.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return u.Object
}

// primarySnapshot creates a bound, ready VolumeSnapshot and its
// csi-driver-nfs VolumeSnapshotContent on the primary and returns the
// VolumeSnapshot as the forwarder would carry it.
func primarySnapshot(ctx context.Context, t *testing.T, dc dynamic.Interface, name, content, handle string) map[string]any {
	t.Helper()
	createWithStatus(ctx, t, dc.Resource(vscGVR), map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent", "metadata": map[string]any{"name": content},
		"spec": map[string]any{"driver": "nfs.csi.k8s.io", "deletionPolicy": "Delete", "source": map[string]any{"volumeHandle": "x"},
			"volumeSnapshotRef": map[string]any{"name": name, "namespace": snapNS}},
	}, map[string]any{"readyToUse": true, "snapshotHandle": handle, "restoreSize": int64(1 << 30)})
	t.Cleanup(func() { _ = dc.Resource(vscGVR).Delete(context.Background(), content, metav1.DeleteOptions{}) })
	vs := createWithStatus(ctx, t, dc.Resource(vsGVR).Namespace(snapNS), map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "metadata": map[string]any{"name": name, "namespace": snapNS},
		"spec": map[string]any{"source": map[string]any{"persistentVolumeClaimName": "disk"}, "volumeSnapshotClassName": "csi-nfs"},
	}, map[string]any{"readyToUse": true, "boundVolumeSnapshotContentName": content, "restoreSize": "1Gi"})
	t.Cleanup(func() {
		_ = dc.Resource(vsGVR).Namespace(snapNS).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return vs
}

func ensureNamespace(ctx context.Context, t *testing.T, s *lab.Site, ns string) {
	t.Helper()
	rc, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	_, err = kubernetes.NewForConfigOrDie(rc).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func snapshotDoc(t *testing.T, l *lab.Lab, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.DR.ExportRoot, ".ocpdr-metadata", "snapshots", snapNS, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// importPlaybook runs the failover's storage provisioner with snapshot import
// for the test namespace only (no PVs), as a one-play playbook.
func importPlaybook(t *testing.T, l *lab.Lab) string {
	t.Helper()
	dir := t.TempDir()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The project tunables, as beside the real playbooks.
	if err := os.Symlink(filepath.Join(root, "group_vars"), filepath.Join(dir, "group_vars")); err != nil {
		t.Fatal(err)
	}
	pb := filepath.Join(dir, "import.yml")
	writeFile(t, pb, `---
- name: Import snapshots at DR
  hosts: ocp_dr
  gather_facts: false
  tasks:
    - name: Provision storage at DR
      ansible.builtin.include_role:
        name: dr_storage_provisioner
      vars:
        dr_storage_provisioner_pvs: []
        dr_storage_provisioner_pvcs: []
        dr_storage_provisioner_import_snapshots: true
        dr_storage_provisioner_snapshot_namespaces: [`+snapNS+`]
`)
	return l.MustPlaybook(t, pb, map[string]any{})
}

// A real archive replicates byte for byte with its checksum recorded, once;
// the failover imports it with the handle on the DR server and Retain; a
// forged delete changes nothing; a real delete archives it at DR; a missing
// archive fails the job with the reason.
func TestSnapshotArchive(t *testing.T) {
	l := lab.Get(t)
	ctx := t.Context()
	p, d := l.Primary.ExportRoot, l.DR.ExportRoot
	share := filepath.Join(p, "snap-share")
	const snap, vol = "snapshot-7e0c1d2a-55aa-4c9b-9f00-0123456789ab", "pvc-snap1"
	src := driverArchive(t, share, snap, vol)
	handle := l.Primary.NFSHost + "#" + strings.Trim(share, "/") + "#" + snap + "#" + snap + "#" + vol
	ensureNamespace(ctx, t, &l.Primary, snapNS)
	pdc := dynClient(t, &l.Primary)
	vs := primarySnapshot(ctx, t, pdc, "arch-a", "snapcontent-arch-a", handle)

	out := l.MustPlaybook(t, "playbooks/event_driven/handle_snapshot_sync.yml", map[string]any{"snapshot_object": vs})
	atDR := filepath.Join(d, "snap-share", snap, vol+".tar.gz")
	a, b := fileSHA(t, src), fileSHA(t, atDR)
	if a != b {
		t.Fatalf("archive at DR differs: %s vs %s\n%s", a, b, tailLines(out, 20))
	}
	arc, _ := snapshotDoc(t, l, "arch-a")["archive"].(map[string]any)
	drHandle := l.DR.NFSHost + "#" + strings.Trim(filepath.Join(d, "snap-share"), "/") + "#" + snap + "#" + snap + "#" + vol
	for k, want := range map[string]any{"sha256": a, "path": atDR, "handle": handle, "dr_handle": drHandle, "status": "replicated"} {
		if arc[k] != want {
			t.Errorf("metadata archive.%s = %v, want %v", k, arc[k], want)
		}
	}
	if again := l.MustPlaybook(t, "playbooks/event_driven/handle_snapshot_sync.yml", map[string]any{"snapshot_object": vs}); !strings.Contains(again, "changed=0") {
		t.Errorf("second sync of an unchanged archive reported a change:\n%s", tailLines(again, 8))
	}

	checkImport(ctx, t, l, drHandle)
	checkDelete(ctx, t, l, pdc, vs, snap, a)
	checkMissing(ctx, t, l, pdc, share)
}

func checkImport(ctx context.Context, t *testing.T, l *lab.Lab, drHandle string) {
	t.Helper()
	out := importPlaybook(t, l)
	ddc := dynClient(t, &l.DR)
	t.Cleanup(func() {
		_ = ddc.Resource(vsGVR).Namespace(snapNS).Delete(context.Background(), "arch-a", metav1.DeleteOptions{})
		_ = ddc.Resource(vscGVR).Delete(context.Background(), "snapcontent-arch-a", metav1.DeleteOptions{})
	})
	vsc, err := ddc.Resource(vscGVR).Get(ctx, "snapcontent-arch-a", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no VolumeSnapshotContent at DR: %v\n%s", err, tailLines(out, 20))
	}
	h, _, _ := unstructured.NestedString(vsc.Object, "spec", "source", "snapshotHandle")
	pol, _, _ := unstructured.NestedString(vsc.Object, "spec", "deletionPolicy")
	ref, _, _ := unstructured.NestedString(vsc.Object, "spec", "volumeSnapshotRef", "name")
	if h != drHandle || pol != "Retain" || ref != "arch-a" {
		t.Errorf("DR VolumeSnapshotContent: handle %q (want %q), deletionPolicy %q, ref %q", h, drHandle, pol, ref)
	}
	vs, err := ddc.Resource(vsGVR).Namespace(snapNS).Get(ctx, "arch-a", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no VolumeSnapshot at DR: %v", err)
	}
	if c, _, _ := unstructured.NestedString(vs.Object, "spec", "source", "volumeSnapshotContentName"); c != "snapcontent-arch-a" {
		t.Errorf("DR VolumeSnapshot source.volumeSnapshotContentName = %q", c)
	}
	if !strings.Contains(out, snapNS+"/arch-a: imported") {
		t.Errorf("import not reported:\n%s", tailLines(out, 20))
	}
}

func checkDelete(ctx context.Context, t *testing.T, l *lab.Lab, pdc dynamic.Interface, vs map[string]any, snap, sum string) {
	t.Helper()
	dir := filepath.Join(l.DR.ExportRoot, "snap-share")
	// Forged: the snapshot still exists on the primary.
	if out, err := l.Playbook(ctx, "playbooks/event_driven/handle_snapshot_delete.yml", map[string]any{"snapshot_object": vs}); err == nil || !strings.Contains(out, "still exists on the primary") {
		t.Errorf("a delete of a live snapshot was not refused:\n%s", tailLines(out, 10))
	}
	if _, err := os.Stat(filepath.Join(dir, snap)); err != nil {
		t.Fatalf("refused delete touched the DR archive: %v", err)
	}
	if err := pdc.Resource(vsGVR).Namespace(snapNS).Delete(ctx, "arch-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.MustPlaybook(t, "playbooks/event_driven/handle_snapshot_delete.yml", map[string]any{"snapshot_object": vs})
	if _, err := os.Stat(filepath.Join(dir, snap)); !os.IsNotExist(err) {
		t.Errorf("snapshot directory still in place at DR after delete: %v", err)
	}
	m, _ := filepath.Glob(filepath.Join(dir, "archived-"+snap+"-*", "pvc-snap1.tar.gz"))
	if len(m) != 1 {
		t.Fatalf("archived snapshot at DR: %v", m)
	}
	if got := fileSHA(t, m[0]); got != sum {
		t.Errorf("archived archive sha256 %s, want %s", got, sum)
	}
}

func checkMissing(ctx context.Context, t *testing.T, l *lab.Lab, pdc dynamic.Interface, share string) {
	t.Helper()
	const snap = "snapshot-00000000-0000-4000-8000-00000000dead"
	handle := l.Primary.NFSHost + "#" + strings.Trim(share, "/") + "#" + snap + "#" + snap + "#pvc-gone"
	vs := primarySnapshot(ctx, t, pdc, "arch-missing", "snapcontent-arch-missing", handle)
	out, err := l.Playbook(ctx, "playbooks/event_driven/handle_snapshot_sync.yml", map[string]any{"snapshot_object": vs})
	if err == nil || !strings.Contains(out, "missing on the primary") {
		t.Errorf("a missing archive did not fail the job with the reason:\n%s", tailLines(out, 15))
	}
}
