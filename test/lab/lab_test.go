package lab_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

func clientset(t *testing.T, s *lab.Site) *kubernetes.Clientset {
	t.Helper()
	cfg, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// kubectl get of every resource the product uses answers at both sites.
func TestKubectlSeesProductResources(t *testing.T) {
	l := lab.Get(t)
	for _, s := range []*lab.Site{&l.Primary, &l.DR} {
		out, err := exec.Command("kubectl", "--kubeconfig", s.Kubeconfig, "get",
			"pv,volumesnapshots,volumesnapshotcontents,volumesnapshotclasses,virtualmachines,backups.velero.io,restores.velero.io,storageclass",
			"-A").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: kubectl get: %v\n%s", s.Name, err, out)
		}
		if !strings.Contains(string(out), "nfs-dynamic") {
			t.Errorf("%s: StorageClass nfs-dynamic missing:\n%s", s.Name, out)
		}
	}
}

// A PV pre-bound to a PVC becomes Bound (kube-controller-manager runs), and a
// deleted PV disappears (its pv-protection finalizer is removed).
func TestPVBindsAndDeletes(t *testing.T) {
	l := lab.Get(t)
	for _, s := range []*lab.Site{&l.Primary, &l.DR} {
		t.Run(s.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cs := clientset(t, s)
			ns := "labtest"
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			qty := resource.MustParse("1Gi")
			pv := &corev1.PersistentVolume{
				ObjectMeta: metav1.ObjectMeta{Name: "pv-bind-test"},
				Spec: corev1.PersistentVolumeSpec{
					Capacity:                      corev1.ResourceList{corev1.ResourceStorage: qty},
					AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
					PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
					StorageClassName:              "nfs-dynamic",
					PersistentVolumeSource: corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{
						Server: s.NFSHost, Path: filepath.Join(s.ExportRoot, "labtest-pvc"),
					}},
					ClaimRef: &corev1.ObjectReference{Namespace: ns, Name: "pvc-bind-test"},
				},
			}
			if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			sc := "nfs-dynamic"
			pvc := &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: "pvc-bind-test", Namespace: ns},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
					StorageClassName: &sc,
					VolumeName:       "pv-bind-test",
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: qty}},
				},
			}
			if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitUntil(ctx, t, "PVC Bound", func() bool {
				got, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "pvc-bind-test", metav1.GetOptions{})
				return err == nil && got.Status.Phase == corev1.ClaimBound
			})
			got, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pv-bind-test", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != corev1.VolumeBound {
				t.Fatalf("PV phase %s, want Bound", got.Status.Phase)
			}
			if len(got.Finalizers) == 0 {
				t.Errorf("PV has no pv-protection finalizer; admission did not run")
			}
			if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "pvc-bind-test", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := cs.CoreV1().PersistentVolumes().Delete(ctx, "pv-bind-test", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitUntil(ctx, t, "PV gone", func() bool {
				_, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pv-bind-test", metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			})
		})
	}
}

// The DR NFS host can pull from the primary NFS host over SSH with the lab
// key, as the sync roles do.
func TestDRHostPullsFromPrimaryOverSSH(t *testing.T) {
	l := lab.Get(t)
	src := filepath.Join(l.Primary.ExportRoot, "ssh-test")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "disk.img"), []byte("hello from primary"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(l.DR.ExportRoot, "ssh-test")
	rsh := strings.Join([]string{"ssh", "-i", l.SSHKey, "-p", "2222", "-o", "UserKnownHostsFile=" + l.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"}, " ")
	// On the DR host, run rsync pulling from the primary host.
	remote := []string{"rsync", "-a", "-e", shq(rsh), shq("root@" + l.Primary.NFSHost + ":" + src + "/"), shq(dst + "/")}
	out, err := exec.Command("ssh", l.SSHArgs(&l.DR, strings.Join(remote, " "))...).CombinedOutput()
	if err != nil {
		t.Fatalf("pull over ssh: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dst, "disk.img"))
	if err != nil || string(got) != "hello from primary" {
		t.Fatalf("DR copy = %q, %v", got, err)
	}
	// A key that is not the lab's is refused.
	other := filepath.Join(t.TempDir(), "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	args := l.SSHArgs(&l.Primary, "true")
	args[1] = other
	if err := exec.Command("ssh", args...).Run(); err == nil {
		t.Fatal("ssh with a foreign key succeeded; the NFS host must only accept the lab key")
	}
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// An object put into the S3 bucket can be read back.
func TestS3RoundTrip(t *testing.T) {
	l := lab.Get(t)
	ctx := context.Background()
	c, err := l.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"kind":"Backup"}`)
	if _, err := c.PutObject(ctx, l.S3Bucket, "backups/x/velero-backup.json", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.GetObject(ctx, l.S3Bucket, "backups/x/velero-backup.json", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %q, %v", got, err)
	}
}

// The env file and inventory carry what the docs promise.
func TestEnvAndInventory(t *testing.T) {
	l := lab.Get(t)
	out, err := exec.Command("bash", "-c", `set -eu; source "$1"; for v in KUBECONFIG_PRIMARY KUBECONFIG_DR PRIMARY_NFS_HOST DR_NFS_HOST PRIMARY_EXPORT_ROOT DR_EXPORT_ROOT S3_ENDPOINT S3_BUCKET S3_ACCESS_KEY S3_SECRET_KEY LAB_SSH_KEY; do printf '%s=%s\n' "$v" "${!v}"; done`, "_", l.EnvFile).CombinedOutput()
	if err != nil {
		t.Fatalf("source env: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PRIMARY_NFS_HOST="+l.Primary.NFSHost+"\n") {
		t.Errorf("env lacks PRIMARY_NFS_HOST=%s:\n%s", l.Primary.NFSHost, out)
	}
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		t.Fatalf("ansible-inventory not installed (make deps): %v", err)
	}
	inv, err := exec.Command("ansible-inventory", "-i", l.Inventory, "--host", "dr-nfs").CombinedOutput()
	if err != nil {
		t.Fatalf("ansible-inventory: %v\n%s", err, inv)
	}
	for _, want := range []string{`"ocpdr_primary_nfs_server": "` + l.Primary.NFSHost + `"`, `"ocpdr_dr_export_root": "` + l.DR.ExportRoot + `"`, `"ansible_host": "` + l.DR.NFSHost + `"`} {
		if !strings.Contains(string(inv), want) {
			t.Errorf("inventory host vars lack %s:\n%s", want, inv)
		}
	}
	// Ansible reaches both NFS hosts with only the inventory.
	ping := exec.Command("ansible", "-i", l.Inventory, "primary_nfs_server:dr_nfs_server", "-m", "ansible.builtin.ping")
	ping.Env = append(os.Environ(), "ANSIBLE_HOST_KEY_CHECKING=True")
	if out, err := ping.CombinedOutput(); err != nil {
		t.Fatalf("ansible ping: %v\n%s", err, out)
	}
}

func waitUntil(ctx context.Context, t *testing.T, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Run as root (CI), both export roots are XFS with reflink: a clone of a
// file shares its blocks and takes no copy, the base of point-in-time captures.
func TestExportRootsCloneWithReflink(t *testing.T) {
	l := lab.Get(t)
	if os.Geteuid() != 0 {
		t.Skip("export roots are XFS loop mounts only as root")
	}
	for _, s := range []*lab.Site{&l.Primary, &l.DR} {
		if !s.Reflink {
			t.Fatalf("%s export root %s is not an XFS reflink filesystem although the lab runs as root", s.Name, s.ExportRoot)
		}
		src := filepath.Join(s.ExportRoot, "reflink-test.img")
		if err := os.WriteFile(src, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "--reflink=always", src, src+".clone").CombinedOutput(); err != nil {
			t.Fatalf("%s: reflink clone failed: %v %s", s.Name, err, out)
		}
	}
}
