// Package sim plays, in the lab, the parts that cannot run here: it writes
// OADP (Velero) backups in Velero's exact object-store layout, and it runs
// small simulated controllers for Velero's restore and KubeVirt's VM status.
// Everything the product itself talks to (Kubernetes API, S3) is real; only
// these controllers' decisions are simulated, following their contracts as
// recorded in shared/research/dr-anchors.md §2-§3.
package sim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/minio/minio-go/v7"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Resources the simulated backup captures.
var (
	GVRNamespace = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	GVRPV        = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}
	GVRPVC       = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	GVRVM        = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
	GVRRestore   = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "restores"}
	GVRBackup    = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backups"}
)

// groupResource is Velero's directory name: resource, plus ".group" when not core.
func groupResource(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return gvr.Resource
	}
	return gvr.Resource + "." + gvr.Group
}

// BackupOptions describe one backup.
type BackupOptions struct {
	Name       string
	Namespaces []string // namespaces to include (their PVCs, VMs; PVs bound to those PVCs)
	Phase      string   // status.phase written to velero-backup.json (default Completed)
	Prefix     string   // object-store prefix (default none)
	Started    time.Time
}

// WriteBackup reads the included objects from the primary API server and
// uploads backups/<name>/<name>.tar.gz, velero-backup.json and the resource
// list, as Velero 1.x (format 1.1.0) would.
func WriteBackup(ctx context.Context, primary dynamic.Interface, s3 *minio.Client, bucket string, o BackupOptions) error {
	if o.Phase == "" {
		o.Phase = "Completed"
	}
	if o.Started.IsZero() {
		o.Started = time.Now().UTC()
	}
	var items []*unstructured.Unstructured
	claimed := map[string]bool{}
	for _, ns := range o.Namespaces {
		n, err := primary.Resource(GVRNamespace).Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
		items = append(items, n)
		for _, gvr := range []schema.GroupVersionResource{GVRPVC, GVRVM} {
			l, err := primary.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("list %s in %s: %w", gvr.Resource, ns, err)
			}
			for i := range l.Items {
				items = append(items, &l.Items[i])
				if gvr == GVRPVC {
					if v, _, _ := unstructured.NestedString(l.Items[i].Object, "spec", "volumeName"); v != "" {
						claimed[v] = true
					}
				}
			}
		}
	}
	pvs, err := primary.Resource(GVRPV).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list PVs: %w", err)
	}
	for i := range pvs.Items {
		if claimed[pvs.Items[i].GetName()] {
			items = append(items, &pvs.Items[i])
		}
	}

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: o.Started, Typeflag: tar.TypeReg}); err != nil {
			return fmt.Errorf("tar header %s: %w", name, err)
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("metadata/version", []byte("1.1.0\n")); err != nil {
		return err
	}
	resourceList := map[string][]string{}
	for _, it := range items {
		gvk := it.GroupVersionKind()
		gvr := map[string]schema.GroupVersionResource{"Namespace": GVRNamespace, "PersistentVolume": GVRPV, "PersistentVolumeClaim": GVRPVC, "VirtualMachine": GVRVM}[gvk.Kind]
		data, err := json.Marshal(it.UnstructuredContent())
		if err != nil {
			return fmt.Errorf("encode %s: %w", it.GetName(), err)
		}
		scope := "cluster"
		key := it.GetName()
		if ns := it.GetNamespace(); ns != "" {
			scope = path.Join("namespaces", ns)
			key = ns + "/" + key
		}
		gr := groupResource(gvr)
		// Velero writes the preferred version twice: plain, and under
		// <version>-preferredversion.
		for _, p := range []string{
			path.Join("resources", gr, scope, it.GetName()+".json"),
			path.Join("resources", gr, gvr.Version+"-preferredversion", scope, it.GetName()+".json"),
		} {
			if err := add(p, data); err != nil {
				return err
			}
		}
		rk := gvk.GroupVersion().String() + "/" + gvk.Kind
		resourceList[rk] = append(resourceList[rk], key)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}

	done := o.Started.Add(2 * time.Second)
	backup := map[string]any{
		"apiVersion": "velero.io/v1", "kind": "Backup",
		"metadata": map[string]any{"name": o.Name, "namespace": "openshift-adp", "labels": map[string]any{"velero.io/storage-location": "default"}},
		"spec":     map[string]any{"includedNamespaces": o.Namespaces, "storageLocation": "default", "ttl": "720h0m0s"},
		"status": map[string]any{
			"phase": o.Phase, "formatVersion": "1.1.0", "version": 1,
			"startTimestamp": o.Started.Format(time.RFC3339), "completionTimestamp": done.Format(time.RFC3339),
			"expiration": o.Started.Add(720 * time.Hour).Format(time.RFC3339),
			"progress":   map[string]any{"totalItems": len(items), "itemsBackedUp": len(items)},
		},
	}
	bj, _ := json.MarshalIndent(backup, "", "  ")
	for k := range resourceList {
		slices.Sort(resourceList[k])
	}
	rl, _ := json.Marshal(resourceList)
	var rlgz bytes.Buffer
	zw := gzip.NewWriter(&rlgz)
	_, _ = zw.Write(rl)
	_ = zw.Close()
	dir := path.Join(o.Prefix, "backups", o.Name)
	for name, data := range map[string][]byte{
		o.Name + ".tar.gz":                buf.Bytes(),
		"velero-backup.json":              bj,
		o.Name + "-resource-list.json.gz": rlgz.Bytes(),
	} {
		if _, err := s3.PutObject(ctx, bucket, path.Join(dir, name), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
	}
	return nil
}
