package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// veleroHostLock is held (flock) by the process whose Velero server runs on
// this host: controller-runtime's metrics listener binds :8080, so two
// servers cannot run at once, whatever test binary or lab started them.
// Labs themselves may then run side by side.
var veleroHostLock = filepath.Join(os.TempDir(), "ocpdr-velero.lock")

// lockVeleroHost waits (polling, so ctx can end the wait) for the host's
// Velero lock and returns the file holding it; closing it releases it.
func lockVeleroHost(ctx context.Context) (*os.File, error) {
	f, err := os.OpenFile(veleroHostLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("velero host lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("velero host lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another Velero server on this host to stop: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
