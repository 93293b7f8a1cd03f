package labbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
)

func vmObject(ns, name, claim string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"runStrategy": "Always", "template": map[string]any{"spec": map[string]any{
			"volumes": []any{map[string]any{"name": "root", "persistentVolumeClaim": map[string]any{"claimName": claim}}}}}}}}
}

func pvc(ns, name, volume string) *corev1.PersistentVolumeClaim {
	class := "nfs-dynamic"
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, StorageClassName: &class, VolumeName: volume,
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
}

var stepName = regexp.MustCompile(`[^a-z0-9]+`)

// BenchmarkFailover: duration of each failover step with 50 PVs/PVCs and
// 50 VMs in the lab, data sync excluded (dr_failover_final_sync: false),
// from the failover report. The baseline ("api-floor") creates the same 50
// PVs, PVCs and VMs at DR directly with client-go and waits for the PVCs to
// bind and the VMs to run: the floor of any orchestration.
func BenchmarkFailover(b *testing.B) {
	l := lab.Get(b)
	prc, _ := l.Primary.RESTConfig()
	drc, _ := l.DR.RESTConfig()
	prc.QPS, prc.Burst, drc.QPS, drc.Burst = 500, 500, 500, 500
	pcs, dcs := kubernetes.NewForConfigOrDie(prc), kubernetes.NewForConfigOrDie(drc)
	p, d := dynamic.NewForConfigOrDie(prc), dynamic.NewForConfigOrDie(drc)
	s3, err := l.S3Client()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sim.RunControllers(ctx, sim.Sites{Primary: p, DR: d, S3: s3, Bucket: l.S3Bucket}, 200*time.Millisecond, zap.NewNop())
	const vms = 50
	build := func(cs *kubernetes.Clientset, dc dynamic.Interface, ns, server, root string) {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < vms; i++ {
			name := fmt.Sprintf("%s-disk-%02d", ns, i)
			dir := filepath.Join(root, name)
			_ = os.MkdirAll(dir, 0o755)
			_ = os.WriteFile(filepath.Join(dir, "disk.img"), []byte(name), 0o644)
			pv := benchPV("pv-"+name, "nfs-dynamic")
			pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: server, Path: dir}}
			pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: ns, Name: name}
			if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc(ns, name, pv.Name), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, err := dc.Resource(sim.GVRVM).Namespace(ns).Create(ctx, vmObject(ns, fmt.Sprintf("vm-%02d", i), name), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	waitReady := func(cs *kubernetes.Clientset, dc dynamic.Interface, ns string) {
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			bound := 0
			pvcs, _ := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
			for _, c := range pvcs.Items {
				if c.Status.Phase == corev1.ClaimBound {
					bound++
				}
			}
			running := 0
			list, _ := dc.Resource(sim.GVRVM).Namespace(ns).List(ctx, metav1.ListOptions{})
			for _, o := range list.Items {
				if st, _, _ := unstructured.NestedString(o.Object, "status", "printableStatus"); st == "Running" {
					running++
				}
			}
			if bound == vms && running == vms {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		b.Fatalf("namespace %s not ready in time", ns)
	}
	b.Run("api-floor", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			start := time.Now()
			ns := fmt.Sprintf("fo-floor-%d", n)
			build(dcs, d, ns, l.DR.NFSHost, l.DR.ExportRoot)
			waitReady(dcs, d, ns)
			b.ReportMetric(time.Since(start).Seconds(), "total-s")
			b.ReportMetric(0, "ns/op")
		}
	})
	b.Run("failover", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			ns := fmt.Sprintf("fo-bench-%d", n)
			build(pcs, p, ns, l.Primary.NFSHost, l.Primary.ExportRoot)
			waitReady(pcs, p, ns)
			backup := fmt.Sprintf("fo-bench-backup-%d", n)
			if err := sim.WriteBackup(ctx, p, s3, l.S3Bucket, sim.BackupOptions{Name: backup, Namespaces: []string{ns}}); err != nil {
				b.Fatal(err)
			}
			reports := b.TempDir()
			start := time.Now()
			playbook(b, l, repoFile(b, "playbooks/manual_dr/execute_failover.yml"), map[string]any{
				"backup_name": backup, "dr_failover_namespaces": []string{ns}, "dr_failover_report_dir": reports,
				"dr_failover_final_sync": false, "dr_failover_vm_timeout": 300})
			total := time.Since(start)
			m, _ := filepath.Glob(filepath.Join(reports, "failover-*.json"))
			if len(m) == 0 {
				b.Fatal("no failover report")
			}
			raw, _ := os.ReadFile(m[0])
			var rep struct {
				Result string `json:"result"`
				Steps  []struct {
					Name    string  `json:"name"`
					Seconds float64 `json:"seconds"`
				} `json:"steps"`
				VMs []any `json:"vms"`
			}
			if err := json.Unmarshal(raw, &rep); err != nil {
				b.Fatal(err)
			}
			if !strings.HasPrefix(rep.Result, "succeeded") || len(rep.VMs) != vms {
				b.Fatalf("failover %s with %d VMs", rep.Result, len(rep.VMs))
			}
			b.ReportMetric(total.Seconds(), "total-s")
			for _, s := range rep.Steps {
				name := strings.ToLower(s.Name)
				if strings.HasPrefix(name, "parse backup") {
					name = "parse backup"
				}
				b.ReportMetric(s.Seconds, strings.Trim(stepName.ReplaceAllString(name, "-"), "-")+"-s")
			}
			b.ReportMetric(0, "ns/op")
		}
	})
}
