package ansible_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// pushVars selects the push direction and makes the pull direction
// impossible (the DR host cannot reach the primary's SSH port), so a success
// proves the data went from the primary to DR.
func pushVars(extra map[string]any) map[string]any {
	v := map[string]any{"ocpdr_sync_direction": "push", "ocpdr_primary_ssh_port": 1}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// With ocpdr_sync_direction: push, the same PVs replicate byte for byte from
// the primary NFS host, a second run changes nothing, --check changes
// nothing, the same validation refuses hostile paths (on both sides), and
// the periodic sync pushes too.
func TestPushDirection(t *testing.T) {
	l := lab.Get(t)
	p, d := l.Primary.ExportRoot, l.DR.ExportRoot
	writeFile(t, filepath.Join(p, "push-nfs", "disk.img"), strings.Repeat("p", 200000))
	writeFile(t, filepath.Join(p, "push-nfs", "sub", "file"), "sub")
	writeFile(t, filepath.Join(p, "push-share", "pvc-9", "disk.img"), "csi pushed")
	for _, tc := range []struct {
		pv       map[string]any
		src, dst string
	}{
		{nfsPV("push-nfs", l.Primary.NFSHost, filepath.Join(p, "push-nfs")), filepath.Join(p, "push-nfs"), filepath.Join(d, "push-nfs")},
		{csiPV("push-csi", l.Primary.NFSHost, filepath.Join(p, "push-share"), "pvc-9"), filepath.Join(p, "push-share", "pvc-9"), filepath.Join(d, "push-share", "pvc-9")},
	} {
		out := l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", pushVars(map[string]any{"pv_object": tc.pv}))
		if !strings.Contains(out, ": synced") || !strings.Contains(out, "Push the data from the primary NFS server") {
			t.Errorf("push sync not reported:\n%s", tailLines(out, 25))
		}
		sameTree(t, tc.src, tc.dst)
		again := l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", pushVars(map[string]any{"pv_object": tc.pv}))
		if !strings.Contains(again, "changed=0") {
			t.Errorf("second push reported changes:\n%s", tailLines(again, 5))
		}
	}
	// --check: a changed file stays unchanged at DR.
	writeFile(t, filepath.Join(p, "push-nfs", "sub", "file"), "changed on the primary")
	l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", pushVars(map[string]any{"pv_object": nfsPV("push-nfs", l.Primary.NFSHost, filepath.Join(p, "push-nfs"))}), "--check")
	if b, _ := os.ReadFile(filepath.Join(d, "push-nfs", "sub", "file")); string(b) != "sub" {
		t.Errorf("--check pushed the change: DR has %q", b)
	}

	// Validation is the same code: hostile primary paths, and a DR-side
	// symlink that would lead the push outside the DR export root.
	outside := filepath.Join(l.Dir, "push-outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Symlink(outside, filepath.Join(d, "push-dr-escape"))
	writeFile(t, filepath.Join(p, "push-dr-escape", "disk.img"), "must not land outside DR")
	canary := filepath.Join(l.Dir, "push-canary")
	for _, tc := range []struct{ name, path, reason string }{
		{"dotdot", p + "/../outside-secret", "'..'"},
		{"semicolon", p + "/x;touch " + canary, "metacharacters"},
		{"dr-symlink", p + "/push-dr-escape", "resolves outside the DR export root"},
	} {
		out := l.MustPlaybook(t, "playbooks/event_driven/handle_nfs_pv_sync.yml", pushVars(map[string]any{"pv_object": nfsPV("push-"+tc.name, l.Primary.NFSHost, tc.path)}))
		if !strings.Contains(out, ": refused") || !strings.Contains(out, tc.reason) {
			t.Errorf("%s: not refused with %q:\n%s", tc.name, tc.reason, tailLines(out, 25))
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a shell metacharacter in a PV path was executed")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the push wrote outside the DR export root: %v", entries)
	}

	// The periodic sync pushes the data and still does its DR-side work.
	ctx := context.Background()
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	for i := 0; i < 3; i++ {
		dir := filepath.Join(p, "push-periodic", fmt.Sprintf("vol%d", i))
		writeFile(t, filepath.Join(dir, "data"), fmt.Sprintf("periodic push %d", i))
		createPV(ctx, t, cs, fmt.Sprintf("push-per-%d", i), l.Primary.NFSHost, dir, "nfs-dynamic")
	}
	reports := t.TempDir()
	out := l.MustPlaybook(t, "playbooks/scheduled/execute_periodic_sync.yml", pushVars(map[string]any{"ocpdr_report_dir": reports}))
	st := statusOf(readReport(t, reports))
	for i := 0; i < 3; i++ {
		if s := st[fmt.Sprintf("push-per-%d", i)]; s != "synced" {
			t.Errorf("push-per-%d: %q\n%s", i, s, tailLines(out, 30))
		}
	}
	sameTree(t, filepath.Join(p, "push-periodic", "vol1"), filepath.Join(d, "push-periodic", "vol1"))
}
