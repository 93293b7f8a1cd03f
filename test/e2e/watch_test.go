package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// TestWatchExportsReplicatesDataWrites runs `forwarder watch-exports` and the
// receiver (local runner, shipped rulebook) on the lab: files written into
// several PV directories on the primary NFS host, and into a directory
// created after the watcher started, arrive at DR with the same content; a
// real inotify queue overflow (the watcher stopped while more events than
// fs.inotify.max_queued_events pile up) still ends with a full, correct copy.
func TestWatchExportsReplicatesDataWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("uses the lab")
	}
	l := lab.Get(t)
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/forwarder", "./cmd/receiver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	work := filepath.Join(t.TempDir(), "work")
	f, err := New(Options{Lab: l, Root: root, Bin: bin, WorkDir: work, Out: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	defer func() {
		if t.Failed() {
			for _, name := range []string{"receiver", "watch-exports"} {
				if b, err := os.ReadFile(filepath.Join(work, "logs", name+".log")); err == nil {
					t.Logf("--- %s log (tail) ---\n%s", name, tail(string(b), 40))
				}
			}
		}
	}()

	dirs := []string{"wx-pv-1", "wx-pv-2", "wx-pv-3", "wx-pv-4"}
	for _, d := range dirs {
		if err := writeFiles(filepath.Join(l.Primary.ExportRoot, d), "initial", 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.startReceiver(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.startWatcher(ctx, 500*time.Millisecond, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	converged := func(what string, names ...string) {
		t.Helper()
		err := eventually(ctx, what, func() error {
			for _, d := range names {
				if err := sameTree(filepath.Join(l.Primary.ExportRoot, d), filepath.Join(l.DR.ExportRoot, d)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The start-up rescan reports the existing directories.
	converged("initial copies", dirs...)

	// Writes into every directory while the watcher runs, some files
	// rewritten, and a directory created after the start.
	for round := 0; round < 3; round++ {
		for i, d := range dirs {
			if err := writeFiles(filepath.Join(l.Primary.ExportRoot, d), fmt.Sprintf("round%d", round), 5+i); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(l.Primary.ExportRoot, d, "initial-0"), []byte(fmt.Sprintf("rewritten in round %d\n", round)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := writeFiles(filepath.Join(l.Primary.ExportRoot, "wx-pv-late", "disk"), "late", 4); err != nil {
		t.Fatal(err)
	}
	converged("the writes and the late directory", append(dirs, "wx-pv-late")...)

	// Overflow: with the watcher stopped, more events than the kernel queue
	// holds pile up in a watched directory (two per file: create and modify).
	if err := writeFiles(filepath.Join(l.Primary.ExportRoot, "wx-pv-2", "bulk"), "seed", 1); err != nil {
		t.Fatal(err)
	}
	converged("the bulk directory", "wx-pv-2")
	if err := f.waitQuiet(ctx); err != nil {
		t.Fatal(err)
	}
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		limit, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	pid := f.watcher.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(filepath.Join(l.Primary.ExportRoot, "wx-pv-2", "bulk"), "bulk", limit/2+2000); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Primary.ExportRoot, "wx-pv-4", "after-overflow"), []byte("late write\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	converged("a full copy after the overflow", append(dirs, "wx-pv-late")...)
	if n := metric(t, f.watcherMetrics, "ocpdr_exportwatch_queue_overflows_total"); n < 1 {
		t.Errorf("the watcher saw no queue overflow (%v): the test did not exercise it", n)
	}

	// Every sync was a data-write job with its replication lag recorded.
	jobs, err := f.jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, j := range jobs {
		if j.Name != "EDA - Sync NFS Path to DR" {
			t.Errorf("unexpected job %+v", j)
		}
		if j.Status == "successful" && j.Lag > 0 {
			ok++
		}
	}
	if ok < len(dirs)+1 {
		t.Errorf("%d successful data-write jobs with a lag, want at least %d: %+v", ok, len(dirs)+1, jobs)
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("metric %s not exported:\n%s", name, b)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
