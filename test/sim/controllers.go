package sim

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Velero simulates Velero's restore controller on the DR site: for each new
// Restore it reads the backup tarball from S3, creates the objects that are
// not excluded (namespaces first), and sets status.phase Completed, or
// Failed with status.errors when the backup cannot be read.
type Velero struct {
	DR     dynamic.Interface
	S3     *minio.Client
	Bucket string
	Prefix string
	Log    *zap.Logger
}

// Run reconciles Restores every interval until ctx ends.
func (v *Velero) Run(ctx context.Context, interval time.Duration) {
	for {
		if err := v.reconcile(ctx); err != nil && ctx.Err() == nil {
			v.Log.Warn("velero sim", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (v *Velero) reconcile(ctx context.Context) error {
	l, err := v.DR.Resource(GVRRestore).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list restores: %w", err)
	}
	for i := range l.Items {
		r := &l.Items[i]
		phase, _, _ := unstructured.NestedString(r.Object, "status", "phase")
		if phase != "" && phase != "New" {
			continue
		}
		warnings, err := v.restore(ctx, r)
		status := map[string]any{"phase": "Completed", "warnings": int64(len(warnings)),
			"startTimestamp": time.Now().UTC().Format(time.RFC3339), "completionTimestamp": time.Now().UTC().Format(time.RFC3339)}
		if err != nil {
			status["phase"] = "Failed"
			status["failureReason"] = err.Error()
			status["errors"] = int64(1)
		}
		r.Object["status"] = status
		if _, uerr := v.DR.Resource(GVRRestore).Namespace(r.GetNamespace()).UpdateStatus(ctx, r, metav1.UpdateOptions{}); uerr != nil {
			return fmt.Errorf("update restore status: %w", uerr)
		}
		v.Log.Info("restore simulated", zap.String("restore", r.GetName()), zap.Any("phase", status["phase"]), zap.Strings("warnings", warnings))
	}
	return nil
}

type item struct {
	gr, ns, name string
	obj          map[string]any
}

func (v *Velero) restore(ctx context.Context, r *unstructured.Unstructured) ([]string, error) {
	backup, _, _ := unstructured.NestedString(r.Object, "spec", "backupName")
	if backup == "" {
		return nil, errors.New("spec.backupName is empty")
	}
	excluded, _, _ := unstructured.NestedStringSlice(r.Object, "spec", "excludedResources")
	included, _, _ := unstructured.NestedStringSlice(r.Object, "spec", "includedNamespaces")
	mapping, _, _ := unstructured.NestedStringMap(r.Object, "spec", "namespaceMapping")
	obj, err := v.S3.GetObject(ctx, v.Bucket, path.Join(v.Prefix, "backups", backup, backup+".tar.gz"), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", backup, err)
	}
	defer obj.Close()
	items, err := readTarball(obj)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", backup, err)
	}
	// Namespaces first, then everything else, as Velero's priorities do.
	sort.SliceStable(items, func(i, j int) bool { return items[i].gr == "namespaces" && items[j].gr != "namespaces" })
	var warnings []string
	for _, it := range items {
		if isExcluded(it.gr, excluded) {
			continue
		}
		ns := it.ns
		if it.gr == "namespaces" {
			ns = it.name
		}
		if len(included) > 0 && ns != "" && !slices.Contains(included, ns) && !slices.Contains(included, "*") {
			continue
		}
		if it.gr != "namespaces" && it.ns == "" && len(included) > 0 {
			// Cluster-scoped items other than namespaces: Velero restores
			// them only when related; none are in these backups.
			continue
		}
		gvr, ok := grToGVR[it.gr]
		if !ok {
			warnings = append(warnings, "no resource mapping for "+it.gr)
			continue
		}
		u := &unstructured.Unstructured{Object: it.obj}
		for _, f := range [][]string{{"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "creationTimestamp"}, {"metadata", "managedFields"}, {"metadata", "generation"}, {"status"}} {
			unstructured.RemoveNestedField(u.Object, f...)
		}
		labels := u.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels["velero.io/backup-name"], labels["velero.io/restore-name"] = backup, r.GetName()
		u.SetLabels(labels)
		target := remapNamespace(u, it, mapping)
		var cerr error
		if it.ns == "" {
			_, cerr = v.DR.Resource(gvr).Create(ctx, u, metav1.CreateOptions{})
		} else {
			_, cerr = v.DR.Resource(gvr).Namespace(target).Create(ctx, u, metav1.CreateOptions{})
		}
		if apierrors.IsAlreadyExists(cerr) {
			warnings = append(warnings, fmt.Sprintf("%s %s/%s already exists", it.gr, target, u.GetName()))
			continue
		}
		if cerr != nil {
			return warnings, fmt.Errorf("create %s %s/%s: %w", it.gr, it.ns, it.name, cerr)
		}
	}
	return warnings, nil
}

// remapNamespace applies spec.namespaceMapping as Velero does: a Namespace
// item is renamed, a namespaced item moves to the mapped namespace. It
// returns the namespace the item is created in ("" when cluster-scoped).
func remapNamespace(u *unstructured.Unstructured, it item, mapping map[string]string) string {
	if it.gr == "namespaces" {
		if to, ok := mapping[it.name]; ok {
			u.SetName(to)
		}
		return ""
	}
	to, ok := mapping[it.ns]
	if !ok {
		return it.ns
	}
	u.SetNamespace(to)
	return to
}

var grToGVR = map[string]schema.GroupVersionResource{
	"namespaces": GVRNamespace, "persistentvolumes": GVRPV, "persistentvolumeclaims": GVRPVC, "virtualmachines.kubevirt.io": GVRVM,
}

func isExcluded(gr string, excluded []string) bool {
	for _, e := range excluded {
		if e == gr || strings.SplitN(gr, ".", 2)[0] == e {
			return true
		}
	}
	return false
}

// readTarball returns the un-versioned items of a Velero backup tarball.
func readTarball(r io.Reader) ([]item, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	tr := tar.NewReader(gz)
	var out []item
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		parts := strings.Split(h.Name, "/")
		// resources/<gr>/cluster/<name>.json or resources/<gr>/namespaces/<ns>/<name>.json
		if len(parts) < 4 || parts[0] != "resources" || strings.HasSuffix(parts[2], "-preferredversion") {
			continue
		}
		it := item{gr: parts[1]}
		switch {
		case parts[2] == "cluster" && len(parts) == 4:
			it.name = strings.TrimSuffix(parts[3], ".json")
		case parts[2] == "namespaces" && len(parts) == 5:
			it.ns, it.name = parts[3], strings.TrimSuffix(parts[4], ".json")
		default:
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", h.Name, err)
		}
		if err := json.Unmarshal(b, &it.obj); err != nil {
			return nil, fmt.Errorf("parse %s: %w", h.Name, err)
		}
		out = append(out, it)
	}
}

// KubeVirt simulates virt-controller's VM status: a VM whose run strategy
// asks it to run and whose PVCs are all Bound is Running and ready; a halted
// VM is Stopped. With Guests, the Running VMs of the cluster GuestCluster
// that opt in (AnnotationGuest) run simulated guests writing their disks.
type KubeVirt struct {
	Clusters map[string]dynamic.Interface
	Log      *zap.Logger
	// Guests, when set, runs the simulated guests of the cluster named
	// GuestCluster (default "primary"); they stop when Run returns.
	Guests       *Guests
	GuestCluster string
}

// Run reconciles VMs every interval until ctx ends.
func (k *KubeVirt) Run(ctx context.Context, interval time.Duration) {
	if k.Guests != nil {
		defer func() {
			if err := k.Guests.StopAll(); err != nil {
				k.Log.Error("kubevirt sim: stop guests", zap.Error(err))
			}
		}()
	}
	for {
		for name, dc := range k.Clusters {
			if err := k.reconcile(ctx, name, dc); err != nil && ctx.Err() == nil {
				k.Log.Warn("kubevirt sim", zap.String("cluster", name), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (k *KubeVirt) guestCluster() string {
	if k.GuestCluster == "" {
		return "primary"
	}
	return k.GuestCluster
}

func wantsToRun(vm *unstructured.Unstructured) bool {
	if rs, ok, _ := unstructured.NestedString(vm.Object, "spec", "runStrategy"); ok {
		return rs == "Always" || rs == "RerunOnFailure" || rs == "Once"
	}
	running, _, _ := unstructured.NestedBool(vm.Object, "spec", "running")
	return running
}

func claims(vm *unstructured.Unstructured) []string {
	vols, _, _ := unstructured.NestedSlice(vm.Object, "spec", "template", "spec", "volumes")
	var out []string
	for _, v := range vols {
		m, _ := v.(map[string]any)
		if c, ok, _ := unstructured.NestedString(m, "persistentVolumeClaim", "claimName"); ok {
			out = append(out, c)
		}
		if c, ok, _ := unstructured.NestedString(m, "dataVolume", "name"); ok {
			out = append(out, c)
		}
	}
	return out
}

func (k *KubeVirt) reconcile(ctx context.Context, cluster string, dc dynamic.Interface) error {
	l, err := dc.Resource(GVRVM).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list VMs: %w", err)
	}
	var running []*unstructured.Unstructured
	for i := range l.Items {
		vm := &l.Items[i]
		printable, ready := vmStatus(ctx, dc, vm)
		if printable == "Running" {
			running = append(running, vm)
		}
		if err := updateVMStatus(ctx, dc, vm, printable, ready); err != nil {
			return err
		}
	}
	if k.Guests != nil && cluster == k.guestCluster() {
		k.Guests.Sync(ctx, dc, running)
	}
	return nil
}

// vmStatus is the printableStatus and readiness virt-controller would give.
func vmStatus(ctx context.Context, dc dynamic.Interface, vm *unstructured.Unstructured) (string, bool) {
	if !wantsToRun(vm) {
		return "Stopped", false
	}
	for _, c := range claims(vm) {
		pvc, err := dc.Resource(GVRPVC).Namespace(vm.GetNamespace()).Get(ctx, c, metav1.GetOptions{})
		phase := ""
		if err == nil {
			phase, _, _ = unstructured.NestedString(pvc.Object, "status", "phase")
		}
		if phase != "Bound" {
			return "WaitingForVolumeBinding", false
		}
	}
	return "Running", true
}

func updateVMStatus(ctx context.Context, dc dynamic.Interface, vm *unstructured.Unstructured, printable string, ready bool) error {
	cur, _, _ := unstructured.NestedString(vm.Object, "status", "printableStatus")
	curReady, _, _ := unstructured.NestedBool(vm.Object, "status", "ready")
	if cur == printable && curReady == ready {
		return nil
	}
	vm.Object["status"] = map[string]any{"printableStatus": printable, "ready": ready, "created": ready}
	if _, err := dc.Resource(GVRVM).Namespace(vm.GetNamespace()).UpdateStatus(ctx, vm, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("update VM %s/%s status: %w", vm.GetNamespace(), vm.GetName(), err)
	}
	return nil
}
