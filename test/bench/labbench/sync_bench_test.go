package labbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// playbook runs a playbook against the lab (lab.Playbook) and returns its wall
// time; a failure stops the benchmark with the output's last 4000 bytes.
func playbook(b *testing.B, l *lab.Lab, pb string, vars map[string]any) time.Duration {
	b.Helper()
	start := time.Now()
	s, err := l.Playbook(b.Context(), pb, vars)
	d := time.Since(start)
	if err != nil {
		if len(s) > 4000 {
			s = s[len(s)-4000:]
		}
		b.Fatalf("%s: %v\n%s", pb, err, s)
	}
	return d
}

// rsh is the ssh command the sync module gives rsync on the DR host.
func rsh(l *lab.Lab) string {
	return strings.Join([]string{"ssh", "-p", fmt.Sprint(l.Primary.SSHPort), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
		"-i", l.SSHKey, "-o", "UserKnownHostsFile=" + l.KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "ControlMaster=auto", "-o", "ControlPath=~/.ssh/ocpdr-cm-%C", "-o", "ControlPersist=60"}, " ")
}

// BenchmarkPeriodicSync: wall time of execute_periodic_sync.yml over 200 PVs
// of 100 small files each, with no change and with 10% of the files
// changed, against a plain shell loop of the same rsync commands run on the
// DR host (the floor) and against a sequential per-PV Ansible loop.
func BenchmarkPeriodicSync(b *testing.B) {
	l := lab.Get(b)
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		b.Fatal(err)
	}
	rc.QPS, rc.Burst = 500, 500
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	// An earlier benchmark of this binary may have failed over (the fence
	// marker stops every sync): fail back first.
	_ = os.Remove(filepath.Join(l.DR.ExportRoot, ".ocpdr-dr-active"))
	const pvs, files = 200, 100
	var dirs []string
	for i := 0; i < pvs; i++ {
		rel := fmt.Sprintf("psync/pv%03d", i)
		dirs = append(dirs, rel)
		dir := filepath.Join(l.Primary.ExportRoot, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < files; j++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", j)), []byte(strings.Repeat(fmt.Sprintf("%d-%d ", i, j), 40)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		pv := benchPV(fmt.Sprintf("psync-%03d", i), "nfs-dynamic")
		pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: l.Primary.NFSHost, Path: dir}}
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	reports := b.TempDir()
	periodic := repoFile(b, "playbooks/scheduled/execute_periodic_sync.yml")
	playbook(b, l, periodic, map[string]any{"ocpdr_report_dir": reports}) // initial copy, not measured
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(l.DR.ExportRoot, d, "f000")); err != nil {
			b.Fatalf("the initial periodic sync did not copy %s: %v", d, err)
		}
	}
	round := 0
	change := func() {
		round++
		for i := 0; i < pvs; i++ {
			for j := 0; j < files/10; j++ {
				p := filepath.Join(l.Primary.ExportRoot, dirs[i], fmt.Sprintf("f%03d", (j*10+round)%files))
				if err := os.WriteFile(p, []byte(fmt.Sprintf("changed in round %d\n", round)), 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	shellLoop := func(b *testing.B) time.Duration {
		var sc strings.Builder
		sc.WriteString("set -e\n")
		for _, d := range dirs {
			fmt.Fprintf(&sc, "rsync -aHAXS --numeric-ids --protect-args --delete --itemize-changes --stats --inplace -e '%s' 'root@%s:%s/' '%s/' >/dev/null\n",
				rsh(l), l.Primary.NFSHost, filepath.Join(l.Primary.ExportRoot, d), filepath.Join(l.DR.ExportRoot, d))
		}
		cmd := exec.Command("ssh", l.SSHArgs(&l.DR, "bash", "-s")...)
		cmd.Stdin = strings.NewReader(sc.String())
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("shell loop: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	variants := []struct {
		name string
		run  func(b *testing.B) time.Duration
	}{
		{"shell-rsync-loop", shellLoop},
		{"ansible-periodic-sync", func(b *testing.B) time.Duration {
			return playbook(b, l, periodic, map[string]any{"ocpdr_report_dir": reports})
		}},
		{"ansible-sequential-loop", func(b *testing.B) time.Duration {
			return playbook(b, l, repoFile(b, "test/bench/labbench/naive_sync.yml"), map[string]any{
				"bench_dirs": dirs, "bench_rsh": rsh(l), "bench_primary": l.Primary.NFSHost})
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for n := 0; n < b.N; n++ {
				same := v.run(b)
				change()
				changed := v.run(b)
				b.ReportMetric(same.Seconds(), "nochange-s")
				b.ReportMetric(changed.Seconds(), "changed-s")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}
