package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of size bytes (the receiver's state directory
// lives on it) and returns its path. It needs root, as CI has.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	receiverBin(t) // the suite's tier check
	if os.Geteuid() != 0 {
		t.Fatal("the fault suite mounts small filesystems and needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk allocates a file that leaves about leave bytes free on dir's
// filesystem and returns its path.
func fillDisk(t *testing.T, dir string, leave int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, max(free-leave, 0)); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	return p
}

// posting posts events with ids "<prefix>-<n>" from workers goroutines and
// records which were acknowledged (200) and which were refused (503).
type posting struct {
	mu      sync.Mutex
	acked   []string
	refused int
	other   map[int]int
	reasons map[string]bool
}

func (s *posting) send(ctx context.Context, r *receiver, prefix string, n, workers, padding int) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := fmt.Sprintf("%s-%05d", prefix, i)
				code, body := r.post(ctx, id, padding)
				s.mu.Lock()
				switch code {
				case http.StatusOK:
					s.acked = append(s.acked, id)
				case http.StatusServiceUnavailable:
					s.refused++
					s.reasons[strings.TrimSpace(body)] = true
				default:
					s.other[code]++
				}
				s.mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// TestDiskFullLosesNoAcknowledgedEvent (issue 15, items 2 and 3): the state
// directory runs out of space during ingest. The receiver must stop
// acknowledging (503 with a reason, /readyz not ready) instead of answering
// 200 for events its store cannot take, must not hang, must stop on SIGTERM
// while full, must replay every acknowledged event after a restart once
// space is back, and must accept events again.
func TestDiskFullLosesNoAcknowledgedEvent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	disk := smallDisk(t, 64<<20)
	state := filepath.Join(disk, "state")
	r := startReceiver(t, state)
	if _, ok := r.waitReady(http.StatusOK, 10*time.Second); !ok {
		t.Fatalf("not ready at start:\n%s", r.logText())
	}
	s := &posting{other: map[int]int{}, reasons: map[string]bool{}}
	s.send(ctx, r, "before", 200, 4, 512)
	filler := fillDisk(t, disk, 64<<10)

	start := time.Now()
	s.send(ctx, r, "full", 3000, 8, 2048)
	fullFor := time.Since(start)
	if s.refused == 0 {
		t.Fatalf("a full disk never refused an event (%d acknowledged)", len(s.acked))
	}
	if len(s.other) > 0 {
		t.Errorf("unexpected answers while full: %v", s.other)
	}
	t.Logf("while full: %d acknowledged in all, %d refused in %s; reasons %v", len(s.acked), s.refused, fullFor.Round(time.Millisecond), keys(s.reasons))
	body, ok := r.waitReady(http.StatusServiceUnavailable, 10*time.Second)
	if !ok || !strings.Contains(body, "event store unavailable") {
		t.Errorf("/readyz while full: %q, want 503 naming the store", body)
	}
	took := r.stop(15 * time.Second)
	t.Logf("stopped on SIGTERM while full in %s", took.Round(time.Millisecond))

	// Space comes back; the restart replays what the store had not taken.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r = startReceiver(t, state)
	if body, ok := r.waitReady(http.StatusOK, 20*time.Second); !ok {
		t.Fatalf("not ready after space returned: %q\n%s", body, r.logText())
	}
	before := len(s.acked)
	s.send(ctx, r, "after", 200, 4, 512)
	if len(s.acked)-before != 200 {
		t.Errorf("after recovery %d of 200 events acknowledged (answers %v)", len(s.acked)-before, s.other)
	}
	r.stop(15 * time.Second)
	stored := storedIDs(t, state)
	missing := lost(s.acked, stored)
	if len(missing) > 0 {
		t.Errorf("lost %d acknowledged events, first %v", len(missing), missing[:min(5, len(missing))])
	}
	record(t, Row{Fault: "disk full during ingest (tmpfs), SIGTERM while full, restart after space returns",
		Acknowledged: len(s.acked), Found: len(s.acked) - len(missing), Lost: len(missing),
		Note: fmt.Sprintf("%d refused with 503 while full", s.refused)})
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
