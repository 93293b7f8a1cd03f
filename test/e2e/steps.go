package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// StartServices starts the receiver with its local runner and the forwarder
// watching the primary site.
func (f *Flow) StartServices(ctx context.Context) error {
	if err := f.startReceiver(ctx); err != nil {
		return err
	}
	return f.startForwarderAndSims()
}

// startReceiver starts the receiver with the shipped rulebook and catalog.
func (f *Flow) startReceiver(ctx context.Context) error {
	rcv, err := lab.StartReceiver(ctx, lab.ReceiverSpec{
		Bin:      filepath.Join(f.Bin, "receiver"),
		Rulebook: filepath.Join(f.Root, "rulebooks", "ocp_dr_events.yml"),
		StateDir: filepath.Join(f.WorkDir, "receiver-state"),
		Token:    webhookTok,
		Args: []string{
			"--job-templates", filepath.Join(f.Root, "examples", "job-templates.yml"),
			"--inventory", f.Lab.Inventory,
			"--job-log-dir", filepath.Join(f.WorkDir, "jobs"),
		},
		Log:       filepath.Join(f.WorkDir, "logs", "receiver.log"),
		Group:     true,
		PollEvery: 100 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	f.services = append(f.services, rcv.Process)
	f.receiverURL = rcv.URL
	f.say("receiver listening on %s (log %s)", f.receiverURL, rcv.Log)
	return nil
}

func (f *Flow) startForwarderAndSims() error {
	logs := filepath.Join(f.WorkDir, "logs")
	fwd, err := startService("forwarder", logs, []string{"FORWARDER_WEBHOOK_TOKEN=" + webhookTok},
		filepath.Join(f.Bin, "forwarder"),
		"--kubeconfig", f.Lab.Primary.Kubeconfig,
		"--webhook-url", f.receiverURL+"/endpoint",
		"--cluster-name", "primary",
		"--metrics-addr", "127.0.0.1:0",
	)
	if err != nil {
		return err
	}
	f.services = append(f.services, fwd)
	f.say("forwarder watching %s (log %s)", f.Lab.Primary.APIServerURL, fwd.Log)

	sim, err := startService("labsim", logs, nil,
		filepath.Join(f.Bin, "labsim"), "controllers", "--lab", f.Lab.Dir)
	if err != nil {
		return err
	}
	f.services = append(f.services, sim)
	f.say("simulated Velero and KubeVirt controllers running for the DR site (log %s)", sim.Log)
	return nil
}

// ReplicateNewPV creates a VM with an NFS disk on the primary and waits until
// the event-driven sync has copied its directory to DR.
func (f *Flow) ReplicateNewPV(ctx context.Context) error {
	l := f.Lab
	disk := filepath.Join(l.Primary.ExportRoot, Namespace+"-"+DiskPVC)
	if err := writeRandomFile(filepath.Join(disk, "disk.img"), 1<<20); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(disk, "README"), []byte("demo VM disk\n"), 0o644); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	scratch := filepath.Join(l.Primary.ExportRoot, "scratch")
	if err := writeRandomFile(filepath.Join(scratch, "data.bin"), 64<<10); err != nil {
		return err
	}
	f.say("wrote %s and %s on the primary NFS host", disk, scratch)
	if err := ensureNamespace(ctx, f.primary, Namespace); err != nil {
		return err
	}
	claim := &corev1.ObjectReference{Namespace: Namespace, Name: DiskPVC}
	for _, pv := range []*corev1.PersistentVolume{
		nfsPV(DiskPV, l.Primary.NFSHost, disk, claim),
		nfsPV(ScratchPV, l.Primary.NFSHost, scratch, nil),
	} {
		if _, err := f.primary.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create PV %s: %w", pv.Name, err)
		}
	}
	sc := "nfs-dynamic"
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: DiskPVC, Namespace: Namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: &sc,
			VolumeName:       DiskPV,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := f.primary.CoreV1().PersistentVolumeClaims(Namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create PVC: %w", err)
	}
	vm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
		"metadata": map[string]any{"name": VMName, "namespace": Namespace},
		"spec": map[string]any{
			"runStrategy": "Always",
			"template": map[string]any{"spec": map[string]any{
				"domain":  map[string]any{"devices": map[string]any{"disks": []any{map[string]any{"name": "rootdisk", "disk": map[string]any{"bus": "virtio"}}}}, "resources": map[string]any{"requests": map[string]any{"memory": "1Gi"}}},
				"volumes": []any{map[string]any{"name": "rootdisk", "persistentVolumeClaim": map[string]any{"claimName": DiskPVC}}},
			}},
		},
	}}
	if _, err := f.primaryDyn.Resource(gvrVM).Namespace(Namespace).Create(ctx, vm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create VM: %w", err)
	}
	f.say("created namespace %s, VirtualMachine %s, PV %s (bound to PVC %s) and PV %s", Namespace, VMName, DiskPV, DiskPVC, ScratchPV)
	drDisk := filepath.Join(l.DR.ExportRoot, Namespace+"-"+DiskPVC)
	if err := eventually(ctx, "DR copy of the disk", func() error { return sameTree(disk, drDisk) }); err != nil {
		return err
	}
	f.say("the PV event reached the receiver, the rule fired, the sync job ran: %s equals the primary", drDisk)
	if err := eventually(ctx, "DR copy of scratch", func() error { return sameTree(scratch, filepath.Join(l.DR.ExportRoot, "scratch")) }); err != nil {
		return err
	}
	err := eventually(ctx, "a successful sync job in /api/v1/jobs", func() error {
		jobs, err := f.jobs(ctx)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.Name == "EDA - Sync NFS PV to DR" && j.Status == "successful" {
				f.say("receiver job %q: %s in %.1fs (lane %s)", j.Name, j.Status, j.Duration, j.Lane)
				return nil
			}
		}
		return fmt.Errorf("jobs: %+v", jobs)
	})
	if err != nil {
		return err
	}
	return eventually(ctx, "a recovery point of the disk at DR", func() error { return f.showPoints(Namespace + "-" + DiskPVC) })
}

// showPoints lists the recovery points kept at DR for the PV directory rel
// (docs/recovery-points.md) and fails when there is none.
func (f *Flow) showPoints(rel string) error {
	files, _ := filepath.Glob(filepath.Join(f.Lab.DR.ExportRoot, ".ocpdr-points", rel, "*", "manifest.json"))
	if len(files) == 0 {
		return fmt.Errorf("no recovery point under %s", filepath.Join(f.Lab.DR.ExportRoot, ".ocpdr-points", rel))
	}
	for _, mf := range files {
		b, err := os.ReadFile(mf)
		if err != nil {
			return fmt.Errorf("read manifest: %w", err)
		}
		var m struct{ Time, Consistency, Source string }
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("manifest %s: %w", mf, err)
		}
		f.say("recovery point %s: %s, copied from a %s, kept at %s", m.Time, m.Consistency, m.Source, filepath.Dir(mf))
	}
	return nil
}

// RecordSnapshot creates a VolumeSnapshot, marks it ready, and waits for its
// metadata document at DR.
func (f *Flow) RecordSnapshot(ctx context.Context) error {
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": SnapshotVS, "namespace": Namespace, "annotations": map[string]any{
			// Event content is hostile: this must reach DR as text and never run.
			hostileAnnotation: f.hostileTemplate(),
		}},
		"spec": map[string]any{
			"volumeSnapshotClassName": "csi-nfs-snapclass",
			"source":                  map[string]any{"persistentVolumeClaimName": DiskPVC},
		},
	}}
	created, err := f.primaryDyn.Resource(gvrVS).Namespace(Namespace).Create(ctx, vs, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create VolumeSnapshot: %w", err)
	}
	f.say("created VolumeSnapshot %s/%s (not ready yet)", Namespace, SnapshotVS)
	created.Object["status"] = map[string]any{
		"readyToUse":                     true,
		"boundVolumeSnapshotContentName": "snapcontent-" + string(created.GetUID()),
		"restoreSize":                    "1Gi",
		"creationTime":                   metav1.Now().UTC().Format("2006-01-02T15:04:05Z"),
	}
	if _, err := f.primaryDyn.Resource(gvrVS).Namespace(Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark snapshot ready: %w", err)
	}
	f.say("marked it readyToUse (as the snapshot controller would)")
	uid := string(created.GetUID())
	var found string
	err = eventually(ctx, "snapshot metadata at DR", func() error {
		found = ""
		_ = filepath.WalkDir(f.Lab.DR.ExportRoot, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
				return nil
			}
			b, _ := os.ReadFile(p)
			var doc map[string]any
			if json.Unmarshal(b, &doc) == nil && strings.Contains(string(b), uid) && strings.Contains(string(b), SnapshotVS) {
				found = p
			}
			return nil
		})
		if found == "" {
			return fmt.Errorf("no metadata document for uid %s under %s", uid, f.Lab.DR.ExportRoot)
		}
		return nil
	})
	if err != nil {
		return err
	}
	f.say("metadata recorded at DR: %s", found)
	return f.checkHostileAnnotation(found)
}

// hostileAnnotation carries a Jinja template that would create a file on the
// Ansible host if any part of the path templated event values.
const hostileAnnotation = "ocpv-dr.io/note"

func (f *Flow) hostileMarker() string { return filepath.Join(f.WorkDir, "event-template-ran") }

func (f *Flow) hostileTemplate() string {
	return "{{ lookup('pipe', 'touch " + f.hostileMarker() + "') }}"
}

// checkHostileAnnotation asserts that the annotation's template did not run
// and that the metadata document at DR holds it verbatim.
func (f *Flow) checkHostileAnnotation(doc string) error {
	if _, err := os.Stat(f.hostileMarker()); err == nil {
		return fmt.Errorf("the template in annotation %s ran on the Ansible host (%s exists)", hostileAnnotation, f.hostileMarker())
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		return fmt.Errorf("read %s: %w", doc, err)
	}
	var got struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.Annotations[hostileAnnotation] != f.hostileTemplate() {
		return fmt.Errorf("metadata document %s does not hold annotation %s verbatim (%v): %s", doc, hostileAnnotation, err, b)
	}
	f.say("the annotation holding a Jinja template reached DR as text; nothing ran")
	return nil
}

// PeriodicSync changes data without any Kubernetes event and shows that the
// periodic sync finds and repairs it.
func (f *Flow) PeriodicSync(ctx context.Context) error {
	// Let the event-driven jobs finish, so only the periodic sync can
	// catch what changes next.
	if err := f.waitQuiet(ctx); err != nil {
		return err
	}
	disk := filepath.Join(f.Lab.Primary.ExportRoot, Namespace+"-"+DiskPVC)
	if err := writeRandomFile(filepath.Join(disk, "disk.img"), 1<<20); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(disk, "new-file.txt"), []byte("written by the VM after the last event\n"), 0o644); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	f.say("the VM wrote into its disk: no PV event, so DR is now behind")
	reportDir := filepath.Join(f.WorkDir, "reports")
	metricsFile := filepath.Join(f.WorkDir, "metrics", "ocpdr_periodic_sync.prom")
	if err := os.MkdirAll(filepath.Dir(metricsFile), 0o755); err != nil {
		return fmt.Errorf("metrics dir: %w", err)
	}
	out, err := f.runAnsible(ctx, "periodic-sync", "playbooks/scheduled/execute_periodic_sync.yml", map[string]any{
		"periodic_storage_sync_report_dir": reportDir,
		"ocpdr_metrics_textfile":           metricsFile,
	})
	if err != nil {
		return err
	}
	rep, err := latestReport(reportDir, "periodic")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(out, 20))
	}
	f.say("periodic sync report: %s", rep)
	b, err := os.ReadFile(rep)
	if err != nil {
		return fmt.Errorf("read report: %w", err)
	}
	var report struct {
		Volumes []struct {
			Name             string `json:"name"`
			Status           string `json:"status"`
			FilesTransferred int    `json:"files_transferred"`
		} `json:"volumes"`
	}
	if err := json.Unmarshal(b, &report); err != nil {
		return fmt.Errorf("report %s: %w", rep, err)
	}
	fixed := false
	for _, v := range report.Volumes {
		if v.Name == DiskPV && v.Status == "synced" && v.FilesTransferred == 2 {
			fixed = true
			f.say("the report shows %s synced with %d files transferred (the changed disk image and the new file)", v.Name, v.FilesTransferred)
		}
	}
	if !fixed {
		return fmt.Errorf("report %s does not show %s synced with its 2 changed files: %s", rep, DiskPV, b)
	}
	if err := sameTree(disk, filepath.Join(f.Lab.DR.ExportRoot, Namespace+"-"+DiskPVC)); err != nil {
		return fmt.Errorf("after periodic sync DR still differs: %w", err)
	}
	f.say("DR equals the primary again")
	prom, err := os.ReadFile(metricsFile)
	if err != nil {
		return fmt.Errorf("the periodic sync wrote no metrics for node_exporter: %w", err)
	}
	synced := regexp.MustCompile(`(?m)^ocpdr_periodic_sync_volumes\{status="synced"\} ([1-9][0-9]*)$`).FindSubmatch(prom)
	last := regexp.MustCompile(`(?m)^ocpdr_periodic_sync_last_run_timestamp_seconds ([0-9]+)$`).FindSubmatch(prom)
	if synced == nil || last == nil {
		return fmt.Errorf("metrics file %s lacks the synced volumes or the run time:\n%s", metricsFile, prom)
	}
	if ts, _ := strconv.ParseInt(string(last[1]), 10, 64); time.Since(time.Unix(ts, 0)) > 10*time.Minute {
		return fmt.Errorf("metrics file %s: last run %s is not this run", metricsFile, last[1])
	}
	f.say("metrics for Prometheus in %s: %s volumes synced (alerts in deploy/monitoring/)", metricsFile, synced[1])
	return nil
}

func latestReport(dir, prefix string) (string, error) {
	var newest string
	var newestMod int64
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") || !strings.Contains(filepath.Base(p), prefix) {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().UnixNano() > newestMod {
			newest, newestMod = p, info.ModTime().UnixNano()
		}
		return nil
	})
	if newest == "" {
		return "", fmt.Errorf("no %s report (*.json) in %s", prefix, dir)
	}
	return newest, nil
}

// ArchiveDeletedPV deletes the scratch PV and checks its DR copy is archived.
func (f *Flow) ArchiveDeletedPV(ctx context.Context) error {
	if err := f.primary.CoreV1().PersistentVolumes().Delete(ctx, ScratchPV, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete PV: %w", err)
	}
	f.say("deleted PV %s on the primary", ScratchPV)
	root := f.Lab.DR.ExportRoot
	var archived string
	err := eventually(ctx, "archived DR copy", func() error {
		if _, err := os.Stat(filepath.Join(root, "scratch")); err == nil {
			return fmt.Errorf("%s still in place", filepath.Join(root, "scratch"))
		}
		entries, err := os.ReadDir(root)
		if err != nil {
			return fmt.Errorf("read DR export: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "archived-scratch-") {
				archived = filepath.Join(root, e.Name())
				return sameTree(filepath.Join(f.Lab.Primary.ExportRoot, "scratch"), archived)
			}
		}
		return fmt.Errorf("no archived-scratch-* in %s", root)
	})
	if err != nil {
		return err
	}
	f.say("DR copy kept as %s", archived)
	return nil
}

// Failover writes a Velero-format backup, runs the failover playbook and
// checks the DR site runs the VM on the DR NFS server.
func (f *Flow) Failover(ctx context.Context) error {
	if _, err := f.runTool(ctx, "labsim-backup", filepath.Join(f.Bin, "labsim"), "backup", "--lab", f.Lab.Dir, "--name", BackupName, "--namespace", Namespace); err != nil {
		return err
	}
	f.say("OADP-format backup %s written to s3://%s", BackupName, f.Lab.S3Bucket)
	reportDir := filepath.Join(f.WorkDir, "reports")
	if _, err := f.runAnsible(ctx, "failover", "playbooks/manual_dr/execute_failover.yml", map[string]any{
		"backup_name":            BackupName,
		"dr_failover_namespaces": []string{Namespace},
		"dr_failover_report_dir": reportDir,
		"dr_failover_vm_timeout": 120,
	}); err != nil {
		return err
	}
	pv, err := f.dr.CoreV1().PersistentVolumes().Get(ctx, DiskPV, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("DR PV: %w", err)
	}
	if pv.Spec.NFS == nil || pv.Spec.NFS.Server != f.Lab.DR.NFSHost {
		return fmt.Errorf("DR PV %s does not point at the DR NFS server: %+v", DiskPV, pv.Spec.PersistentVolumeSource)
	}
	f.say("DR PV %s -> %s:%s", DiskPV, pv.Spec.NFS.Server, pv.Spec.NFS.Path)
	pvc, err := f.dr.CoreV1().PersistentVolumeClaims(Namespace).Get(ctx, DiskPVC, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("DR PVC: %w", err)
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		return fmt.Errorf("DR PVC %s is %s, want Bound", DiskPVC, pvc.Status.Phase)
	}
	vm, err := f.drDyn.Resource(gvrVM).Namespace(Namespace).Get(ctx, VMName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("DR VM: %w", err)
	}
	if st := nestedString(vm, "status", "printableStatus"); st != "Running" {
		return fmt.Errorf("DR VM is %q, want Running", st)
	}
	f.say("PVC %s Bound and VM %s Running at DR", DiskPVC, VMName)
	rep, err := latestReport(reportDir, "failover")
	if err != nil {
		return err
	}
	f.say("failover report with step timings: %s", rep)
	return nil
}

func (f *Flow) runTool(ctx context.Context, name string, argv ...string) (string, error) {
	return runLogged(ctx, f.Root, filepath.Join(f.WorkDir, name+".log"), argv...)
}
