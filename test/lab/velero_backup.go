// velero_backup.go: a real Velero Backup at the primary, handed to DR the way
// OADP at two sites hands it (the shared bucket, the DR server's backup
// sync). Tests, the demo and the benchmarks share it.
package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// CreateVeleroBackup creates Backup name of namespaces at the site behind dc
// (no volume snapshots, no file-system backup: this project copies the
// volumes) and waits until Velero ends it, returning the Backup whatever its
// final phase (the caller decides which phase it wants).
func CreateVeleroBackup(ctx context.Context, dc dynamic.Interface, name string, namespaces []string) (*unstructured.Unstructured, error) {
	rc := dc.Resource(GVRVeleroBackup).Namespace(VeleroNamespace)
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "velero.io/v1", "kind": "Backup",
		"metadata": map[string]any{"name": name, "namespace": VeleroNamespace},
		"spec": map[string]any{"includedNamespaces": toAny(namespaces), "storageLocation": VeleroBSL, "ttl": "720h0m0s",
			"snapshotVolumes": false, "defaultVolumesToFsBackup": false}}}
	if _, err := rc.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create backup %s: %w", name, err)
	}
	// A backup without volume data takes seconds; minutes mean Velero is stuck.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var b *unstructured.Unstructured
	err := poll(ctx, 300*time.Millisecond, func() error {
		var err error
		if b, err = rc.Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		switch phase := BackupPhase(b); phase {
		case "Completed", "PartiallyFailed", "Failed", "FailedValidation":
			return nil
		default:
			return fmt.Errorf("backup %s is %q", name, phase)
		}
	})
	return b, err
}

// BackupPhase is a Velero Backup's status.phase.
func BackupPhase(b *unstructured.Unstructured) string {
	phase, _, _ := unstructured.NestedString(b.Object, "status", "phase")
	return phase
}

// WaitBackupSynced waits until Backup name, written by the other site's
// server, shows up at the site behind dc (its server's backup sync from the
// shared bucket).
func WaitBackupSynced(ctx context.Context, dc dynamic.Interface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rc := dc.Resource(GVRVeleroBackup).Namespace(VeleroNamespace)
	return poll(ctx, 500*time.Millisecond, func() error {
		_, err := rc.Get(ctx, name, metav1.GetOptions{})
		return err
	})
}

// BackupToDR is what OADP does across two sites, in one call: Velero at the
// primary backs up namespaces as Backup name (it must complete), the
// primary's server stops (one server at a time on this host, see
// StartVelero), the DR server starts and syncs the backup from the bucket.
// It returns the DR server, left running for the failover's Restore.
func (l *Lab) BackupToDR(ctx context.Context, name string, namespaces []string) (*Velero, error) {
	pv, err := l.startVelero(ctx, &l.Primary)
	if err != nil {
		return nil, fmt.Errorf("velero at the primary: %w", err)
	}
	pdc, err := siteDynamic(&l.Primary)
	if err != nil {
		return nil, err
	}
	b, err := CreateVeleroBackup(ctx, pdc, name, namespaces)
	pv.StopServer()
	if err != nil {
		return nil, err
	}
	if phase := BackupPhase(b); phase != "Completed" {
		return nil, fmt.Errorf("backup %s ended %s: %v", name, phase, b.Object["status"])
	}
	dv, err := l.startVelero(ctx, &l.DR)
	if err != nil {
		return nil, fmt.Errorf("velero at DR: %w", err)
	}
	ddc, err := siteDynamic(&l.DR)
	if err == nil {
		err = WaitBackupSynced(ctx, ddc, name)
	}
	if err != nil {
		dv.StopServer()
		return nil, fmt.Errorf("backup %s at DR: %w", name, err)
	}
	return dv, nil
}

// BackupToDR is Lab.BackupToDR for a test: it fails the test on error and
// stops the DR server when the test ends.
func BackupToDR(t testing.TB, l *Lab, name string, namespaces []string) *Velero {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	v, err := l.BackupToDR(ctx, name, namespaces)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.StopServer)
	return v
}

// LiftFence undoes an earlier failover's fence (the DR-active marker on the
// DR export and the ConfigMap at DR): with the fence up, the final sync of
// the next failover refuses to pull from the primary. Tests sharing a lab
// call it before they fail over again.
func (l *Lab) LiftFence(ctx context.Context) error {
	if err := os.Remove(filepath.Join(l.DR.ExportRoot, ".ocpdr-dr-active")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("lift fence: %w", err)
	}
	rc, err := l.DR.RESTConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("lift fence: %w", err)
	}
	err = cs.CoreV1().ConfigMaps(VeleroNamespace).Delete(ctx, "ocpdr-dr-active", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("lift fence: %w", err)
	}
	return nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
