// velero_server.go holds the per-site Velero objects (namespace, 0-replica
// Deployment, BackupStorageLocation on the lab's bucket), the credentials
// file and the `velero server` process itself. See velero.go.
package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// veleroSyncPeriod is how soon a backup written by one site's server shows
// up as a Backup object at the other site (Velero's default is 1 minute).
const veleroSyncPeriod = "2s"

// applyVeleroObjects creates Velero's namespace, the Deployment `velero` a
// Restore checks for (0 replicas: the server runs as a lab process) and the
// BackupStorageLocation.
func (l *Lab) applyVeleroObjects(ctx context.Context, dc dynamic.Interface) error {
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": VeleroNamespace}}
	labels := map[string]any{"component": "velero"}
	deploy := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "velero", "namespace": VeleroNamespace, "labels": labels},
		"spec": map[string]any{
			"replicas": int64(0),
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "velero", "image": "velero/velero:v1.18.3",
				}}},
			},
		},
	}
	bsl := map[string]any{
		"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
		"metadata": map[string]any{"name": VeleroBSL, "namespace": VeleroNamespace},
		"spec": map[string]any{
			"provider":         "aws",
			"default":          true,
			"objectStorage":    map[string]any{"bucket": l.S3Bucket, "prefix": VeleroPrefix},
			"backupSyncPeriod": veleroSyncPeriod,
			"config": map[string]any{
				"region":           "us-east-1",
				"s3ForcePathStyle": "true",
				"s3Url":            l.S3Endpoint,
			},
		},
	}
	if err := replace(ctx, dc.Resource(gvrNamespace), &unstructured.Unstructured{Object: ns}); err != nil {
		return err
	}
	if err := replace(ctx, dc.Resource(gvrDeployment).Namespace(VeleroNamespace), &unstructured.Unstructured{Object: deploy}); err != nil {
		return err
	}
	return replace(ctx, dc.Resource(GVRVeleroBSL).Namespace(VeleroNamespace), &unstructured.Unstructured{Object: bsl})
}

// writeVeleroCredentials writes the AWS shared-credentials file the AWS
// plugin reads (OADP's cloud-credentials secret holds the same text).
func (l *Lab) writeVeleroCredentials() (string, error) {
	path := filepath.Join(l.Dir, "velero", "credentials")
	text := fmt.Sprintf("[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n", l.S3AccessKey, l.S3SecretKey)
	if err := writeFile(path, []byte(text), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// runVeleroServer starts `velero server` for s and waits until the
// BackupStorageLocation is Available (the server has reached the bucket).
func (l *Lab) runVeleroServer(ctx context.Context, s *Site, bin, creds string) (*Velero, error) {
	metrics, err := FreeAddr("127.0.0.1")
	if err != nil {
		return nil, err
	}
	argv := []string{filepath.Join(bin, "velero"), "server",
		"--kubeconfig", s.Kubeconfig, "--namespace", VeleroNamespace,
		"--plugin-dir", filepath.Join(bin, "velero-plugins"),
		"--backup-sync-period", veleroSyncPeriod, "--store-validation-frequency", "2s",
		"--metrics-address", metrics, "--log-format", "json"}
	p, err := StartProcess(ProcessSpec{
		Name: s.Name + "-velero", Argv: argv, Group: true,
		Env: []string{"AWS_SHARED_CREDENTIALS_FILE=" + creds, "VELERO_NAMESPACE=" + VeleroNamespace},
		Log: filepath.Join(l.LogDir, s.Name+"-velero.log"), AppendLog: true,
	})
	if err != nil {
		return nil, err
	}
	dc, err := siteDynamic(s)
	if err != nil {
		p.Kill()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := p.WaitReady(wctx, 500*time.Millisecond, bslAvailable(wctx, dc)); err != nil {
		p.Kill()
		return nil, err
	}
	return &Velero{Process: p, Site: s}, nil
}

func bslAvailable(ctx context.Context, dc dynamic.Interface) func() error {
	return func() error {
		u, err := dc.Resource(GVRVeleroBSL).Namespace(VeleroNamespace).Get(ctx, VeleroBSL, metav1.GetOptions{})
		if err != nil {
			return err
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		if phase != "Available" {
			msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
			return fmt.Errorf("BackupStorageLocation %s is %q: %s", VeleroBSL, phase, msg)
		}
		return nil
	}
}
