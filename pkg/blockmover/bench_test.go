// Benchmark: a 1 GiB sparse VM image (60 % allocated, random data), 1 %
// rewritten in scattered 4 KiB blocks, synced by the block mover and by
// `rsync --inplace --no-whole-file` from the same state, in the same run.
//
//	nice go test ./pkg/blockmover -run '^$' -bench BlockSync -benchtime 1x
package blockmover

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

func BenchmarkBlockSync(b *testing.B) {
	for _, mode := range []string{MethodFiemap, MethodDigestTable} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				benchOnce(b, mode)
			}
		})
	}
}

func benchOnce(b *testing.B, mode string) {
	b.StopTimer()
	mnt := mountXFS(b, 6*gib)
	live := filepath.Join(mnt, "primary", "pv", "disk.img")
	c1, c2 := filepath.Join(mnt, "cap", "1", "disk.img"), filepath.Join(mnt, "cap", "2", "disk.img")
	e := &env{root: filepath.Join(mnt, "dr"), rel: "pv/disk.img"}
	must(b, os.MkdirAll(filepath.Dir(live), 0o755))
	must(b, os.MkdirAll(filepath.Join(e.root, "pv"), 0o755))
	makeImage(b, live, gib, 1228*kib, 2*mib, 5) // 60 % allocated
	capture(b, live, c1)
	first := time.Now()
	e.sync(b, SendOptions{Source: c1})
	firstTime := time.Since(first)
	rsyncDst := filepath.Join(mnt, "rsync", "disk.img")
	capture(b, e.dst(), rsyncDst) // the same DR state for rsync
	const writes = 2621           // 1 % of 1 GiB in 4 KiB blocks
	scatter(b, live, writes, 6)
	capture(b, live, c2)

	b.StartTimer()
	start := time.Now()
	r := e.sync(b, SendOptions{Source: c2, Previous: c1, NoFiemap: mode != MethodFiemap})
	bmTime := time.Since(start)
	b.StopTimer()
	if r.Method != mode {
		b.Fatalf("method %s, want %s", r.Method, mode)
	}
	assertSame(b, c2, e.dst())
	rsTime, rsSent := runRsync(b, c2, rsyncDst)
	changed := float64(writes * 4 * kib)
	b.ReportMetric(float64(r.BytesSent), "wire-bytes")
	b.ReportMetric(float64(rsSent), "rsync-wire-bytes")
	b.ReportMetric(float64(r.BytesSent)/changed, "wire/changed")
	b.ReportMetric(float64(rsSent)/changed, "rsync-wire/changed")
	b.ReportMetric(bmTime.Seconds(), "sync-s")
	b.ReportMetric(rsTime.Seconds(), "rsync-s")
	b.ReportMetric(bmTime.Seconds()/rsTime.Seconds(), "time/rsync")
	b.ReportMetric(float64(r.BytesRead), "source-read-bytes")
	b.ReportMetric(firstTime.Seconds(), "first-sync-s")
}

var rsyncSent = regexp.MustCompile(`Total bytes sent: ([\d,.]+)`)

// runRsync is the baseline: rsync's delta transfer into the existing DR
// copy, over rsync's own pipe (local), reading both whole files.
func runRsync(b *testing.B, src, dst string) (time.Duration, int64) {
	start := time.Now()
	// -I: compare every file (the capture and the DR copy may share size and
	// mtime second; the sync itself uses --modify-window=-1 for that).
	out, err := exec.Command("rsync", "-aS", "-I", "--inplace", "--no-whole-file", "--stats", src, dst).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("rsync: %v: %s", err, out)
	}
	m := rsyncSent.FindSubmatch(out)
	if m == nil {
		b.Fatalf("rsync --stats: no bytes sent in %s", out)
	}
	n, err := strconv.ParseInt(regexp.MustCompile(`[,.]`).ReplaceAllString(string(m[1]), ""), 10, 64)
	if err != nil {
		b.Fatal(fmt.Errorf("rsync bytes %q: %w", m[1], err))
	}
	return d, n
}
