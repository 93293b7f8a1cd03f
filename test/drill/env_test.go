// Package drill tests the non-disruptive DR drill (playbooks/manual_dr/
// execute_drill.yml) on the lab: simulated guests write on the primary,
// event syncs keep recovery points at DR, and the simulated Velero and
// KubeVirt of the DR cluster restore the drill's VMs. This file holds the
// lab set-up (modelled on test/consistency).
package drill

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
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
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

const (
	syncPlaybook  = "playbooks/event_driven/handle_nfs_pv_sync.yml"
	drillPlaybook = "playbooks/manual_dr/execute_drill.yml"
)

type env struct {
	l  *lab.Lab
	p  dynamic.Interface
	ns string
}

// startIn runs the guest API and the primary's simulated KubeVirt (with
// writers) for the test, with the VMs in namespace.
func startIn(t *testing.T, namespace string) *env {
	t.Helper()
	l := lab.Get(t)
	if !l.Primary.Reflink || !l.DR.Reflink {
		t.Skip("drills need the lab's XFS reflink export roots (run as root)")
	}
	cfg, err := l.Primary.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	p := dynamic.NewForConfigOrDie(cfg)
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
	if _, err := p.Resource(sim.GVRNamespace).Create(t.Context(), object("v1", "Namespace", "", namespace, nil), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return &env{l: l, p: p, ns: namespace}
}

func object(apiVersion, kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if namespace != "" {
		md["namespace"] = namespace
	}
	o := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md}
	if spec != nil {
		o["spec"] = spec
	}
	return &unstructured.Unstructured{Object: o}
}

// vm creates the PV <name>-pv on <ns>-<name>, its PVC <name>-disk and a
// running VM (a pod network and a secondary network) whose guest writes
// disk.img; it returns the PV once the guest has committed.
func (e *env) vm(t *testing.T, name string) map[string]any {
	t.Helper()
	ctx := t.Context()
	dir := filepath.Join(e.l.Primary.ExportRoot, e.ns+"-"+name)
	must(t, e.p.Resource(sim.GVRPV), object("v1", "PersistentVolume", "", name+"-pv", map[string]any{
		"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic",
		"nfs":      map[string]any{"server": e.l.Primary.NFSHost, "path": dir},
		"claimRef": map[string]any{"namespace": e.ns, "name": name + "-disk"},
	}))
	must(t, e.p.Resource(sim.GVRPVC).Namespace(e.ns), object("v1", "PersistentVolumeClaim", e.ns, name+"-disk", map[string]any{
		"accessModes": []any{"ReadWriteMany"}, "storageClassName": "nfs-dynamic", "volumeName": name + "-pv",
		"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}},
	}))
	vm := object("kubevirt.io/v1", "VirtualMachine", e.ns, name, map[string]any{
		"runStrategy": "Always",
		"template": map[string]any{"spec": map[string]any{
			"volumes":  []any{map[string]any{"name": "disk1", "persistentVolumeClaim": map[string]any{"claimName": name + "-disk"}}},
			"networks": []any{map[string]any{"name": "default", "pod": map[string]any{}}, map[string]any{"name": "prod", "multus": map[string]any{"networkName": "prod-vlan"}}},
			"domain": map[string]any{"devices": map[string]any{"interfaces": []any{
				map[string]any{"name": "default", "masquerade": map[string]any{}}, map[string]any{"name": "prod", "bridge": map[string]any{}}}}},
		}},
	})
	vm.SetAnnotations(map[string]string{sim.AnnotationGuest: "writer", sim.AnnotationGuestSize: "16Mi", sim.AnnotationGuestRecords: "256"})
	must(t, e.p.Resource(sim.GVRVM).Namespace(e.ns), vm)
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := guest.Check(filepath.Join(dir, sim.DiskImage))
		if err == nil && res.Commit >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest of %s never wrote: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pv, err := e.p.Resource(sim.GVRPV).Get(ctx, name+"-pv", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pv.Object
}

func must(t *testing.T, res dynamic.ResourceInterface, o *unstructured.Unstructured) {
	t.Helper()
	if _, err := res.Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

type manifest struct {
	Time string `json:"time"`
	path string
}

// points lists the DR points of the PV directory rel, oldest first.
func (e *env) points(t *testing.T, rel string) []manifest {
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

func (e *env) sync(t *testing.T, pv map[string]any) {
	t.Helper()
	e.l.MustPlaybook(t, syncPlaybook, map[string]any{"pv_object": pv})
}

// drSite runs the DR cluster's simulated Velero and KubeVirt (no guests:
// a drill disk changes only if something else writes it) and writes the
// backup of the env's namespace.
func (e *env) drSite(t *testing.T, backup string) dynamic.Interface {
	t.Helper()
	cfg, err := e.l.DR.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	d := dynamic.NewForConfigOrDie(cfg)
	s3, err := e.l.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	log := zaptest.NewLogger(t)
	go (&sim.Velero{DR: d, S3: s3, Bucket: e.l.S3Bucket, Log: log}).Run(ctx, 200*time.Millisecond)
	go (&sim.KubeVirt{Clusters: map[string]dynamic.Interface{"dr": d}, Log: log}).Run(ctx, 200*time.Millisecond)
	t.Cleanup(stop)
	if err := sim.WriteBackup(t.Context(), e.p, s3, e.l.S3Bucket, sim.BackupOptions{Name: backup, Namespaces: []string{e.ns}}); err != nil {
		t.Fatal(err)
	}
	return d
}

// drillPVs lists the DR PVs a drill labelled.
func drillPVs(t *testing.T, d dynamic.Interface, id string) []string {
	t.Helper()
	l, err := d.Resource(sim.GVRPV).List(t.Context(), metav1.ListOptions{LabelSelector: "ocpv-dr.io/drill=" + id})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range l.Items {
		out = append(out, it.GetName())
	}
	return out
}
