// Package install checks that what the install ships agrees with the code:
// the receiver image carries everything its local runner needs.
package install

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/pkg/runner"
)

const root = "../.."

// imageContent is deploy/receiver/image-content.txt, the list the receiver
// Containerfile copies.
func imageContent(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "deploy/receiver/image-content.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, filepath.Clean(l))
		}
	}
	return out
}

func inImage(list []string, rel string) bool {
	for _, p := range list {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// Every listed path exists, every playbook of the local runner's catalog is
// in the image, and no symlink in the image points outside it or nowhere
// (the playbooks' group_vars links once dangled there).
func TestReceiverImageCarriesTheLocalRunner(t *testing.T) {
	list := imageContent(t)
	for _, p := range list {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("image-content.txt lists %s: %v", p, err)
		}
	}
	cat, err := runner.LoadCatalog(filepath.Join(root, "examples/job-templates.yml"))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(root)
	for _, m := range []map[string]string{cat.JobTemplates, cat.WorkflowTemplates} {
		for name, pb := range m {
			rel, _ := filepath.Rel(abs, pb)
			if !inImage(list, rel) {
				t.Errorf("template %q: playbook %s is not in the image", name, rel)
			}
		}
	}
	for _, p := range list {
		_ = filepath.WalkDir(filepath.Join(root, p), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink == 0 {
				return err
			}
			target, err := filepath.EvalSymlinks(path)
			if err == nil {
				target, err = filepath.Abs(target)
			}
			rel, _ := filepath.Rel(abs, target)
			if err != nil || !inImage(list, rel) {
				t.Errorf("symlink %s would dangle in the image (target %s, %v)", path, rel, err)
			}
			return nil
		})
	}
}
