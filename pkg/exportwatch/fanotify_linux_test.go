package exportwatch

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// The fanotify backend reports the PV directory of writes anywhere below it,
// including in directories created after the start, with no per-directory
// watch, and ignores changes outside the export root on the same filesystem.
func TestFanotifyBackend(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify's filesystem marks need CAP_SYS_ADMIN: run as root (make test does)")
	}
	base := t.TempDir()
	root := filepath.Join(base, "exports")
	for _, d := range []string{"pv-1", "pv-2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := New(Config{Root: root, Quiet: 50 * time.Millisecond, MaxDelay: time.Second, Backend: "fanotify"}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Change, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	next := func() Change {
		t.Helper()
		select {
		case c := <-out:
			return c
		case err := <-done:
			t.Fatalf("watcher stopped: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no change reported")
		}
		return Change{}
	}
	for i := 0; i < 2; i++ { // start-up rescan
		if c := next(); !c.Rescan {
			t.Fatalf("start-up report %+v is not a rescan", c)
		}
	}
	time.Sleep(200 * time.Millisecond) // the mark is in place once Run is looping
	cases := []struct {
		name  string
		write string
		want  string
	}{
		{"file in a PV directory", "pv-1/disk.img", "pv-1"},
		{"file in a subdirectory made after start", "pv-2/a/b/c/data.bin", "pv-2"},
		{"new PV directory", "pv-3/disk.img", "pv-3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(root, tc.write)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			// Noise on the same filesystem, outside the export root.
			if err := os.WriteFile(filepath.Join(base, "outside.txt"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(tc.name), 0o644); err != nil {
				t.Fatal(err)
			}
			c := next()
			if c.Dir != filepath.Join(w.cfg.Root, tc.want) || c.Rescan || c.Changes < 1 {
				t.Fatalf("got %+v, want a change of %s", c, tc.want)
			}
		})
	}
	if len(w.watched) != 0 {
		t.Errorf("fanotify backend holds %d per-directory watches, want none", len(w.watched))
	}
	// A case may be reported twice (a new directory and the file in it can
	// land in two debounce windows on a busy machine); a change of any other
	// directory is noise from outside the root that must not be reported.
	expected := map[string]bool{}
	for _, tc := range cases {
		expected[filepath.Join(w.cfg.Root, tc.want)] = true
	}
	for {
		select {
		case c := <-out:
			if !expected[c.Dir] || c.Rescan {
				t.Errorf("unexpected extra change %+v (outside the root?)", c)
			}
			continue
		case <-time.After(300 * time.Millisecond):
		}
		break
	}
}

// A FAN_Q_OVERFLOW record becomes the overflow signal that triggers a rescan.
func TestFanotifyOverflowRecord(t *testing.T) {
	n := int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b[0:4], uint32(n))
	m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
	m.Vers, m.Metadata_len, m.Mask, m.Fd = unix.FANOTIFY_METADATA_VERSION, uint16(n), unix.FAN_Q_OVERFLOW, -1
	r := &fanReader{dirs: map[string]string{}}
	evs := r.parse(b)
	if len(evs) != 1 || !evs[0].overflow {
		t.Fatalf("parse(overflow) = %+v", evs)
	}
	if evs := r.parse(b[:n-1]); len(evs) != 0 {
		t.Fatalf("a truncated record gave %+v", evs)
	}
}
