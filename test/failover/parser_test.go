package failover_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// TestFailoverRefusesBadBackups: a backup whose tarball is corrupt or absent,
// and a backup_name outside Velero's name rules, stop the failover with a
// clear message before anything at the DR site changes. The backups live
// under their own object-store prefix, so they never become "the newest".
func TestFailoverRefusesBadBackups(t *testing.T) {
	l := lab.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s3, err := l.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	drc, _ := l.DR.RESTConfig()
	dcs := kubernetes.NewForConfigOrDie(drc)
	const prefix = "refusal-test"
	put := func(key, body string) {
		t.Helper()
		if _, err := s3.PutObject(ctx, l.S3Bucket, prefix+"/backups/"+key, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	doc := func(name string) string {
		return `{"apiVersion":"velero.io/v1","kind":"Backup","metadata":{"name":"` + name + `","namespace":"openshift-adp"},` +
			`"status":{"phase":"Completed","formatVersion":"1.1.0","startTimestamp":"2026-11-24T01:00:00Z","completionTimestamp":"2026-11-24T01:00:02Z"}}`
	}
	put("corrupt-1/velero-backup.json", doc("corrupt-1"))
	put("corrupt-1/corrupt-1.tar.gz", "this is not a gzip'd tar")
	put("notarball-1/velero-backup.json", doc("notarball-1"))

	state := func() (int, int, bool) {
		pvs, err := dcs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nss, err := dcs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, merr := os.Stat(filepath.Join(l.DR.ExportRoot, ".ocpdr-dr-active"))
		return len(pvs.Items), len(nss.Items), merr == nil
	}
	pv0, ns0, marker0 := state()
	work := t.TempDir() // the parser's private work directory goes here
	t.Setenv("TMPDIR", work)

	cases := []struct {
		name, backup, want string
	}{
		{"corrupt tarball", "corrupt-1", "is missing or corrupt"},
		{"tarball absent", "notarball-1", "is missing or corrupt"},
		{"name outside Velero's rules", "Nightly;rm -rf /", "valid Velero backup name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reports := t.TempDir()
			out, err := l.Playbook(t.Context(), "playbooks/manual_dr/execute_failover.yml", map[string]any{
				"backup_name": tc.backup, "dr_failover_namespaces": []string{"refusal-ns"},
				"oadp_backup_parser_prefix": prefix, "dr_failover_report_dir": reports,
			})
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("want a failure saying %q:\n%s", tc.want, tail(out))
			}
			if strings.Contains(out, l.S3SecretKey) {
				t.Error("the S3 secret key appears in the output")
			}
			if pv, ns, marker := state(); pv != pv0 || ns != ns0 || marker != marker0 {
				t.Errorf("DR changed: PVs %d->%d, namespaces %d->%d, marker %v->%v", pv0, pv, ns0, ns, marker0, marker)
			}
			if tc.backup == "corrupt-1" {
				m, _ := filepath.Glob(filepath.Join(reports, "failover-*.json"))
				if len(m) != 1 {
					t.Fatalf("want one failure report, got %v", m)
				}
				b, _ := os.ReadFile(m[0])
				if !bytes.Contains(b, []byte(`"result": "failed"`)) || !bytes.Contains(b, []byte("corrupt")) {
					t.Errorf("report does not record the failure: %s", b)
				}
				if left, _ := filepath.Glob(filepath.Join(work, "ocpdr-backup-*")); len(left) != 0 {
					t.Errorf("work directory left behind: %v", left)
				}
			}
		})
	}
}
