// velero.go runs a real Velero server (v1.18, built by build-tools.sh from
// test/tools/velero) for one lab site, on request: the tests that need real
// Velero call StartVelero and every other test pays nothing. It installs
// Velero's own CRDs (`velero install --crds-only`, replacing the lab's
// simplified ones), the AWS credentials, a BackupStorageLocation on the lab's
// versitygw bucket and the 0-replica Deployment a Restore looks for.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// VeleroNamespace is where the roles look for Velero (OADP's namespace).
const VeleroNamespace = "openshift-adp"

// VeleroBSL is the BackupStorageLocation both sites' servers use: the
// lab's bucket (ocpdr_s3_bucket) under VeleroPrefix, as OADP at two sites.
const VeleroBSL = "default"

// VeleroPrefix is the BSL's objectStorage.prefix; the failover reads it as
// oadp_backup_parser_prefix. Without a prefix Velero marks the location
// Unavailable as soon as the bucket holds any other top-level directory
// (the simulator's malformed-backup tests write one).
const VeleroPrefix = "velero"

// GVRs of the Velero objects the lab creates and tests read.
var (
	GVRVeleroBackup  = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backups"}
	GVRVeleroRestore = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "restores"}
	GVRVeleroBSL     = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backupstoragelocations"}
	gvrCRD           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gvrDeployment    = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrNamespace     = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// Velero is a running `velero server` for one site.
type Velero struct {
	*Process
	Site *Site
	lock *os.File // the host's Velero lock, held while the server runs
}

// stop stops the server and releases the host's Velero lock (veleroMu held).
func (v *Velero) stop() {
	_, _ = v.Stop(20 * time.Second)
	if v.lock != nil {
		_ = v.lock.Close()
		v.lock = nil
	}
}

// Only one Velero server runs at a time on the host: controller-runtime's
// metrics listener binds :8080 and Velero has no flag to move it.
var (
	veleroMu      sync.Mutex
	veleroCurrent *Velero
)

// StartVelero starts a Velero server for site s (stopping the lab's other
// one, if any) and returns once its BackupStorageLocation is Available. The
// server stops when the test ends.
func StartVelero(t testing.TB, l *Lab, s *Site) *Velero {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	v, err := l.startVelero(ctx, s)
	if err != nil {
		t.Fatalf("velero for %s: %v", s.Name, err)
	}
	t.Cleanup(func() { v.StopServer() })
	return v
}

// StopServer stops the server (a no-op when it has stopped already).
func (v *Velero) StopServer() {
	veleroMu.Lock()
	defer veleroMu.Unlock()
	v.stop()
	if veleroCurrent == v {
		veleroCurrent = nil
	}
}

func (l *Lab) startVelero(ctx context.Context, s *Site) (*Velero, error) {
	bin, err := ensureVelero()
	if err != nil {
		return nil, err
	}
	dc, err := siteDynamic(s)
	if err != nil {
		return nil, err
	}
	if err := installVeleroCRDs(ctx, dc, filepath.Join(bin, "velero")); err != nil {
		return nil, err
	}
	if err := l.applyVeleroObjects(ctx, dc); err != nil {
		return nil, err
	}
	creds, err := l.writeVeleroCredentials()
	if err != nil {
		return nil, err
	}
	veleroMu.Lock()
	defer veleroMu.Unlock()
	if veleroCurrent != nil {
		veleroCurrent.stop()
		veleroCurrent = nil
	}
	lock, err := lockVeleroHost(ctx)
	if err != nil {
		return nil, err
	}
	v, err := l.runVeleroServer(ctx, s, bin, creds)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	v.lock = lock
	veleroCurrent = v
	return v, nil
}

// ensureVelero builds velero and its AWS plugin on first use (cached by
// build-tools.sh with a stamp per version) and returns their directory.
func ensureVelero() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "test", "lab", "build-tools.sh"), "velero", "velero-plugin-for-aws")
	cmd.Env = append(os.Environ(), "CACHE_DIR="+filepath.Join(root, ".cache"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build velero: %w\n%s", err, out)
	}
	bin := filepath.Join(root, ".cache", "bin")
	plugins := filepath.Join(bin, "velero-plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return "", fmt.Errorf("plugin dir: %w", err)
	}
	link := filepath.Join(plugins, "velero-plugin-for-aws")
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(filepath.Join(bin, "velero-plugin-for-aws"), link); err != nil {
			return "", fmt.Errorf("plugin link: %w", err)
		}
	}
	return bin, nil
}

func siteDynamic(s *Site) (dynamic.Interface, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return dc, nil
}

// installVeleroCRDs applies `velero install --crds-only --dry-run -o yaml`,
// replacing CRDs of the same name (the lab's own declare a status
// subresource that Velero's do not, which would drop Velero's status).
func installVeleroCRDs(ctx context.Context, dc dynamic.Interface, velero string) error {
	out, err := exec.CommandContext(ctx, velero, "install", "--crds-only", "--dry-run", "-o", "yaml").Output()
	if err != nil {
		return fmt.Errorf("velero install --crds-only: %w", err)
	}
	crds, err := decodeList(out)
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if err := replace(ctx, dc.Resource(gvrCRD), crd); err != nil {
			return err
		}
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, dc, crd.GetName()); err != nil {
			return err
		}
	}
	return nil
}

// decodeList reads a v1 List (what `velero install -o yaml` prints) or a
// single object.
func decodeList(b []byte) ([]*unstructured.Unstructured, error) {
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &obj.Object); err != nil {
		return nil, fmt.Errorf("parse velero CRDs: %w", err)
	}
	if !obj.IsList() {
		return []*unstructured.Unstructured{obj}, nil
	}
	list, err := obj.ToList()
	if err != nil {
		return nil, fmt.Errorf("parse velero CRD list: %w", err)
	}
	var items []*unstructured.Unstructured
	for i := range list.Items {
		items = append(items, &list.Items[i])
	}
	if len(items) == 0 {
		return nil, errors.New("velero install --crds-only printed no CRDs")
	}
	return items, nil
}

// replace creates obj, or updates the existing object of that name to it.
func replace(ctx context.Context, rc dynamic.ResourceInterface, obj *unstructured.Unstructured) error {
	obj.SetResourceVersion("")
	unstructured.RemoveNestedField(obj.Object, "status")
	_, err := rc.Create(ctx, obj, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create %s: %w", obj.GetName(), err)
		}
		return nil
	}
	cur, err := rc.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get %s: %w", obj.GetName(), err)
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	if _, err := rc.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update %s: %w", obj.GetName(), err)
	}
	return nil
}

func waitEstablished(ctx context.Context, dc dynamic.Interface, name string) error {
	return poll(ctx, 200*time.Millisecond, func() error {
		u, err := dc.Resource(gvrCRD).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("CRD %s not established", name)
	})
}

// poll calls check every interval until it returns nil or ctx ends.
func poll(ctx context.Context, interval time.Duration, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}
