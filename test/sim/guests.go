package sim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
	"github.com/ocpv-dr/ocpv-dr/test/sim/virtapi"
)

// Annotations of a VM that opt it into a simulated guest. Only a VM with
// AnnotationGuest "writer" gets one: while it is Running on the primary, a
// guest.Writer writes <PV directory>/disk.img of each of its disks.
const (
	AnnotationGuest = "ocpv-dr.io/sim-guest"
	// AnnotationGuestSize is the size of a new image (a quantity, default
	// 256Mi); AnnotationGuestRecords its record count (default 2048);
	// AnnotationGuestInterval the time one generation takes (a Go duration,
	// default 100ms).
	AnnotationGuestSize     = "ocpv-dr.io/sim-guest-size"
	AnnotationGuestRecords  = "ocpv-dr.io/sim-guest-records"
	AnnotationGuestInterval = "ocpv-dr.io/sim-guest-interval"
	// AnnotationGuestAgent "false": the guest has no agent, freeze and
	// unfreeze are refused (409).
	AnnotationGuestAgent = virtapi.AnnotationGuestAgent
	// DiskImage is the file a disk's writer writes in its PV directory.
	DiskImage = "disk.img"
)

// Guests runs the simulated guests (disk writers) of one cluster's VMs that
// opt in. The KubeVirt controller starts and stops them (Sync); the
// simulated virt-api freezes them (Writers).
type Guests struct {
	// Root is the export root of the cluster's NFS host, a local directory
	// here: a disk outside it is refused.
	Root string
	Log  *zap.Logger

	mu  sync.Mutex
	vms map[string]*vmGuest // by namespace/name
}

type vmGuest struct {
	writers map[string]*guest.Writer // by image path
	lastErr string
}

// Writers returns the running writers of a VM, sorted by image path.
func (g *Guests) Writers(namespace, name string) []*guest.Writer {
	g.mu.Lock()
	defer g.mu.Unlock()
	vg := g.vms[namespace+"/"+name]
	if vg == nil {
		return nil
	}
	out := make([]*guest.Writer, 0, len(vg.writers))
	for _, p := range slices.Sorted(maps.Keys(vg.writers)) {
		out = append(out, vg.writers[p])
	}
	return out
}

// Status returns the status of every writer by VM (namespace/name).
func (g *Guests) Status() map[string][]guest.Status {
	g.mu.Lock()
	keys := slices.Sorted(maps.Keys(g.vms))
	g.mu.Unlock()
	out := map[string][]guest.Status{}
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		for _, w := range g.Writers(ns, name) {
			out[k] = append(out[k], w.Status())
		}
	}
	return out
}

// Sync runs writers for the running VMs that opt in and stops the others'
// (each finishing its generation in progress).
func (g *Guests) Sync(ctx context.Context, dc dynamic.Interface, running []*unstructured.Unstructured) {
	want := map[string][]string{}
	for _, vm := range running {
		if vm.GetAnnotations()[AnnotationGuest] != "writer" {
			continue
		}
		key := vm.GetNamespace() + "/" + vm.GetName()
		paths, err := g.diskPaths(ctx, dc, vm)
		g.noteError(key, err)
		if err != nil { // maybe transient: keep the writers running
			paths = append(paths, g.paths(key)...)
		}
		want[key] = paths
		g.startWriters(key, paths, vm.GetAnnotations())
	}
	g.stopUnwanted(want)
}

// paths returns the image paths of a VM's running writers.
func (g *Guests) paths(key string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if vg := g.vms[key]; vg != nil {
		return slices.Collect(maps.Keys(vg.writers))
	}
	return nil
}

func (g *Guests) logger() *zap.Logger {
	if g.Log == nil {
		return zap.NewNop()
	}
	return g.Log
}

func (g *Guests) noteError(key string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	g.mu.Lock()
	vg := g.vmLocked(key)
	changed := vg.lastErr != msg
	vg.lastErr = msg
	g.mu.Unlock()
	if changed && err != nil {
		g.logger().Warn("simulated guest: disks not all found", zap.String("vm", key), zap.Error(err))
	}
}

func (g *Guests) vmLocked(key string) *vmGuest {
	if g.vms == nil {
		g.vms = map[string]*vmGuest{}
	}
	vg := g.vms[key]
	if vg == nil {
		vg = &vmGuest{writers: map[string]*guest.Writer{}}
		g.vms[key] = vg
	}
	return vg
}

func (g *Guests) startWriters(key string, paths []string, ann map[string]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	vg := g.vmLocked(key)
	for _, p := range paths {
		if vg.writers[p] != nil {
			continue
		}
		if owner := g.ownerLocked(p); owner != "" {
			g.logger().Warn("simulated guest: disk already written by another VM", zap.String("vm", key), zap.String("disk", p), zap.String("owner", owner))
			continue
		}
		o, err := writerOptions(p, ann, g.logger().With(zap.String("vm", key)))
		if err == nil {
			vg.writers[p], err = guest.Start(o)
		}
		if err != nil {
			delete(vg.writers, p)
			g.logger().Error("simulated guest: cannot start", zap.String("vm", key), zap.String("disk", p), zap.Error(err))
		}
	}
}

func (g *Guests) ownerLocked(path string) string {
	for k, vg := range g.vms {
		if vg.writers[path] != nil {
			return k
		}
	}
	return ""
}

// stopUnwanted stops the writers of VMs (and disks) not in want.
func (g *Guests) stopUnwanted(want map[string][]string) {
	g.mu.Lock()
	var stop []*guest.Writer
	for key, vg := range g.vms {
		for p, w := range vg.writers {
			if !slices.Contains(want[key], p) {
				stop = append(stop, w)
				delete(vg.writers, p)
			}
		}
		if _, ok := want[key]; !ok {
			delete(g.vms, key)
		}
	}
	g.mu.Unlock()
	for _, w := range stop {
		if err := w.Stop(); err != nil {
			g.logger().Error("simulated guest: stop", zap.String("disk", w.Path()), zap.Error(err))
		}
	}
}

// StopAll stops every writer.
func (g *Guests) StopAll() error {
	g.mu.Lock()
	var stop []*guest.Writer
	for _, vg := range g.vms {
		for _, w := range vg.writers {
			stop = append(stop, w)
		}
	}
	g.vms = nil
	g.mu.Unlock()
	var errs []error
	for _, w := range stop {
		errs = append(errs, w.Stop())
	}
	return errors.Join(errs...)
}

func writerOptions(path string, ann map[string]string, log *zap.Logger) (guest.Options, error) {
	o := guest.Options{Path: path, Log: log}
	if v := ann[AnnotationGuestSize]; v != "" {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return o, fmt.Errorf("annotation %s: %w", AnnotationGuestSize, err)
		}
		o.Size = q.Value()
	}
	if v := ann[AnnotationGuestRecords]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return o, fmt.Errorf("annotation %s: %w", AnnotationGuestRecords, err)
		}
		o.Records = n
	}
	if v := ann[AnnotationGuestInterval]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, fmt.Errorf("annotation %s: %w", AnnotationGuestInterval, err)
		}
		o.Interval = d
	}
	return o, nil
}

// diskPaths returns <PV path>/disk.img of each of the VM's disks whose PVC
// and PV are Bound; the error names the others.
func (g *Guests) diskPaths(ctx context.Context, dc dynamic.Interface, vm *unstructured.Unstructured) ([]string, error) {
	var out []string
	var errs []error
	for _, c := range claims(vm) {
		dir, err := g.claimDir(ctx, dc, vm.GetNamespace(), c)
		if err != nil {
			errs = append(errs, fmt.Errorf("claim %s: %w", c, err))
			continue
		}
		out = append(out, filepath.Join(dir, DiskImage))
	}
	return out, errors.Join(errs...)
}

// claimDir resolves a PVC to its Bound PV's directory under Root.
func (g *Guests) claimDir(ctx context.Context, dc dynamic.Interface, ns, claim string) (string, error) {
	pvc, err := dc.Resource(GVRPVC).Namespace(ns).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get PVC: %w", err)
	}
	pvName, _, _ := unstructured.NestedString(pvc.Object, "spec", "volumeName")
	if phase, _, _ := unstructured.NestedString(pvc.Object, "status", "phase"); phase != "Bound" || pvName == "" {
		return "", fmt.Errorf("PVC not Bound (phase %q, volume %q)", phase, pvName)
	}
	pv, err := dc.Resource(GVRPV).Get(ctx, pvName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get PV %s: %w", pvName, err)
	}
	if phase, _, _ := unstructured.NestedString(pv.Object, "status", "phase"); phase != "Bound" {
		return "", fmt.Errorf("PV %s not Bound (phase %q)", pvName, phase)
	}
	p, err := pvPath(pv)
	if err != nil {
		return "", fmt.Errorf("PV %s: %w", pvName, err)
	}
	return underRoot(g.Root, p)
}

// pvPath is the export path of an NFS PV: spec.nfs.path, or csi-driver-nfs's
// share (+ subdir) volume attributes.
func pvPath(pv *unstructured.Unstructured) (string, error) {
	if p, ok, _ := unstructured.NestedString(pv.Object, "spec", "nfs", "path"); ok && p != "" {
		return p, nil
	}
	attrs, _, _ := unstructured.NestedStringMap(pv.Object, "spec", "csi", "volumeAttributes")
	if share := attrs["share"]; share != "" {
		return filepath.Join(share, attrs["subdir"]), nil
	}
	return "", errors.New("neither spec.nfs.path nor csi volumeAttributes.share")
}

// underRoot creates dir (the NFS host has it) and returns it when it is, with
// symbolic links resolved, under root.
func underRoot(root, dir string) (string, error) {
	if root == "" {
		return "", errors.New("no export root configured for simulated guests")
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("path %q is not absolute", dir)
	}
	if !within(filepath.Clean(root), filepath.Clean(dir)) {
		return "", fmt.Errorf("path %s is outside the export root %s", dir, root)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("PV directory: %w", err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("export root: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("PV directory: %w", err)
	}
	if !within(realRoot, realDir) {
		return "", fmt.Errorf("path %s resolves to %s, outside the export root %s", dir, realDir, realRoot)
	}
	return realDir, nil
}

func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// GuestAPI is the simulated guests of the primary's VMs and the simulated
// virt-api (freeze/unfreeze) registered in the primary's API server.
type GuestAPI struct {
	Guests *Guests
	Server *virtapi.Server
	cfg    *rest.Config
}

// NewGuestAPI starts the simulated virt-api for the primary's guests
// (cfg: the primary cluster) without registering it; pass its Guests to
// RunControllers (Sites.Guests) so that the VMs' writers run, and call
// Register to route the API server's subresources.kubevirt.io to it.
func NewGuestAPI(cfg *rest.Config, exportRoot string, log *zap.Logger) (*GuestAPI, error) {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("guest API: client: %w", err)
	}
	g := &Guests{Root: exportRoot, Log: log.Named("guest")}
	srv, err := virtapi.Start(virtapi.Options{VMs: dc, Guests: g, Log: log.Named("virtapi")})
	if err != nil {
		return nil, err
	}
	return &GuestAPI{Guests: g, Server: srv, cfg: cfg}, nil
}

// Register registers the server (APIService v1.subresources.kubevirt.io)
// and waits until it is Available.
func (a *GuestAPI) Register(ctx context.Context) error { return a.Server.Register(ctx, a.cfg) }

// StartGuestAPI is NewGuestAPI and Register.
func StartGuestAPI(ctx context.Context, cfg *rest.Config, exportRoot string, log *zap.Logger) (*GuestAPI, error) {
	a, err := NewGuestAPI(cfg, exportRoot, log)
	if err != nil {
		return nil, err
	}
	if err := a.Register(ctx); err != nil {
		_ = a.Server.Close()
		return nil, err
	}
	return a, nil
}

// Close unregisters and stops the server and stops the guests.
func (a *GuestAPI) Close(ctx context.Context) error {
	return errors.Join(a.Server.Unregister(ctx), a.Server.Close(), a.Guests.StopAll())
}
