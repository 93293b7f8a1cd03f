package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/e2e"
	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// TestThreeModes runs the demo's flow on a private lab: event-driven
// replication, snapshot metadata, periodic sync, archive on delete and
// failover, each step checked.
func TestThreeModes(t *testing.T) {
	l := lab.Get(t)
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/forwarder", "./cmd/receiver", "./test/sim/cmd/labsim")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	work := filepath.Join(t.TempDir(), "work")
	f, err := e2e.New(e2e.Options{Lab: l, Root: root, Bin: bin, WorkDir: work, Out: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := f.Run(ctx); err != nil {
		for _, name := range []string{"receiver", "forwarder", "labsim"} {
			if b, err := os.ReadFile(filepath.Join(work, "logs", name+".log")); err == nil {
				t.Logf("--- %s log (tail) ---\n%s", name, tailBytes(b, 4000))
			}
		}
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
