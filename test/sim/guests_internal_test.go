package sim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

func u(apiVersion, kind, ns, name string, fields map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if ns != "" {
		md["namespace"] = ns
	}
	obj := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md}
	for k, v := range fields {
		obj[k] = v
	}
	return &unstructured.Unstructured{Object: obj}
}

func TestUnderRoot(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, root, dir, wantErr string
	}{
		{"inside", root, root + "/ns-pvc", ""},
		{"nested", root, root + "/a/b", ""},
		{"the root itself", root, root, ""},
		{"outside", root, outside + "/x", "outside the export root"},
		{"dot-dot", root, root + "/../x", "outside the export root"},
		{"relative", root, "ns-pvc", "not absolute"},
		{"symbolic link out", root, root + "/escape/x", "resolves to"},
		{"no root", "", root + "/x", "no export root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := underRoot(tc.root, tc.dir)
			if tc.wantErr == "" {
				if err != nil || !strings.HasPrefix(got, root) {
					t.Fatalf("underRoot = %q, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("underRoot = %q, %v; want error %q", got, err, tc.wantErr)
			}
		})
	}
}

func TestPVPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec map[string]any
		want string
	}{
		{"nfs", map[string]any{"nfs": map[string]any{"server": "h", "path": "/exp/a"}}, "/exp/a"},
		{"csi share+subdir", map[string]any{"csi": map[string]any{"driver": "nfs.csi.k8s.io", "volumeAttributes": map[string]any{"share": "/exp", "subdir": "b"}}}, "/exp/b"},
		{"csi share", map[string]any{"csi": map[string]any{"volumeAttributes": map[string]any{"share": "/exp"}}}, "/exp"},
		{"neither", map[string]any{"hostPath": map[string]any{"path": "/x"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pvPath(u("v1", "PersistentVolume", "", "pv", map[string]any{"spec": tc.spec}))
			if got != tc.want || (err != nil) != (tc.want == "") {
				t.Fatalf("pvPath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestWriterOptions(t *testing.T) {
	o, err := writerOptions("/d", map[string]string{AnnotationGuestSize: "16Mi", AnnotationGuestRecords: "64", AnnotationGuestInterval: "50ms"}, zaptest.NewLogger(t))
	if err != nil || o.Size != 16<<20 || o.Records != 64 || o.Interval != 50*time.Millisecond {
		t.Fatalf("writerOptions = %+v, %v", o, err)
	}
	if _, err := writerOptions("/d", map[string]string{AnnotationGuestInterval: "often"}, zaptest.NewLogger(t)); err == nil {
		t.Fatal("a bad interval was accepted")
	}
}

// The KubeVirt controller starts a writer for a Running VM that opts in,
// none for one that does not, and stops it when the VM halts.
func TestKubeVirtRunsGuests(t *testing.T) {
	root := t.TempDir()
	vmSpec := func(strategy string) map[string]any {
		return map[string]any{"runStrategy": strategy, "template": map[string]any{"spec": map[string]any{"volumes": []any{
			map[string]any{"name": "root", "dataVolume": map[string]any{"name": "pvc1"}}}}}}
	}
	vm := u("kubevirt.io/v1", "VirtualMachine", "ns", "vm1", map[string]any{"spec": vmSpec("Always")})
	vm.SetAnnotations(map[string]string{AnnotationGuest: "writer", AnnotationGuestSize: "1Mi", AnnotationGuestRecords: "16", AnnotationGuestInterval: "20ms"})
	plain := u("kubevirt.io/v1", "VirtualMachine", "ns", "plain", map[string]any{"spec": vmSpec("Always")})
	pvc := u("v1", "PersistentVolumeClaim", "ns", "pvc1", map[string]any{"spec": map[string]any{"volumeName": "pv1"}, "status": map[string]any{"phase": "Bound"}})
	pv := u("v1", "PersistentVolume", "", "pv1", map[string]any{"spec": map[string]any{"nfs": map[string]any{"path": root + "/ns-pvc1"}}, "status": map[string]any{"phase": "Bound"}})
	dc := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{GVRVM: "VirtualMachineList"}, vm, plain, pvc, pv)
	g := &Guests{Root: root, Log: zaptest.NewLogger(t)}
	defer func() { _ = g.StopAll() }()
	k := &KubeVirt{Clusters: map[string]dynamic.Interface{"primary": dc}, Log: zaptest.NewLogger(t), Guests: g}
	ctx := context.Background()
	if err := k.reconcile(ctx, "primary", dc); err != nil {
		t.Fatal(err)
	}
	ws := g.Writers("ns", "vm1")
	if len(ws) != 1 || ws[0].Path() != filepath.Join(root, "ns-pvc1", DiskImage) || len(g.Writers("ns", "plain")) != 0 {
		t.Fatalf("writers: vm1 %v, plain %v", ws, g.Writers("ns", "plain"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for ws[0].Status().Generation < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	halted := vm.DeepCopy()
	halted.Object["spec"] = vmSpec("Halted")
	if _, err := dc.Resource(GVRVM).Namespace("ns").Update(ctx, halted, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.reconcile(ctx, "primary", dc); err != nil {
		t.Fatal(err)
	}
	if len(g.Writers("ns", "vm1")) != 0 || !ws[0].Status().Stopped {
		t.Fatalf("writer of the halted VM still runs: %+v", ws[0].Status())
	}
	if res, err := guest.Check(ws[0].Path()); err != nil || res.Level != guest.ApplicationConsistent || res.Commit < 2 {
		t.Fatalf("Check after the VM halted = %v, %v", res, err)
	}
}
