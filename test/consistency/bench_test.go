// Benchmarks of recovery points (BENCHMARKS.md sections 8, 8b and 8c): how
// long guests stay frozen, what the capture costs a sync, and how much DR
// space versioned points take. Each family's baseline runs in the same
// invocation on the same lab.
package consistency

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/ocpv-dr/ocpv-dr/test/sim"
)

const periodicPlaybook = "playbooks/scheduled/execute_periodic_sync.yml"

// BenchmarkRecoveryPoints: 10 running VMs with 2 disks each, guests
// writing. api-floor freezes the 10 VMs through the lab's kube-apiserver
// (one batch, as the shipped sync freezes them), reflink-clones their 20
// disk directories and thaws them, from Go, with nothing in between: the
// least any design can freeze them for. capture-reflink
// runs the shipped periodic sync (freeze, capture, thaw, sync from the
// capture, keep points); capture-none the same sync copying live. Freeze
// durations come from the simulated KubeVirt's freeze log (frozen to thawed).
func BenchmarkRecoveryPoints(b *testing.B) {
	e := start(b)
	const vms, disks, rounds = 10, 2, 5
	names := make([]string, vms)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%02d", i)
		e.vmDisks(b, names[i], disks, nil)
	}
	reports := b.TempDir()
	periodic := func(extra ...string) time.Duration {
		t0 := time.Now()
		e.l.MustPlaybook(b, periodicPlaybook, map[string]any{"ocpdr_report_dir": reports}, extra...)
		return time.Since(t0)
	}
	periodic() // the initial full copy, not measured
	b.Run("api-floor", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			before := e.freezeCounts(names)
			for r := 0; r < rounds; r++ {
				e.floorBatch(b, names, disks)
			}
			reportFreezes(b, e.freezesSince(names, before))
		}
	})
	b.Run("capture-reflink", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			before := e.freezeCounts(names)
			var took []time.Duration
			for r := 0; r < rounds; r++ {
				took = append(took, periodic())
			}
			reportFreezes(b, e.freezesSince(names, before))
			b.ReportMetric(median(took).Seconds(), "sync-s")
		}
	})
	b.Run("capture-none", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			var took []time.Duration
			for r := 0; r < rounds; r++ {
				took = append(took, periodic("-e", "ocpdr_capture_method=none"))
			}
			b.ReportMetric(median(took).Seconds(), "sync-s")
		}
	})
}

// floorBatch freezes the VMs through the API server (all at once, as one
// freeze batch of the shipped sync), reflink-clones their disks' PV
// directories with cp, eight at a time, into a reserved scratch directory on
// the same filesystem, and thaws them.
func (e *env) floorBatch(b *testing.B, vms []string, disks int) {
	b.Helper()
	cfg, err := e.l.Primary.RESTConfig()
	if err != nil {
		b.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	base := strings.TrimSuffix(cfg.Host, "/") + "/apis/subresources.kubevirt.io/v1/namespaces/" + e.ns + "/virtualmachineinstances/"
	all := func(verb, body string) {
		if err := parallel(len(vms), len(vms), func(i int) error { return put(hc, base+vms[i]+"/"+verb, body) }); err != nil {
			b.Fatal(err)
		}
	}
	scratch := filepath.Join(e.l.Primary.ExportRoot, ".ocpdr-bench-floor")
	all("freeze", `{"unfreezeTimeout":"1m0s"}`)
	cloneErr := parallel(len(vms)*disks, 8, func(k int) error {
		vm, i := vms[k/disks], k%disks+1
		return cloneDir(filepath.Join(e.l.Primary.ExportRoot, e.ns+"-"+diskName(vm, i)), filepath.Join(scratch, vm, fmt.Sprint(i)))
	})
	all("unfreeze", `{}`)
	if cloneErr != nil {
		b.Fatal(cloneErr)
	}
	if err := os.RemoveAll(scratch); err != nil {
		b.Fatal(err)
	}
}

// parallel runs fn(0..n-1), at most limit at once, and returns the first error.
func parallel(n, limit int, fn func(int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func cloneDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", "--reflink=always", src+"/.", dst+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s: %w: %s", src, err, out)
	}
	return nil
}

func put(hc *http.Client, url, body string) error {
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s", url, resp.Status)
	}
	return nil
}

// freezeCounts is how many completed freezes each VM's log holds now.
func (e *env) freezeCounts(vms []string) map[string]int {
	out := map[string]int{}
	for _, vm := range vms {
		out[vm] = len(e.api.Server.FreezeLog(e.ns, vm).Durations)
	}
	return out
}

// freezesSince returns the freezes completed after before was taken (the
// log keeps the newest 200 per VM, far more than a benchmark makes).
func (e *env) freezesSince(vms []string, before map[string]int) []time.Duration {
	var out []time.Duration
	for _, vm := range vms {
		for _, d := range e.api.Server.FreezeLog(e.ns, vm).Durations[before[vm]:] {
			out = append(out, d.Duration)
		}
	}
	return out
}

func reportFreezes(b *testing.B, d []time.Duration) {
	b.Helper()
	if len(d) == 0 {
		b.Fatal("no freeze was recorded")
	}
	b.ReportMetric(quantile(d, 0.50).Seconds(), "p50-s")
	b.ReportMetric(quantile(d, 0.99).Seconds(), "p99-s")
	b.ReportMetric(float64(len(d)), "freezes")
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }

// BenchmarkPointSpace: a 1 GiB disk image (random data) in a PV, 1 % of it
// rewritten in scattered 4 KiB blocks between 24 event syncs, each keeping a
// recovery point at DR. points is the DR filesystem's used space for the
// working copy and its 24 points (statfs, after the first sync's copy is
// subtracted back in); full-copies is 24 times the image's allocated size
// at DR, what keeping whole copies would take.
func BenchmarkPointSpace(b *testing.B) {
	e := start(b)
	const size, pts, block = 1 << 30, 24, 4 << 10
	e.disk(b, "space")
	dir := filepath.Join(e.l.Primary.ExportRoot, e.ns+"-space")
	img := filepath.Join(dir, "disk.img")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	writeRandom(b, img, size, rng)
	pv, err := e.p.Resource(sim.GVRPV).Get(b.Context(), "space-pv", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("full-copies", func(b *testing.B) {
		var st syscall.Stat_t
		for n := 0; n < b.N; n++ {
			e.sync(b, pv.Object)
			if err := syscall.Stat(filepath.Join(e.l.DR.ExportRoot, e.ns+"-space", "disk.img"), &st); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(pts)*float64(st.Blocks*512)/(1<<20), "dr-MiB")
	})
	b.Run("points", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			used0 := usedBytes(b, e.l.DR.ExportRoot)
			for i := 1; i < pts; i++ {
				rewrite(b, img, size, size/100, block, rng)
				e.sync(b, pv.Object)
			}
			if got := len(e.points(b, e.ns+"-space")); got < pts {
				b.Fatalf("%d points kept at DR, want %d", got, pts)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(e.l.DR.ExportRoot, e.ns+"-space", "disk.img"), &st); err != nil {
				b.Fatal(err)
			}
			added := float64(usedBytes(b, e.l.DR.ExportRoot)) - float64(used0)
			b.ReportMetric((added+float64(st.Blocks*512))/(1<<20), "dr-MiB")
			b.ReportMetric(added/float64(pts-1)/(1<<20), "MiB-per-point")
		}
	})
}

func writeRandom(b *testing.B, path string, size int, rng *rand.Rand) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for off := 0; off < size; off += len(buf) {
		fill(buf, rng)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// rewrite overwrites changed bytes of the image in block-sized pieces at
// random block offsets.
func rewrite(b *testing.B, path string, size, changed, block int, rng *rand.Rand) {
	b.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, block)
	for n := 0; n < changed/block; n++ {
		fill(buf, rng)
		if _, err := f.WriteAt(buf, int64(rng.IntN(size/block))*int64(block)); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

func fill(buf []byte, rng *rand.Rand) {
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
	}
}

func usedBytes(b *testing.B, path string) uint64 {
	b.Helper()
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		b.Fatal(err)
	}
	return (s.Blocks - s.Bfree) * uint64(s.Bsize)
}
