package lab

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

var (
	shared     *Lab
	sharedErr  error
	sharedOnce sync.Once
	sharedDir  string
)

// Main runs a package's tests and stops the lab that Get started, if any.
// Use it from TestMain: func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "lab: stop: %v\n", err)
		}
	}
	if sharedDir != "" && os.Getenv("LAB_KEEP") == "" {
		_ = os.RemoveAll(sharedDir)
	}
	return code
}

// Get returns the test binary's private lab, starting it on first use on its
// own loopback block and directory, so test packages running in parallel
// never collide. Under -short it skips the test (the lab is integration
// territory); otherwise a lab that cannot start fails the test with the
// failing part's log tail.
func Get(t testing.TB) *Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the lab (integration test; runs in `make test`)")
	}
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ocpdr-lab-")
		if err != nil {
			sharedErr = fmt.Errorf("lab dir: %w", err)
			return
		}
		sharedDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx, Options{Dir: dir, Logf: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, f+"\n", a...)
		}})
	})
	if sharedErr != nil {
		t.Fatalf("lab could not start: %v", sharedErr)
	}
	return shared
}
