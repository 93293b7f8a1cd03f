// Package ansible_test runs the project's playbooks with Debian's real
// ansible-playbook against the lab: real kube-apiserver, sshd and rsync.
package ansible_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

type result struct {
	out string
	err error
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameTree compares two trees byte for byte, including empty directories.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	list := func(root string) map[string]string {
		m := map[string]string{}
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if d.IsDir() {
				m[rel+"/"] = ""
				return nil
			}
			c, _ := os.ReadFile(p)
			m[rel] = string(c)
			return nil
		})
		return m
	}
	x, y := list(a), list(b)
	if len(x) == 0 {
		t.Fatalf("%s is empty or missing", a)
	}
	for k, v := range x {
		if w, ok := y[k]; !ok || w != v {
			t.Errorf("%s: DR copy differs or is missing", k)
		}
	}
	for k := range y {
		if _, ok := x[k]; !ok {
			t.Errorf("%s: extra at DR", k)
		}
	}
}

func nfsPV(name, server, path string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"storageClassName": "nfs-dynamic", "nfs": map[string]any{"server": server, "path": path}}}
}

func csiPV(name, server, share, subdir string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"storageClassName": "nfs-dynamic", "csi": map[string]any{"driver": "nfs.csi.k8s.io",
			"volumeHandle":     server + "#" + strings.TrimPrefix(share, "/") + "#" + subdir + "##",
			"volumeAttributes": map[string]any{"server": server, "share": share, "subdir": subdir}}}}
}

// PVs in both forms (spec.nfs and csi-driver-nfs) replicate byte for byte,
// a second run changes nothing, and delete archives the DR copy.
func TestEventSyncAndArchive(t *testing.T) {
	l := lab.Get(t)
	p, d := l.Primary.ExportRoot, l.DR.ExportRoot
	writeFile(t, filepath.Join(p, "ev-nfs", "disk.img"), strings.Repeat("x", 300000))
	writeFile(t, filepath.Join(p, "ev-nfs", "sub", "deep", "file"), "deep")
	_ = os.MkdirAll(filepath.Join(p, "ev-nfs", "emptydir"), 0o755)
	_ = os.Symlink("disk.img", filepath.Join(p, "ev-nfs", "link"))
	writeFile(t, filepath.Join(p, "csi-share", "pvc-123", "disk.img"), "csi data")

	for _, tc := range []struct {
		pv  map[string]any
		src string
		dst string
	}{
		{nfsPV("ev-nfs", l.Primary.NFSHost, filepath.Join(p, "ev-nfs")), filepath.Join(p, "ev-nfs"), filepath.Join(d, "ev-nfs")},
		{csiPV("ev-csi", l.Primary.NFSHost, filepath.Join(p, "csi-share"), "pvc-123"), filepath.Join(p, "csi-share", "pvc-123"), filepath.Join(d, "csi-share", "pvc-123")},
	} {
		out := l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": tc.pv})
		if !strings.Contains(out, "synced") {
			t.Errorf("output does not report synced:\n%s", tailLines(out, 20))
		}
		sameTree(t, tc.src, tc.dst)
		again := l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": tc.pv})
		if !strings.Contains(again, "changed=0") {
			t.Errorf("second sync reported changes:\n%s", tailLines(again, 5))
		}
	}
	if fi, err := os.Lstat(filepath.Join(d, "ev-nfs", "link")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink not preserved at DR: %v", err)
	}

	// Delete archives, keeping the data.
	l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_delete.yml", map[string]any{"pv_object": nfsPV("ev-nfs", l.Primary.NFSHost, filepath.Join(p, "ev-nfs"))})
	if _, err := os.Stat(filepath.Join(d, "ev-nfs")); !os.IsNotExist(err) {
		t.Fatal("DR copy still in place after delete")
	}
	matches, _ := filepath.Glob(filepath.Join(d, "archived-ev-nfs-*"))
	if len(matches) != 1 {
		t.Fatalf("archives: %v", matches)
	}
	sameTree(t, filepath.Join(p, "ev-nfs"), matches[0])
}

// Hostile or misrouted PVs are refused and nothing outside the roots is touched.
func TestHostilePVsAreRefused(t *testing.T) {
	l := lab.Get(t)
	p := l.Primary.ExportRoot
	outside := filepath.Join(l.Dir, "outside-secret")
	writeFile(t, filepath.Join(outside, "secret"), "do not copy")
	_ = os.Symlink(outside, filepath.Join(p, "escape-link"))
	canary := filepath.Join(l.Dir, "canary")
	for _, tc := range []struct{ name, server, path string }{
		{"dotdot", l.Primary.NFSHost, p + "/../outside-secret"},
		{"symlink", l.Primary.NFSHost, p + "/escape-link"},
		{"semicolon", l.Primary.NFSHost, p + "/x;touch " + canary},
		{"subshell", l.Primary.NFSHost, p + "/x$(touch " + canary + ")"},
		{"backticks", l.Primary.NFSHost, p + "/x`touch " + canary + "`"},
		{"wrong-server", "203.0.113.9", p + "/whatever"},
		{"outside-root", l.Primary.NFSHost, "/etc"},
		{"root-itself", l.Primary.NFSHost, p},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": nfsPV("hostile-"+tc.name, tc.server, tc.path)})
			if !strings.Contains(out, ": refused") {
				t.Errorf("not refused:\n%s", tailLines(out, 25))
			}
			if _, err := l.Playbook(t.Context(), "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": nfsPV("hostile-"+tc.name, tc.server, tc.path), "nfs_sync_on_event_fail_on_refused": true}); err == nil {
				t.Error("fail_on_refused did not fail the job")
			}
		})
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a shell metacharacter in a PV path was executed")
	}
	entries, _ := os.ReadDir(l.DR.ExportRoot)
	for _, e := range entries {
		if strings.Contains(e.Name(), "secret") || strings.HasPrefix(e.Name(), "x") || e.Name() == "escape-link" {
			t.Errorf("refused PV left %s at DR", e.Name())
		}
	}
}

// A missing or emptied primary directory never wipes the DR copy.
func TestEmptyOrMissingPrimaryKeepsDR(t *testing.T) {
	l := lab.Get(t)
	src := filepath.Join(l.Primary.ExportRoot, "guard")
	writeFile(t, filepath.Join(src, "disk.img"), "precious")
	pv := nfsPV("guard", l.Primary.NFSHost, src)
	l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pv})
	dst := filepath.Join(l.DR.ExportRoot, "guard", "disk.img")
	if err := os.Remove(filepath.Join(src, "disk.img")); err != nil {
		t.Fatal(err)
	}
	out := l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pv})
	if !strings.Contains(out, "empty while the DR copy") {
		t.Errorf("empty primary not refused:\n%s", tailLines(out, 20))
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	out = l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pv})
	if !strings.Contains(out, "is missing") {
		t.Errorf("missing primary not refused:\n%s", tailLines(out, 20))
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "precious" {
		t.Fatalf("DR copy damaged: %q %v", b, err)
	}
}

// Two syncs of one directory at once are serialised by the directory lock:
// both succeed and the result is a complete copy.
func TestConcurrentSyncsDoNotInterleave(t *testing.T) {
	l := lab.Get(t)
	src := filepath.Join(l.Primary.ExportRoot, "conc")
	for i := 0; i < 200; i++ {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%03d", i)), strings.Repeat(fmt.Sprint(i), 2000))
	}
	pv := nfsPV("conc", l.Primary.NFSHost, src)
	var wg sync.WaitGroup
	res := make([]result, 2)
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := l.Playbook(t.Context(), "playbooks/event_driven/handle_nfs_pv_sync.yml", map[string]any{"pv_object": pv})
			res[i] = result{out, err}
		}(i)
	}
	wg.Wait()
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("sync %d failed: %v\n%s", i, r.err, tailLines(r.out, 20))
		}
	}
	sameTree(t, src, filepath.Join(l.DR.ExportRoot, "conc"))
	lock := filepath.Join(l.DR.ExportRoot, ".ocpdr-locks", "conc.lock")
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("no lock file at %s: %v", lock, err)
	}
}

// Snapshot metadata documents appear when a snapshot is ready and go away
// when it is deleted.
func TestSnapshotMetadata(t *testing.T) {
	l := lab.Get(t)
	vs := map[string]any{"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": "snap-a", "namespace": "ns-a", "uid": "uid-snap-a"},
		"spec":     map[string]any{"source": map[string]any{"persistentVolumeClaimName": "disk"}, "volumeSnapshotClassName": "csi-nfs"},
		"status":   map[string]any{"readyToUse": true, "restoreSize": "10Gi", "boundVolumeSnapshotContentName": "snapcontent-1"}}
	doc := filepath.Join(l.DR.ExportRoot, ".ocpdr-metadata", "snapshots", "ns-a", "snap-a.json")
	l.MustPlaybook(t, "playbooks/event_driven/handle_snapshot_sync.yml", map[string]any{"snapshot_object": vs})
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"uid": "uid-snap-a", "sourcePVC": "disk", "restoreSize": "10Gi", "readyToUse": true, "boundVolumeSnapshotContentName": "snapcontent-1"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	again := l.MustPlaybook(t, "playbooks/event_driven/handle_snapshot_sync.yml", map[string]any{"snapshot_object": vs})
	if !strings.Contains(again, "changed=0") {
		t.Errorf("re-recording an unchanged snapshot reported a change")
	}
	l.MustPlaybook(t, "playbooks/event_driven/handle_snapshot_delete.yml", map[string]any{"snapshot_object": vs})
	if _, err := os.Stat(doc); !os.IsNotExist(err) {
		t.Fatal("metadata still present after delete")
	}
	if out, err := l.Playbook(t.Context(), "playbooks/event_driven/handle_snapshot_sync.yml", map[string]any{"snapshot_object": map[string]any{"kind": "PersistentVolume"}}); err == nil ||
		!strings.Contains(out, "needs snapshot_object") {
		t.Errorf("a wrong object was not rejected with a clear message:\n%s", tailLines(out, 10))
	}
}

func createPV(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, name, server, path, class string) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: server, Path: path}},
		},
	}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type report struct {
	Result  string           `json:"result"`
	Summary map[string]any   `json:"summary"`
	Volumes []map[string]any `json:"volumes"`
	Orphans []map[string]any `json:"orphans"`
}

func readReport(t *testing.T, dir string) report {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "periodic-sync-*.json"))
	if len(m) == 0 {
		t.Fatalf("no report in %s", dir)
	}
	newest := m[len(m)-1]
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	md := strings.TrimSuffix(newest, ".json") + ".md"
	if _, err := os.Stat(md); err != nil {
		t.Errorf("no Markdown report beside %s", newest)
	}
	return r
}

func statusOf(r report) map[string]string {
	m := map[string]string{}
	for _, v := range r.Volumes {
		m[fmt.Sprint(v["name"])] = fmt.Sprint(v["status"])
	}
	return m
}

// The periodic sync over 50 PVs: everything synced; after data and objects
// change behind its back, the report says exactly what happened; check mode
// changes nothing.
func TestPeriodicSync(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	root := filepath.Join(l.Primary.ExportRoot, "periodic")
	for i := 0; i < 50; i++ {
		dir := filepath.Join(root, fmt.Sprintf("vol%02d", i))
		for j := 0; j < 5; j++ {
			writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d", j)), fmt.Sprintf("%d-%d", i, j))
		}
		createPV(ctx, t, cs, fmt.Sprintf("per-%02d", i), l.Primary.NFSHost, dir, "nfs-dynamic")
	}
	// Not an NFS class: ignored by the periodic sync.
	createPV(ctx, t, cs, "per-other-class", l.Primary.NFSHost, filepath.Join(root, "other"), "local-path")
	reports := t.TempDir()
	vars := map[string]any{"ocpdr_report_dir": reports}
	start := time.Now()
	l.MustPlaybook(t, "playbooks/scheduled/execute_periodic_sync.yml", vars)
	t.Logf("first periodic sync of 50 PVs: %s", time.Since(start))
	r := readReport(t, reports)
	st := statusOf(r)
	for i := 0; i < 50; i++ {
		if s := st[fmt.Sprintf("per-%02d", i)]; s != "synced" {
			t.Errorf("per-%02d: %s", i, s)
		}
	}
	if _, ok := st["per-other-class"]; ok {
		t.Error("a PV of another storage class was synced")
	}
	sameTree(t, filepath.Join(root, "vol07"), filepath.Join(l.DR.ExportRoot, "periodic", "vol07"))

	// Behind its back: change data, add a PV, delete a PV object, add an orphan.
	writeFile(t, filepath.Join(root, "vol03", "f0"), "changed behind the event path")
	writeFile(t, filepath.Join(root, "vol50", "new"), "new volume")
	createPV(ctx, t, cs, "per-50", l.Primary.NFSHost, filepath.Join(root, "vol50"), "nfs-dynamic")
	if err := cs.CoreV1().PersistentVolumes().Delete(ctx, "per-10", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(l.DR.ExportRoot, "stray", "x"), "orphan")

	// Check mode first: nothing changes at DR.
	before, _ := os.ReadFile(filepath.Join(l.DR.ExportRoot, "periodic", "vol03", "f0"))
	l.MustPlaybook(t, "playbooks/scheduled/execute_periodic_sync.yml", vars, "--check")
	after, _ := os.ReadFile(filepath.Join(l.DR.ExportRoot, "periodic", "vol03", "f0"))
	if !bytes.Equal(before, after) {
		t.Fatal("check mode changed data at DR")
	}
	if _, err := os.Stat(filepath.Join(l.DR.ExportRoot, "periodic", "vol50")); err == nil {
		t.Fatal("check mode created a directory at DR")
	}

	time.Sleep(1100 * time.Millisecond) // distinct report timestamp
	l.MustPlaybook(t, "playbooks/scheduled/execute_periodic_sync.yml", vars)
	r = readReport(t, reports)
	st = statusOf(r)
	if st["per-50"] != "synced" || st["per-03"] != "synced" {
		t.Errorf("new and changed PVs: per-50=%s per-03=%s", st["per-50"], st["per-03"])
	}
	if _, ok := st["per-10"]; ok {
		t.Error("a deleted PV was still synced")
	}
	for _, v := range r.Volumes {
		if v["name"] == "per-03" && fmt.Sprint(v["files_transferred"]) != "1" {
			t.Errorf("per-03 moved %v files, want 1", v["files_transferred"])
		}
		if v["name"] == "per-04" && fmt.Sprint(v["files_transferred"]) != "0" {
			t.Errorf("unchanged per-04 moved %v files", v["files_transferred"])
		}
	}
	sameTree(t, filepath.Join(root, "vol03"), filepath.Join(l.DR.ExportRoot, "periodic", "vol03"))
	orphanSeen := false
	for _, o := range r.Orphans {
		if strings.HasSuffix(fmt.Sprint(o["path"]), "/stray") {
			orphanSeen = true
		}
	}
	if !orphanSeen {
		t.Errorf("orphan not reported: %v", r.Orphans)
	}
	if r.Result != "ok" {
		t.Errorf("result %q, want ok", r.Result)
	}
}

// group_vars/all.yml applies whichever inventory is used (here the lab's,
// which lives elsewhere): its default storage class list reaches the play.
func TestGroupVarsApplyWithAnyInventory(t *testing.T) {
	l := lab.Get(t)
	root, _ := lab.RepoRoot()
	pb := filepath.Join(root, "playbooks", "scheduled", "zz-groupvars-probe.yml")
	if err := os.WriteFile(pb, []byte("---\n- name: Probe\n  hosts: ocp_primary\n  gather_facts: false\n  tasks:\n    - name: Show\n      ansible.builtin.debug:\n        msg: \"classes={{ ocpdr_nfs_storage_classes | join(',') }} par={{ ocpdr_sync_parallelism }}\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pb)
	out := l.MustPlaybook(t, pb, map[string]any{})
	if !strings.Contains(out, "classes=nfs-dynamic par=8") {
		t.Fatalf("group_vars/all.yml did not apply:\n%s", tailLines(out, 15))
	}
}
