// Package labbench holds the benchmarks that need the lab (real
// kube-apiserver, sshd/rsync hosts, S3): forwarder latency and memory,
// periodic sync, failover orchestration. `make bench` runs them; plain `go
// test` runs no benchmark and starts no lab.
package labbench

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// buildBinaries builds the product binaries once per benchmark run.
func buildBinaries(b *testing.B) string {
	b.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := b.TempDir()
	cmd := exec.Command("go", "build", "-o", bin+"/", "./cmd/forwarder", "./cmd/receiver")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func quantiles(d []time.Duration) (p50, p99 float64) {
	if len(d) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 { return float64(s[int(p*float64(len(s)-1)+0.5)]) / float64(time.Millisecond) }
	return q(0.5), q(0.99)
}

func repoFile(b *testing.B, rel string) string {
	b.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Join(root, rel)
}
