package ansible_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// A sync of a directory that holds DR-internal names below its top (an
// archive of a nested PV, a .ocpdr* directory) must not delete or overwrite
// them with rsync --delete (issue 15.5): not for a PV event, not for a data
// event posted for the parent directory. A PV path using a reserved name at
// any depth is refused, and so are PVs whose directories contain one another.
func TestParentSyncKeepsDRInternalNames(t *testing.T) {
	l := lab.Get(t)
	p, d := l.Primary.ExportRoot, l.DR.ExportRoot
	writeFile(t, filepath.Join(p, "nest", "disk.img"), "outer")
	writeFile(t, filepath.Join(p, "nest", "inner", "disk.img"), "inner")
	archive := filepath.Join(d, "nest", "archived-inner-20260101T000000Z", "disk.img")
	hidden := filepath.Join(d, "nest", "deeper", ".ocpdr-points", "p1")
	writeFile(t, archive, "an archived copy")
	writeFile(t, hidden, "a recovery point")

	for _, vars := range []map[string]any{
		{"pv_object": nfsPV("nest", l.Primary.NFSHost, filepath.Join(p, "nest"))},
	} {
		l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", vars)
	}
	l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_path_sync.yml", map[string]any{"nfs_path_object": map[string]any{
		"kind": "NFSDirectory", "server": l.Primary.NFSHost, "path": filepath.Join(p, "nest")}})
	for _, f := range []string{archive, hidden} {
		if b, err := os.ReadFile(f); err != nil || len(b) == 0 {
			t.Errorf("%s was deleted by a sync of its parent: %v", f, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(d, "nest", "inner", "disk.img")); string(b) != "inner" {
		t.Errorf("the parent sync did not copy its own data")
	}

	for _, path := range []string{
		filepath.Join(p, "nest", "archived-x-20260101T000000Z"),
		filepath.Join(p, "nest", ".ocpdr-points"),
	} {
		out, _ := l.Playbook(t.Context(), "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": nfsPV("reserved", l.Primary.NFSHost, path)})
		if !strings.Contains(out, "reserved for DR") {
			t.Errorf("PV at %s not refused as reserved:\n%s", path, tailLines(out, 15))
		}
	}
}

// The periodic sync refuses PVs whose directories contain one another.
func TestPeriodicSyncRefusesNestedPVs(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs := primaryClient(t, l)
	root := filepath.Join(l.Primary.ExportRoot, "nested-pvs")
	writeFile(t, filepath.Join(root, "outer", "disk.img"), "outer")
	writeFile(t, filepath.Join(root, "outer", "inner", "disk.img"), "inner")
	writeFile(t, filepath.Join(root, "outer-2", "disk.img"), "sibling with a common prefix")
	for name, dir := range map[string]string{"nest-outer": "outer", "nest-inner": "outer/inner", "nest-sibling": "outer-2"} {
		createPV(ctx, t, cs, name, l.Primary.NFSHost, filepath.Join(root, dir), "nfs-dynamic")
		t.Cleanup(func() { _ = cs.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{}) })
	}
	reports := t.TempDir()
	_, _ = l.Playbook(t.Context(), "playbooks/scheduled/execute_periodic_sync.yml", map[string]any{"ocpdr_report_dir": reports})
	st := statusOf(readReport(t, reports))
	for name, want := range map[string]string{"nest-outer": "refused", "nest-inner": "refused", "nest-sibling": "synced"} {
		if st[name] != want {
			t.Errorf("%s: %s, want %s", name, st[name], want)
		}
	}
}

// An empty VolumeSnapshot listing (missing RBAC, a wrong cluster) must not
// wipe the metadata at DR (issue 15.7): above the configured share the
// records are held and reported; an explicit confirmation removes them.
func TestPeriodicSyncHoldsMassDeletion(t *testing.T) {
	l := lab.Get(t)
	meta := filepath.Join(l.DR.ExportRoot, ".ocpdr-metadata", "snapshots", "hold-test")
	for i := 0; i < 4; i++ {
		writeFile(t, filepath.Join(meta, fmt.Sprintf("snap-%d.json", i)), `{"name":"snap"}`)
	}
	reports := t.TempDir()
	vars := map[string]any{"ocpdr_report_dir": reports}
	_, _ = l.Playbook(t.Context(), "playbooks/scheduled/execute_periodic_sync.yml", vars)
	held := snapshotStatuses(t, reports, "hold-test")
	if len(held) != 4 || held["snap-0"] != "held" {
		t.Fatalf("records without snapshots at the primary: %v, want 4 held", held)
	}
	if m, _ := filepath.Glob(filepath.Join(meta, "*.json")); len(m) != 4 {
		t.Fatalf("%d of 4 metadata records left after an unconfirmed mass deletion", len(m))
	}
	vars["periodic_storage_sync_confirm_deletes"] = true
	_, _ = l.Playbook(t.Context(), "playbooks/scheduled/execute_periodic_sync.yml", vars)
	if m, _ := filepath.Glob(filepath.Join(meta, "*.json")); len(m) != 0 {
		t.Errorf("confirmed deletion left %v", m)
	}
}

func snapshotStatuses(t *testing.T, dir, ns string) map[string]string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "periodic-sync-*.json"))
	if len(m) == 0 {
		t.Fatalf("no report in %s", dir)
	}
	b, err := os.ReadFile(m[len(m)-1])
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Snapshots []struct{ Namespace, Name, Status string } `json:"snapshots"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range r.Snapshots {
		if s.Namespace == ns {
			out[s.Name] = s.Status
		}
	}
	return out
}

func primaryClient(t *testing.T, l *lab.Lab) *kubernetes.Clientset {
	t.Helper()
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(rc)
}

// A DELETED event for a PV that still exists on the primary (forged or
// replayed) keeps the DR copy and fails with the reason (issue 15.12); once
// the PV is really gone the same event archives it.
func TestDeleteEventChecksThePrimary(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	cs := primaryClient(t, l)
	dir := filepath.Join(l.Primary.ExportRoot, "live-pv")
	writeFile(t, filepath.Join(dir, "disk.img"), "live data")
	pv := nfsPV("live-pv", l.Primary.NFSHost, dir)
	l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pv})
	createPV(ctx, t, cs, "live-pv", l.Primary.NFSHost, dir, "nfs-dynamic")
	drCopy := filepath.Join(l.DR.ExportRoot, "live-pv", "disk.img")

	out, err := l.Playbook(t.Context(), "playbooks/event_driven/handle_nfs_pv_delete.yml", map[string]any{"pv_object": pv})
	if err == nil || !strings.Contains(out, "still exists on the primary") {
		t.Errorf("a DELETED event for a live PV was not refused:\n%s", tailLines(out, 15))
	}
	if b, _ := os.ReadFile(drCopy); string(b) != "live data" {
		t.Fatal("the DR copy of a live PV was archived")
	}
	if err := cs.CoreV1().PersistentVolumes().Delete(ctx, "live-pv", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(ctx, t, cs, "live-pv")
	l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_delete.yml", map[string]any{"pv_object": pv})
	if _, err := os.Stat(drCopy); !os.IsNotExist(err) {
		t.Error("the DR copy is still in place after the PV was really deleted")
	}
}

func waitGone(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, name string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("PV %s not gone after 10s", name)
}

// csi-driver-nfs writes volume handles as server#share#subdir#uuid#onDelete
// with the share trimmed of its slashes; a PV that carries only the handle
// (no volumeAttributes) replicates like any other (issue 15, low).
func TestCSIHandleOnlyPV(t *testing.T) {
	l := lab.Get(t)
	p := l.Primary.ExportRoot
	writeFile(t, filepath.Join(p, "handle-only", "disk.img"), "handle only")
	for _, handle := range []string{
		l.Primary.NFSHost + "#" + strings.Trim(p, "/") + "#handle-only#8d7a0c62-9a44-4b0e-9d5b-1f0d1c1e2f3a#retain",
		l.Primary.NFSHost + "#" + strings.Trim(p, "/") + "/#handle-only",
	} {
		pv := map[string]any{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": map[string]any{"name": "handle-only"},
			"spec": map[string]any{"storageClassName": "nfs-dynamic", "csi": map[string]any{"driver": "nfs.csi.k8s.io", "volumeHandle": handle}}}
		l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pv})
		if b, _ := os.ReadFile(filepath.Join(l.DR.ExportRoot, "handle-only", "disk.img")); string(b) != "handle only" {
			t.Errorf("handle %s: not replicated", handle)
		}
		_ = os.RemoveAll(filepath.Join(l.DR.ExportRoot, "handle-only"))
	}
}
