package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// startWatcher runs `forwarder watch-exports` on the primary NFS host's
// export root (in the lab the "host" is a local directory), posting
// NFSDirectory events to the receiver.
func (f *Flow) startWatcher(ctx context.Context, quiet, maxDelay time.Duration) error {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	f.watcherMetrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	w, err := startService("watch-exports", filepath.Join(f.WorkDir, "logs"), []string{"FORWARDER_WEBHOOK_TOKEN=" + webhookTok},
		filepath.Join(f.Bin, "forwarder"), "watch-exports",
		"--export-root", f.Lab.Primary.ExportRoot,
		"--nfs-server", f.Lab.Primary.NFSHost,
		"--webhook-url", f.receiverURL+"/endpoint",
		"--quiet", quiet.String(), "--max-delay", maxDelay.String(),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port),
	)
	if err != nil {
		return err
	}
	f.watcher = w
	f.services = append(f.services, w)
	if err := waitTCP(ctx, w, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		return err
	}
	f.say("forwarder watch-exports watching %s (log %s)", f.Lab.Primary.ExportRoot, w.Log)
	return nil
}

// stopWatcher stops watch-exports (it stays in services; stop is idempotent).
func (f *Flow) stopWatcher() {
	if f.watcher != nil {
		stopService(f.watcher)
		f.watcher = nil
	}
}

// ReplicateDataWrites shows the data path within seconds: the VM writes into
// its disk directory, watch-exports reports the directory, the rule "Sync NFS
// directory written on the primary" runs the sync, the bytes are at DR.
// Afterwards the watcher is stopped, so that the next step can show what the
// periodic sync does when such events are lost.
func (f *Flow) ReplicateDataWrites(ctx context.Context) error {
	if err := f.startWatcher(ctx, time.Second, 5*time.Second); err != nil {
		return err
	}
	// The watcher reports every PV directory once at start; let that settle.
	if err := f.waitQuiet(ctx); err != nil {
		return err
	}
	disk := filepath.Join(f.Lab.Primary.ExportRoot, Namespace+"-"+DiskPVC)
	wrote := time.Now()
	for i := 0; i < 3; i++ {
		if err := writeRandomFile(filepath.Join(disk, fmt.Sprintf("guest-write-%d.bin", i)), 256<<10); err != nil {
			return err
		}
	}
	f.say("the VM wrote 3 files into %s (no Kubernetes object changed)", disk)
	drDisk := filepath.Join(f.Lab.DR.ExportRoot, Namespace+"-"+DiskPVC)
	if err := eventually(ctx, "DR copy of the new data", func() error { return sameTree(disk, drDisk) }); err != nil {
		return err
	}
	f.say("the data is at DR %.1fs after the write", time.Since(wrote).Seconds())
	err := eventually(ctx, "a successful 'EDA - Sync NFS Path to DR' job with its replication lag", func() error {
		jobs, err := f.jobs(ctx)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.Name == "EDA - Sync NFS Path to DR" && j.Status == "successful" && j.Finished != nil && j.Finished.After(wrote) && j.Lag > 0 {
				f.say("receiver job %q: %s, replication lag %.1fs (first write to end of sync)", j.Name, j.Status, j.Lag)
				return nil
			}
		}
		return fmt.Errorf("jobs: %+v", jobs)
	})
	if err != nil {
		return err
	}
	f.stopWatcher()
	f.say("watch-exports stopped: from here on, writes reach DR only through the periodic sync")
	return nil
}

// writeFiles writes n small files named prefix-<i> into dir.
func writeFiles(dir, prefix string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d", prefix, i)), []byte(fmt.Sprintf("%s %d\n", prefix, i)), 0o644); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}
