package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// BenchmarkDataRPO measures the data recovery point: the time from a write
// on the primary NFS host to the same bytes at DR, over 100 writes spread
// over 10 PV directories (one write every 2 s, round robin: each directory
// is written every 20 s; on the 2-core lab, where the NFS hosts, the
// receiver and every job share the CPU, one sync job costs about 2 CPU-seconds,
// so a write a second already saturates it), through
// `forwarder watch-exports` (default debounce: 2 s quiet, 10 s max delay),
// the receiver (local runner, shipped rulebook) and the sync playbook. The
// baseline ("bare-rsync") copies each write with one rsync, started at the
// write time, from the DR host over SSH: the floor of any design.
func BenchmarkDataRPO(b *testing.B) {
	l := lab.Get(b)
	root, err := lab.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := b.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/forwarder", "./cmd/receiver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	pvs, writes, every := 10, 100, 2*time.Second
	if v := os.Getenv("OCPDR_RPO_WRITES"); v != "" {
		fmt.Sscan(v, &writes)
	}
	b.Run("bare-rsync", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			lags, missed := rpoRun(b, l, fmt.Sprintf("rpo-bare-%d", n), pvs, writes, every, func(dir string) {
				_ = bareRsync(l, dir)
			})
			reportLags(b, lags, missed)
		}
	})
	b.Run("watch-exports", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			work := filepath.Join(b.TempDir(), "work")
			f, err := New(Options{Lab: l, Root: root, Bin: bin, WorkDir: work})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			prefix := fmt.Sprintf("rpo-watch-%d", n)
			for i := 0; i < pvs; i++ {
				if err := os.MkdirAll(filepath.Join(l.Primary.ExportRoot, fmt.Sprintf("%s-%d", prefix, i)), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.startReceiver(ctx); err != nil {
				b.Fatal(err)
			}
			if err := f.startWatcher(ctx, 2*time.Second, 10*time.Second); err != nil {
				b.Fatal(err)
			}
			// The start-up rescan syncs every directory once; measure after it.
			if err := f.waitQuiet(ctx); err != nil {
				b.Fatal(err)
			}
			lags, missed := rpoRun(b, l, prefix, pvs, writes, every, nil)
			reportLags(b, lags, missed)
			// Where the time goes: jobs launched and their mean duration.
			if jobs, err := f.jobs(ctx); err == nil && len(jobs) > 0 {
				var sum float64
				for _, j := range jobs {
					sum += j.Duration
				}
				b.ReportMetric(float64(len(jobs)), "jobs")
				b.ReportMetric(sum/float64(len(jobs)), "job-s")
			}
			f.Close()
			cancel()
		}
	})
}

// rpoRun writes `writes` files of 64 KiB round robin into pvs directories,
// one every `every`; copy (if set) is started at each write time. It returns
// each write's time until the same bytes are at DR, and how many never arrived.
func rpoRun(b *testing.B, l *lab.Lab, prefix string, pvs, writes int, every time.Duration, copy func(dir string)) ([]time.Duration, int) {
	b.Helper()
	var mu sync.Mutex
	var lags []time.Duration
	missed := 0
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < writes; i++ {
		rel := fmt.Sprintf("%s-%d", prefix, i%pvs)
		src := filepath.Join(l.Primary.ExportRoot, rel)
		if err := os.MkdirAll(src, 0o755); err != nil {
			b.Fatal(err)
		}
		data := make([]byte, 64<<10)
		_, _ = rand.Read(data)
		name := fmt.Sprintf("w-%03d.bin", i)
		wrote := time.Now()
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if copy != nil {
				copy(src)
			}
			dst := filepath.Join(l.DR.ExportRoot, rel, name)
			for time.Since(wrote) < 2*time.Minute {
				if got, err := os.ReadFile(dst); err == nil && bytes.Equal(got, data) {
					mu.Lock()
					lags = append(lags, time.Since(wrote))
					mu.Unlock()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			missed++
			mu.Unlock()
		}()
		time.Sleep(every)
	}
	wg.Wait()
	b.StopTimer()
	return lags, missed
}

func reportLags(b *testing.B, lags []time.Duration, missed int) {
	b.Helper()
	if missed > 0 {
		b.Errorf("%d writes never reached DR within 2 minutes", missed)
	}
	if len(lags) == 0 {
		return
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	q := func(p float64) float64 { return lags[int(p*float64(len(lags)-1)+0.5)].Seconds() }
	b.ReportMetric(q(0.5), "p50-s")
	b.ReportMetric(q(0.99), "p99-s")
	b.ReportMetric(lags[len(lags)-1].Seconds(), "max-s")
	b.ReportMetric(0, "ns/op")
}

// bareRsync pulls one directory from the primary on the DR host, as the sync
// module does, without Ansible, events or debounce.
func bareRsync(l *lab.Lab, src string) error {
	rel, _ := filepath.Rel(l.Primary.ExportRoot, src)
	dst := filepath.Join(l.DR.ExportRoot, rel)
	rsh := strings.Join([]string{"ssh", "-i", l.SSHKey, "-p", fmt.Sprint(l.Primary.SSHPort), "-o", "UserKnownHostsFile=" + l.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"}, " ")
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	remote := []string{"mkdir", "-p", q(dst), "&&", "rsync", "-a", "--inplace", "-e", q(rsh), q("root@" + l.Primary.NFSHost + ":" + src + "/"), q(dst + "/")}
	out, err := exec.Command("ssh", l.SSHArgs(&l.DR, strings.Join(remote, " "))...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rsync %s: %w: %s", rel, err, out)
	}
	return nil
}
