package sim_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

const guestNS = "simguest"

// guestVM creates a PV (an NFS directory under the primary export root), its
// PVC and a VM opted into a simulated guest, and returns the disk image.
func guestVM(ctx context.Context, t *testing.T, l *lab.Lab, p dynamic.Interface, name string, annotations map[string]string) string {
	t.Helper()
	dir := filepath.Join(l.Primary.ExportRoot, guestNS+"-"+name)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	must(p.Resource(sim.GVRPV).Create(ctx, obj("v1", "PersistentVolume", "", name+"-pv", map[string]any{
		"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic",
		"nfs":      map[string]any{"server": l.Primary.NFSHost, "path": dir},
		"claimRef": map[string]any{"namespace": guestNS, "name": name + "-disk"},
	}), metav1.CreateOptions{}))
	must(p.Resource(sim.GVRPVC).Namespace(guestNS).Create(ctx, obj("v1", "PersistentVolumeClaim", guestNS, name+"-disk", map[string]any{
		"accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic", "volumeName": name + "-pv",
		"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}},
	}), metav1.CreateOptions{}))
	vm := obj("kubevirt.io/v1", "VirtualMachine", guestNS, name, map[string]any{
		"runStrategy": "Always",
		"template": map[string]any{"spec": map[string]any{"volumes": []any{
			map[string]any{"name": "root", "persistentVolumeClaim": map[string]any{"claimName": name + "-disk"}}}}},
	})
	ann := map[string]string{sim.AnnotationGuest: "writer", sim.AnnotationGuestSize: "16Mi", sim.AnnotationGuestRecords: "256"}
	for k, v := range annotations {
		ann[k] = v
	}
	vm.SetAnnotations(ann)
	must(p.Resource(sim.GVRVM).Namespace(guestNS).Create(ctx, vm, metav1.CreateOptions{}))
	return filepath.Join(dir, sim.DiskImage)
}

type vmiClient struct {
	rc rest.Interface
}

func (c vmiClient) put(ctx context.Context, name, sub, body string) error {
	req := c.rc.Put().AbsPath("/apis/subresources.kubevirt.io/v1/namespaces", guestNS, "virtualmachineinstances", name, sub)
	if body != "" {
		req = req.SetHeader("Content-Type", "application/json").Body([]byte(body))
	}
	return req.Do(ctx).Error()
}

// commitOf returns the image's committed generation once it checks
// consistent.
func commitOf(t *testing.T, path string) uint64 {
	t.Helper()
	res, err := guest.Check(path)
	if err != nil {
		t.Fatalf("check %s: %v", path, err)
	}
	return res.Commit
}

func fingerprint(t *testing.T, path string) (time.Time, [32]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return st.ModTime(), [32]byte(h.Sum(nil))
}

func copyImage(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), "copy.img")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	return dst
}

// waitWriting waits until the image's committed generation passes after.
func waitWriting(ctx context.Context, t *testing.T, path string, after uint64) {
	t.Helper()
	waitFor(ctx, t, "the guest writing", func() string {
		res, err := guest.Check(path)
		if err != nil {
			return err.Error()
		}
		if res.Commit <= after+1 {
			return fmt.Sprintf("still at generation %d (frozen at %d)", res.Commit, after)
		}
		return ""
	})
}

// The simulated virt-api, registered as an aggregated API in the primary's
// real kube-apiserver, freezes a simulated guest: the guest stops writing, a
// copy made meanwhile is application-consistent, and it writes again after
// unfreeze or, by itself, after the unfreezeTimeout.
func TestGuestFreezeThroughAPIServer(t *testing.T) {
	l := lab.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	api, err := sim.StartGuestAPI(ctx, cfg, l.Primary.ExportRoot, log)
	if err != nil {
		t.Fatal(err)
	}
	p := dyn(t, &l.Primary)
	kctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		(&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"primary": p}, Log: log, Guests: api.Guests}).Run(kctx, 100*time.Millisecond)
	})
	defer func() {
		stop()
		wg.Wait()
		if err := api.Close(context.Background()); err != nil {
			t.Errorf("close guest API: %v", err)
		}
	}()
	cs := kubernetes.NewForConfigOrDie(cfg)
	vmi := vmiClient{rc: cs.CoreV1().RESTClient()}

	if _, err := p.Resource(sim.GVRNamespace).Create(ctx, obj("v1", "Namespace", "", guestNS, nil), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	disk := guestVM(ctx, t, l, p, "app", nil)
	guestVM(ctx, t, l, p, "noagent", map[string]string{sim.AnnotationGuestAgent: "false"})

	checkDiscovery(t, cs)
	waitFor(ctx, t, "the guest's first generations", func() string {
		if res, err := guest.Check(disk); err != nil || res.Commit < 3 {
			return "not yet: " + res.String() + " " + errString(err)
		}
		return ""
	})

	t.Run("freeze and unfreeze", func(t *testing.T) { freezeUnfreeze(ctx, t, api, vmi, disk) })
	t.Run("refusals", func(t *testing.T) { refusals(ctx, t, api, vmi) })
	t.Run("unfreezeTimeout watchdog", func(t *testing.T) { watchdog(ctx, t, api, vmi, disk) })
	t.Run("halt stops the guest", func(t *testing.T) { halt(ctx, t, api, p, disk) })
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func checkDiscovery(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	rl, err := cs.Discovery().ServerResourcesForGroupVersion("subresources.kubevirt.io/v1")
	if err != nil {
		t.Fatalf("discovery through the API server: %v", err)
	}
	var names []string
	for _, r := range rl.APIResources {
		names = append(names, r.Name)
	}
	if !slices.Contains(names, "virtualmachineinstances/freeze") || !slices.Contains(names, "virtualmachineinstances/unfreeze") {
		t.Fatalf("discovery lists %v", names)
	}
}

func freezeUnfreeze(ctx context.Context, t *testing.T, api *sim.GuestAPI, vmi vmiClient, disk string) {
	if err := vmi.put(ctx, "app", "freeze", `{"unfreezeTimeout":"60s"}`); err != nil {
		t.Fatalf("freeze: %v", err)
	}
	m1, h1 := fingerprint(t, disk)
	time.Sleep(300 * time.Millisecond)
	if m2, h2 := fingerprint(t, disk); !m1.Equal(m2) || h1 != h2 {
		t.Fatalf("the frozen guest wrote (mtime %v -> %v)", m1, m2)
	}
	res, err := guest.Check(copyImage(t, disk))
	if err != nil || res.Level != guest.ApplicationConsistent {
		t.Fatalf("copy made while frozen: %v, %v", res, err)
	}
	if err := vmi.put(ctx, "app", "freeze", `{"unfreezeTimeout":"60s"}`); err != nil { // idempotent
		t.Fatalf("second freeze: %v", err)
	}
	fl := api.Server.FreezeLog(guestNS, "app")
	if !fl.Frozen || fl.Freezes != 1 || fl.Requests != 2 || len(fl.Disks) != 1 || fl.Events[0].User != "admin" {
		t.Fatalf("freeze log while frozen: %+v", fl)
	}
	if err := vmi.put(ctx, "app", "unfreeze", ""); err != nil {
		t.Fatalf("unfreeze: %v", err)
	}
	waitWriting(ctx, t, disk, res.Commit)
	if fl := api.Server.FreezeLog(guestNS, "app"); fl.Frozen || fl.Thaws != 1 || len(fl.Durations) != 1 {
		t.Fatalf("freeze log after unfreeze: %+v", fl)
	}
}

func refusals(ctx context.Context, t *testing.T, api *sim.GuestAPI, vmi vmiClient) {
	for _, tc := range []struct {
		name, vm, sub, body string
		is                  func(error) bool
		msg                 string
	}{
		{"no guest agent", "noagent", "freeze", `{"unfreezeTimeout":"60s"}`, apierrors.IsConflict, "VMI does not have guest agent connected"},
		{"no such VMI", "nope", "freeze", `{"unfreezeTimeout":"60s"}`, apierrors.IsNotFound, "not found"},
		{"no unfreezeTimeout", "app", "freeze", `{}`, apierrors.IsBadRequest, "Unfreeze timeout is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := vmi.put(ctx, tc.vm, tc.sub, tc.body)
			if !tc.is(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("%s %s: %v; want %q", tc.sub, tc.vm, err, tc.msg)
			}
		})
	}
	if fl := api.Server.FreezeLog(guestNS, "noagent"); fl.Refused != 1 || fl.Freezes != 0 {
		t.Fatalf("freeze log of noagent: %+v", fl)
	}
}

func watchdog(ctx context.Context, t *testing.T, api *sim.GuestAPI, vmi vmiClient, disk string) {
	if err := vmi.put(ctx, "app", "freeze", `{"unfreezeTimeout":"1s"}`); err != nil {
		t.Fatalf("freeze: %v", err)
	}
	frozenAt := commitOf(t, disk)
	waitWriting(ctx, t, disk, frozenAt)
	fl := api.Server.FreezeLog(guestNS, "app")
	if fl.Frozen || fl.AutoThaws != 1 || fl.Durations[len(fl.Durations)-1].Duration < time.Second {
		t.Fatalf("freeze log after the watchdog: %+v", fl)
	}
}

func halt(ctx context.Context, t *testing.T, api *sim.GuestAPI, p dynamic.Interface, disk string) {
	vm, err := p.Resource(sim.GVRVM).Namespace(guestNS).Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(vm.Object, "Halted", "spec", "runStrategy"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Resource(sim.GVRVM).Namespace(guestNS).Update(ctx, vm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the halted VM's guest to stop", func() string {
		if n := len(api.Guests.Writers(guestNS, "app")); n > 0 {
			return "writers still running"
		}
		return ""
	})
	if res, err := guest.Check(disk); err != nil || res.Level != guest.ApplicationConsistent {
		t.Fatalf("disk of the halted VM: %v, %v", res, err)
	}
}
