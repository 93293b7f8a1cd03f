package exportwatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPVDir(t *testing.T) {
	root := t.TempDir()
	rootReal, _ := filepath.EvalSymlinks(root)
	tests := []struct {
		name   string
		depth  int
		path   string
		want   string
		ignore []string
	}{
		{"file in PV dir", 1, "pv1/disk.img", "pv1", nil},
		{"deep file", 1, "pv1/a/b/c", "pv1", nil},
		{"PV dir itself", 1, "pv1", "pv1", nil},
		{"root itself", 1, ".", "", nil},
		{"depth 2 file", 2, "share/pv1/disk.img", "share/pv1", nil},
		{"depth 2 above PV level", 2, "share", "", nil},
		{"ignored archive", 1, "archived-pv1-2026/x", "", []string{"archived-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := New(Config{Root: root, Depth: tt.depth, Ignore: tt.ignore}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tt.want != "" {
				want = filepath.Join(rootReal, tt.want)
			}
			if got := w.PVDir(filepath.Join(rootReal, tt.path)); got != want {
				t.Errorf("PVDir(%s) = %q, want %q", tt.path, got, want)
			}
		})
	}
	w, _ := New(Config{Root: root}, nil)
	if got := w.PVDir("/etc/passwd"); got != "" {
		t.Errorf("path outside the root mapped to %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"relative root", Config{Root: "exports", Depth: 1}, false},
		{"missing root", Config{Root: "/nonexistent/exports", Depth: 1}, false},
		{"max delay shorter than quiet", Config{Root: "/", Depth: 1, Quiet: 5 * time.Second, MaxDelay: time.Second}, false},
		{"fine", Config{Root: "/", Depth: 1, Quiet: time.Second, MaxDelay: 5 * time.Second}, true},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

type harness struct {
	t    *testing.T
	root string
	out  chan Change
	w    *Watcher
}

func start(t *testing.T, cfg Config, setup func(root string)) *harness {
	t.Helper()
	root := t.TempDir()
	if setup != nil {
		setup(root)
	}
	cfg.Root = root
	w, err := New(cfg, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, root: w.cfg.Root, out: make(chan Change, 100), w: w}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, h.out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func (h *harness) write(rel, content string) {
	h.t.Helper()
	p := filepath.Join(h.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// next waits for the next change report, failing after timeout.
func (h *harness) next(timeout time.Duration) Change {
	h.t.Helper()
	select {
	case c := <-h.out:
		return c
	case <-time.After(timeout):
		h.t.Fatalf("no change reported within %s", timeout)
		return Change{}
	}
}

func (h *harness) drain(d time.Duration) []Change {
	var got []Change
	deadline := time.After(d)
	for {
		select {
		case c := <-h.out:
			got = append(got, c)
		case <-deadline:
			return got
		}
	}
}

// A start-up rescan reports existing PV directories once, so changes made
// while the watcher was down are not lost.
func TestStartupRescanReportsExistingDirs(t *testing.T) {
	h := start(t, Config{Quiet: 50 * time.Millisecond, MaxDelay: time.Second}, func(root string) {
		for _, d := range []string{"pv-a", "pv-b"} {
			_ = os.MkdirAll(filepath.Join(root, d, "sub"), 0o755)
		}
	})
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		c := h.next(3 * time.Second)
		if !c.Rescan {
			t.Errorf("start-up report %s not marked as rescan", c.Dir)
		}
		got[filepath.Base(c.Dir)] = true
	}
	if !got["pv-a"] || !got["pv-b"] {
		t.Fatalf("start-up rescan reported %v, want pv-a and pv-b", got)
	}
}

// A burst of writes to one PV directory is reported once, after it is quiet.
func TestBurstIsDebounced(t *testing.T) {
	const quiet = 300 * time.Millisecond
	h := start(t, Config{Quiet: quiet, MaxDelay: 5 * time.Second}, nil)
	began := time.Now()
	for i := 0; i < 50; i++ {
		h.write("pv-1/disk.img", "x")
	}
	// On an idle machine the burst takes milliseconds: one report. A machine
	// so busy that the burst itself outlasts the quiet period may split it,
	// once per quiet period it took, never once per write.
	allowed := int(time.Since(began) / quiet)
	c := h.next(5 * time.Second)
	if filepath.Base(c.Dir) != "pv-1" {
		t.Fatalf("reported %s, want pv-1", c.Dir)
	}
	// A write is several kernel events, and the kernel merges identical
	// consecutive ones not read yet: the count varies; what matters is one
	// report carrying the burst.
	if c.Changes < 1 {
		t.Errorf("Changes = %d, want the burst's events counted", c.Changes)
	}
	if extra := h.drain(time.Second); len(extra) > allowed {
		t.Errorf("burst reported %d more times (the burst took %d quiet periods): %+v", len(extra), allowed, extra)
	}
}

// A directory written to continuously is still reported every MaxDelay.
func TestContinuousWritesHonourMaxDelay(t *testing.T) {
	h := start(t, Config{Quiet: 600 * time.Millisecond, MaxDelay: 800 * time.Millisecond}, nil)
	// 2.5 s of writes every 40 ms; on a machine too busy to keep that pace
	// the writing goes on (up to 15 s) until 60 writes were made.
	began, writes := time.Now(), 0
	var reports []Change
	for time.Since(began) < 2500*time.Millisecond || (writes < 60 && time.Since(began) < 15*time.Second) {
		select {
		case c := <-h.out:
			reports = append(reports, c)
		case <-time.After(40 * time.Millisecond):
			h.write("busy/disk.img", "y")
			writes++
		}
	}
	if len(reports) < 2 {
		t.Fatalf("got %d reports during %s of constant writes (%d writes), want >= 2 (max delay 800ms)", len(reports), time.Since(began).Round(time.Millisecond), writes)
	}
	if len(reports) > max(6, int(time.Since(began)/(800*time.Millisecond))+3) {
		t.Errorf("got %d reports, want a handful, not one per write", len(reports))
	}
}

// A directory created after start is watched, including its subdirectories.
func TestNewDirectoriesAreWatched(t *testing.T) {
	h := start(t, Config{Quiet: 100 * time.Millisecond, MaxDelay: time.Second}, nil)
	h.write("pv-new/a/b/file", "1")
	c := h.next(3 * time.Second)
	if filepath.Base(c.Dir) != "pv-new" {
		t.Fatalf("reported %s, want pv-new", c.Dir)
	}
	h.drain(300 * time.Millisecond)
	h.write("pv-new/a/b/file2", "2") // needs the watch on a/b
	c = h.next(3 * time.Second)
	if filepath.Base(c.Dir) != "pv-new" {
		t.Fatalf("reported %s, want pv-new", c.Dir)
	}
}

type nopAdder struct{}

func (nopAdder) Add(string) error { return nil }

// A queue overflow turns into a report of every PV directory.
func TestOverflowRescansEverything(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"pv-1", "pv-2", "pv-3"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	w, err := New(Config{Root: root, Quiet: 20 * time.Millisecond, MaxDelay: time.Second}, reg)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan fsnotify.Event)
	errs := make(chan error, 1)
	out := make(chan Change, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.loop(ctx, nopAdder{}, events, errs, out) }()
	// Drain the start-up rescan.
	for i := 0; i < 3; i++ {
		<-out
	}
	errs <- fsnotify.ErrEventOverflow
	got := map[string]bool{}
	for i := 0; i < 3; i++ {
		select {
		case c := <-out:
			got[filepath.Base(c.Dir)] = c.Rescan
		case <-time.After(3 * time.Second):
			t.Fatalf("overflow reported only %v", got)
		}
	}
	for _, d := range []string{"pv-1", "pv-2", "pv-3"} {
		if !got[d] {
			t.Errorf("%s not reported as a rescan after overflow: %v", d, got)
		}
	}
	if n := testutil.ToFloat64(w.m.overflows); n != 1 {
		t.Errorf("overflow counter = %v, want 1", n)
	}
}
