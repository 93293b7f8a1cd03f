// Package consistency tests recovery points end to end on the lab: simulated
// guests write into their VM disks on the primary NFS host while the shipped
// playbooks freeze them through the primary's kube-apiserver, clone the PV
// directories, sync from the clone and keep points at DR; the guest's checker
// then says whether each DR copy is torn.
package consistency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
	"github.com/ocpv-dr/ocpv-dr/test/sim/virtapi"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

const ns = "points"

const syncPlaybook = "playbooks/event_driven/handle_nfs_pv_sync.yml"

type env struct {
	l   *lab.Lab
	p   dynamic.Interface
	api *sim.GuestAPI
	ns  string // the namespace of the env's VMs, PVCs and PV directories (<ns>-<disk>)
}

// start runs the guest API and the simulated KubeVirt (with writers) for
// the test's duration.
func start(t testing.TB) *env {
	t.Helper()
	return startIn(t, ns)
}

// startIn is start with the VMs in namespace namespace.
func startIn(t testing.TB, namespace string) *env {
	t.Helper()
	l := lab.Get(t)
	if !l.Primary.Reflink || !l.DR.Reflink {
		t.Skip("recovery points need the lab's XFS reflink export roots (run as root)")
	}
	cfg, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	api, err := sim.StartGuestAPI(t.Context(), cfg, l.Primary.ExportRoot, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		(&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"primary": p}, Log: log, Guests: api.Guests}).Run(ctx, 100*time.Millisecond)
	})
	t.Cleanup(func() {
		stop()
		wg.Wait()
		if err := api.Close(context.Background()); err != nil {
			t.Errorf("close guest API: %v", err)
		}
	})
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": namespace}}}
	if _, err := p.Resource(sim.GVRNamespace).Create(t.Context(), nsObj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return &env{l: l, p: p, api: api, ns: namespace}
}

func object(apiVersion, kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if namespace != "" {
		md["namespace"] = namespace
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md, "spec": spec}}
}

// vm creates a PV, its PVC and a running VM with a simulated guest writing
// into <PV dir>/disk.img, waits for the guest's first generations and
// returns the PV as the forwarder would post it.
func (e *env) vm(t testing.TB, name string, ann map[string]string) map[string]any {
	t.Helper()
	return e.vmDisks(t, name, 1, ann)[0]
}

// vmDisks is vm with n disks (PV directories <ns>-<name>, <ns>-<name>-2, ...),
// each written by the guest; it returns their PVs.
func (e *env) vmDisks(t testing.TB, name string, n int, ann map[string]string) []map[string]any {
	t.Helper()
	ctx := t.Context()
	var vols []any
	for i := 1; i <= n; i++ {
		disk := diskName(name, i)
		e.disk(t, disk)
		vols = append(vols, map[string]any{"name": fmt.Sprintf("disk%d", i), "persistentVolumeClaim": map[string]any{"claimName": disk + "-disk"}})
	}
	vm := object("kubevirt.io/v1", "VirtualMachine", e.ns, name, map[string]any{
		"runStrategy": "Always",
		"template":    map[string]any{"spec": map[string]any{"volumes": vols}},
	})
	a := map[string]string{sim.AnnotationGuest: "writer", sim.AnnotationGuestSize: "16Mi", sim.AnnotationGuestRecords: "256"}
	for k, v := range ann {
		a[k] = v
	}
	vm.SetAnnotations(a)
	if _, err := e.p.Resource(sim.GVRVM).Namespace(e.ns).Create(ctx, vm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VirtualMachine %s: %v", name, err)
	}
	var pvs []map[string]any
	for i := 1; i <= n; i++ {
		disk := diskName(name, i)
		e.boundAndWriting(t, name, filepath.Join(e.l.Primary.ExportRoot, e.ns+"-"+disk, sim.DiskImage))
		pv, err := e.p.Resource(sim.GVRPV).Get(ctx, disk+"-pv", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvs = append(pvs, pv.Object)
	}
	return pvs
}

// diskName names a VM's i-th disk: the VM's name for the first.
func diskName(vm string, i int) string {
	if i == 1 {
		return vm
	}
	return fmt.Sprintf("%s-%d", vm, i)
}

// disk creates the PV <disk>-pv on <ns>-<disk> and its PVC <disk>-disk.
func (e *env) disk(t testing.TB, disk string) {
	t.Helper()
	ctx := t.Context()
	dir := filepath.Join(e.l.Primary.ExportRoot, e.ns+"-"+disk)
	create := func(res dynamic.ResourceInterface, o *unstructured.Unstructured) {
		t.Helper()
		if _, err := res.Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	create(e.p.Resource(sim.GVRPV), object("v1", "PersistentVolume", "", disk+"-pv", map[string]any{
		"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic",
		"nfs":      map[string]any{"server": e.l.Primary.NFSHost, "path": dir},
		"claimRef": map[string]any{"namespace": e.ns, "name": disk + "-disk"},
	}))
	create(e.p.Resource(sim.GVRPVC).Namespace(e.ns), object("v1", "PersistentVolumeClaim", e.ns, disk+"-disk", map[string]any{
		"accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic", "volumeName": disk + "-pv",
		"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}},
	}))
}

// boundAndWriting waits until the PVC is Bound (the lab's
// kube-controller-manager binds it) and the guest has committed a few
// generations.
func (e *env) boundAndWriting(t testing.TB, name, disk string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := guest.Check(disk)
		if err == nil && res.Commit >= 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest of %s never wrote %s: %v (%s)", name, disk, err, res.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type manifest struct {
	PV          string   `json:"pv"`
	Time        string   `json:"time"`
	Consistency string   `json:"consistency"`
	Source      string   `json:"source"`
	VMs         []string `json:"vms"`
	Frozen      []string `json:"frozen"`
	path        string
}

// points lists the DR points of the PV directory rel, oldest first.
func (e *env) points(t testing.TB, rel string) []manifest {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.l.DR.ExportRoot, ".ocpdr-points", rel, "*", "manifest.json"))
	var out []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m.path = filepath.Dir(f)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	return out
}

func (e *env) sync(t testing.TB, pv map[string]any, extra ...string) string {
	t.Helper()
	return e.l.MustPlaybook(t, syncPlaybook, map[string]any{"pv_object": pv}, extra...)
}

// With the guest writing, an event sync freezes it through the API server
// (only for the clone), and every point it keeps at DR is
// application-consistent by the guest's own checker; a second sync keeps a
// second, newer point and leaves the first one as it was.
func TestEventSyncKeepsApplicationConsistentPoints(t *testing.T) {
	e := start(t)
	pv := e.vm(t, "app", nil)
	rel := ns + "-app"
	for i := 1; i <= 2; i++ {
		e.sync(t, pv)
		pts := e.points(t, rel)
		if len(pts) != i {
			t.Fatalf("after sync %d: %d points at DR, want %d", i, len(pts), i)
		}
		last := pts[len(pts)-1]
		if last.Consistency != "application-consistent" || last.Source != "capture" {
			t.Fatalf("point %s: consistency %q source %q, want application-consistent from a capture", last.Time, last.Consistency, last.Source)
		}
		res, err := guest.Check(filepath.Join(last.path, "data", sim.DiskImage))
		if err != nil || res.Level != guest.ApplicationConsistent {
			t.Fatalf("point %s: %v %v, want application-consistent", last.Time, res.Level, err)
		}
	}
	log := e.api.Server.FreezeLog(ns, "app")
	if log.Freezes < 2 || log.Frozen {
		t.Fatalf("freeze log: %d freezes, frozen now %v; want 2 freezes, thawed", log.Freezes, log.Frozen)
	}
	for _, d := range log.Durations {
		if d.Duration > 10*time.Second {
			t.Errorf("a freeze lasted %s: it must span the clone only", d)
		}
	}
}

// The control: the same guest copied live (capture forced off, a slow link)
// gives a DR copy the checker finds torn, and the point is labelled
// inconsistent. This proves the checker and the labels can fail.
func TestLiveCopyIsTornAndLabelledInconsistent(t *testing.T) {
	e := start(t)
	pv := e.vm(t, "live", map[string]string{sim.AnnotationGuestInterval: "50ms"})
	e.sync(t, pv, "-e", "ocpdr_capture_method=none", "-e", "ocpdr_rsync_bwlimit=1500")
	pts := e.points(t, ns+"-live")
	if len(pts) != 1 || pts[0].Consistency != "inconsistent" {
		t.Fatalf("points %+v: want one labelled inconsistent", pts)
	}
	_, err := guest.Check(filepath.Join(e.l.DR.ExportRoot, ns+"-live", sim.DiskImage))
	var torn *guest.TornError
	if !errors.As(err, &torn) {
		t.Fatalf("live copy checked %v; want torn", err)
	}
	t.Logf("live copy: %v", err)
}

// A VM without a guest agent cannot be frozen: the clone still gives a
// point-in-time copy, recorded as crash-consistent, which the checker accepts.
func TestNoGuestAgentGivesCrashConsistentPoint(t *testing.T) {
	e := start(t)
	pv := e.vm(t, "noagent", map[string]string{sim.AnnotationGuestAgent: "false"})
	e.sync(t, pv)
	pts := e.points(t, ns+"-noagent")
	if len(pts) != 1 || pts[0].Consistency != "crash-consistent" {
		t.Fatalf("points %+v: want one crash-consistent", pts)
	}
	if _, err := guest.Check(filepath.Join(pts[0].path, "data", sim.DiskImage)); err != nil {
		t.Fatalf("crash-consistent point: %v", err)
	}
}

// A capture that outlasts the freeze budget is cut: the guest is thawed
// within the budget, the sync of that PV fails with the reason, and no point
// is taken.
func TestFreezeBudgetOverrunThaws(t *testing.T) {
	e := start(t)
	pv := e.vm(t, "slow", nil)
	cmd := `["sh","-c","sleep 8 && cp -a --reflink=always {src}/. {dst}/"]`
	out, err := e.l.Playbook(t.Context(), syncPlaybook, map[string]any{"pv_object": pv},
		"-e", "ocpdr_capture_method=command", "-e", `{"ocpdr_capture_command": `+cmd+`}`, "-e", "ocpdr_freeze_budget=2")
	if err == nil {
		t.Fatalf("sync succeeded although the capture overran the freeze budget:\n%s", out)
	}
	if !strings.Contains(out, "freeze budget") {
		t.Errorf("output does not say the freeze budget was exceeded:\n%s", out)
	}
	log := e.api.Server.FreezeLog(ns, "slow")
	if log.Freezes != 1 || log.Frozen || len(log.Durations) != 1 || log.Durations[0].Duration > 6*time.Second {
		t.Fatalf("freeze log %+v: want one freeze, thawed well before the 8 s capture ended", log)
	}
	if pts := e.points(t, ns+"-slow"); len(pts) != 0 {
		t.Fatalf("a point was kept from a cut capture: %+v", pts)
	}
}

// The periodic sync takes its points the same way: with a two-disk guest
// writing, every point it keeps is application-consistent by the checker,
// and both disks' points come from one freeze (the same capture time).
func TestPeriodicSyncPointsPassTheChecker(t *testing.T) {
	e := startIn(t, "points-periodic")
	e.vmDisks(t, "per", 2, nil)
	e.l.MustPlaybook(t, periodicPlaybook, map[string]any{"ocpdr_report_dir": t.TempDir()})
	var times []string
	for i := 1; i <= 2; i++ {
		pts := e.points(t, e.ns+"-"+diskName("per", i))
		if len(pts) == 0 {
			t.Fatalf("disk %d: no point at DR after the periodic sync", i)
		}
		last := pts[len(pts)-1]
		res, err := guest.Check(filepath.Join(last.path, "data", sim.DiskImage))
		if err != nil || res.Level != guest.ApplicationConsistent || last.Consistency != "application-consistent" {
			t.Fatalf("disk %d point %s (%s): %v %v, want application-consistent", i, last.Time, last.Consistency, res.Level, err)
		}
		times = append(times, last.Time)
	}
	frozen, thawed := lastFreeze(t, e.api.Server.FreezeLog(e.ns, "per").Events)
	for _, pt := range times {
		at, err := time.Parse(time.RFC3339Nano, pt)
		if err != nil || at.Before(frozen) || at.After(thawed) {
			t.Errorf("point %s is not inside the freeze %s..%s: the disks were not captured in one freeze", pt, frozen, thawed)
		}
	}
}

// lastFreeze is the last freeze's frozen and thawed times from a freeze log.
func lastFreeze(t *testing.T, events []virtapi.Event) (time.Time, time.Time) {
	t.Helper()
	var frozen, thawed time.Time
	for _, ev := range events {
		switch ev.Kind {
		case "freeze":
			frozen, thawed = ev.Time, time.Time{}
		case "unfreeze", "auto-thaw":
			if !frozen.IsZero() && thawed.IsZero() {
				thawed = ev.Time
			}
		}
	}
	if frozen.IsZero() || thawed.IsZero() {
		t.Fatalf("no complete freeze in the log: %+v", events)
	}
	return frozen, thawed
}
