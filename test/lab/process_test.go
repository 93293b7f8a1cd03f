// process_test.go checks the process helper the way a test suite leans on
// it: the log holds what the process printed with the environment it was
// given, a process that dies before it is ready is reported at once rather
// than after the timeout, and Stop escalates to SIGKILL when SIGTERM is
// ignored.
package lab_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func sh(t *testing.T, script string, env ...string) *lab.Process {
	t.Helper()
	p, err := lab.StartProcess(lab.ProcessSpec{Name: "sh", Argv: []string{"sh", "-c", script}, Env: env,
		Log: filepath.Join(t.TempDir(), "logs", "sh.log"), Group: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func TestProcessLogAndEnv(t *testing.T) {
	p := sh(t, `echo "hello $GREETING"; exec sleep 30`, "GREETING=lab")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.WaitReady(ctx, 10*time.Millisecond, func() error {
		if !strings.Contains(p.LogText(), "hello lab") {
			return context.DeadlineExceeded
		}
		return nil
	})
	if err != nil {
		t.Fatalf("log %q: %v", p.LogText(), err)
	}
	if took, err := p.Stop(5 * time.Second); err != nil || took > 2*time.Second {
		t.Errorf("stop of a process that honours SIGTERM: took %s, %v", took, err)
	}
	if p.Exited() == nil {
		t.Error("Exited() is nil after Stop")
	}
}

func TestProcessEarlyExitIsReported(t *testing.T) {
	p := sh(t, `echo boom; exit 3`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	addr, err := lab.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(ctx, 20*time.Millisecond, lab.TCPReady(addr))
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || time.Since(start) > 5*time.Second {
		t.Fatalf("after %s: %v, want the early exit reported at once", time.Since(start), err)
	}
	if st := p.State(); st == nil || st.ExitCode() != 3 {
		t.Errorf("exit state %v, want code 3", st)
	}
}

func TestProcessStopEscalates(t *testing.T) {
	p := sh(t, `trap '' TERM; echo ready; while :; do sleep 0.05; done`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx, 10*time.Millisecond, func() error {
		if !strings.Contains(p.LogText(), "ready") {
			return context.DeadlineExceeded
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := p.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "ignored SIGTERM") {
		t.Errorf("stop of a process ignoring SIGTERM: %v, want an error", err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the process still runs after Stop")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("stop took %s", time.Since(start))
	}
}
