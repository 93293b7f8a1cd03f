package guest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

const (
	testSize    = 1 << 20
	testRecords = 64
)

// image writes a synthetic image: record i at gens[i], then the commit.
func image(t *testing.T, gens []uint64, commitGen uint64, damage func(f *os.File, l layout)) string {
	t.Helper()
	l, err := newLayout(testSize, len(gens))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(l.size); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, page)
	for i, g := range gens {
		if g == 0 {
			continue
		}
		encodeRecord(buf, i, len(gens), g)
		if _, err := f.WriteAt(buf, l.recordOffset(i)); err != nil {
			t.Fatal(err)
		}
	}
	if commitGen > 0 {
		encodeCommit(buf, l, commitGen, 1)
		if _, err := f.WriteAt(buf, l.commitOffset()); err != nil {
			t.Fatal(err)
		}
	}
	if damage != nil {
		damage(f, l)
	}
	return path
}

// gens returns n generations: the first k at a, the rest at b.
func gens(n, k int, a, b uint64) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = b
		if i < k {
			out[i] = a
		}
	}
	return out
}

func TestCheck(t *testing.T) {
	flip := func(rec int) func(*os.File, layout) {
		return func(f *os.File, l layout) {
			if _, err := f.WriteAt([]byte{0xff}, l.recordOffset(rec)+100); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name      string
		gens      []uint64
		commit    uint64
		damage    func(*os.File, layout)
		level     Level
		ahead     int
		wantError string
	}{
		{name: "all at the commit", gens: gens(16, 0, 0, 7), commit: 7, level: ApplicationConsistent},
		{name: "prefix one ahead", gens: gens(16, 5, 8, 7), commit: 7, level: CrashConsistent, ahead: 5},
		{name: "all one ahead, commit not yet written", gens: gens(16, 16, 8, 7), commit: 7, level: CrashConsistent, ahead: 16},
		{name: "suffix newer than prefix", gens: gens(16, 5, 7, 8), commit: 7, wantError: "torn: record 5 generation 8, commit 7 (newer than an earlier record)"},
		{name: "older generation", gens: gens(16, 3, 7, 5), commit: 7, wantError: "torn: record 3 generation 5, commit 7 (older than the commit)"},
		{name: "generation beyond the next", gens: gens(16, 1, 9, 7), commit: 7, wantError: "torn: record 0 generation 9, commit 7"},
		{name: "missing commit", gens: gens(16, 0, 0, 1), commit: 0, wantError: "torn: no commit record"},
		{name: "record never written", gens: append(gens(15, 0, 0, 3), 0), commit: 3, wantError: "torn: record 15: no record"},
		{name: "damaged checksum", gens: gens(16, 0, 0, 4), commit: 4, damage: flip(9), wantError: "torn: record 9: bad checksum"},
		{name: "damaged commit", gens: gens(16, 0, 0, 4), commit: 4, damage: func(f *os.File, l layout) {
			_, _ = f.WriteAt([]byte{0xff}, l.commitOffset()+40)
		}, wantError: "torn: commit record has a bad checksum"},
		{name: "record in the wrong place", gens: gens(16, 0, 0, 4), commit: 4, damage: func(f *os.File, l layout) {
			buf := make([]byte, page)
			encodeRecord(buf, 2, 16, 4)
			_, _ = f.WriteAt(buf, l.recordOffset(3))
		}, wantError: "torn: record 3: holds record 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Check(image(t, tc.gens, tc.commit, tc.damage))
			if tc.wantError != "" {
				var te *TornError
				if !errors.As(err, &te) || !strings.HasPrefix(err.Error(), tc.wantError) {
					t.Fatalf("Check = %v, %v; want a tear %q", res, err, tc.wantError)
				}
				return
			}
			if err != nil || res.Level != tc.level || res.Ahead != tc.ahead || res.Commit != tc.commit {
				t.Fatalf("Check = %+v, %v; want %s with %d ahead, commit %d", res, err, tc.level, tc.ahead, tc.commit)
			}
		})
	}
}

func start(t *testing.T, path string, interval time.Duration) *Writer {
	t.Helper()
	w, err := Start(Options{Path: path, Size: testSize, Records: testRecords, Interval: interval, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	return w
}

func waitGen(t *testing.T, w *Writer, gen uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.Status().Generation < gen {
		if time.Now().After(deadline) {
			t.Fatalf("generation %d not reached: %+v", gen, w.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// slowReader lets n bytes through per tick: a copy that takes time, as
// rsync of a live disk does.
type slowReader struct {
	r    io.Reader
	n    int
	tick time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.tick)
	return s.r.Read(p[:min(len(p), s.n)])
}

func copyFile(t *testing.T, src string, wrap func(io.Reader) io.Reader) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), "copy.img")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, wrap(in)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func plain(r io.Reader) io.Reader { return r }

func TestWriterCopies(t *testing.T) {
	for _, tc := range []struct {
		name string
		// copy makes the copy of the running writer's image.
		copy      func(t *testing.T, w *Writer) string
		level     Level
		wantTorn  bool
		wantAhead bool
	}{
		{name: "clean stop", level: ApplicationConsistent, copy: func(t *testing.T, w *Writer) string {
			waitGen(t, w, 2)
			if err := w.Stop(); err != nil {
				t.Fatal(err)
			}
			return copyFile(t, w.Path(), plain)
		}},
		{name: "frozen", level: ApplicationConsistent, copy: func(t *testing.T, w *Writer) string {
			waitGen(t, w, 2)
			if err := w.Freeze(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			defer w.Thaw()
			return copyFile(t, w.Path(), plain)
		}},
		{name: "slow sequential copy while writing", wantTorn: true, copy: func(t *testing.T, w *Writer) string {
			waitGen(t, w, 1)
			// 1 MiB in 64 KiB steps every 20 ms: ~320 ms, 15 generations.
			return copyFile(t, w.Path(), func(r io.Reader) io.Reader { return &slowReader{r: r, n: 64 << 10, tick: 20 * time.Millisecond} })
		}},
		{name: "atomic snapshot mid-generation", level: CrashConsistent, wantAhead: true, copy: func(t *testing.T, w *Writer) string {
			waitGen(t, w, 1)
			for try := 0; ; try++ {
				waitWritten(t, w, testRecords/2)
				dst := atomicCopy(t, w)
				// A loaded machine may let the generation end first: retry.
				if res, err := Check(dst); err != nil || res.Ahead > 0 || try == 5 {
					return dst
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			interval := 20 * time.Millisecond
			if tc.wantAhead {
				interval = 400 * time.Millisecond
			}
			w := start(t, filepath.Join(t.TempDir(), "disk.img"), interval)
			res, err := Check(tc.copy(t, w))
			var te *TornError
			switch {
			case tc.wantTorn:
				if !errors.As(err, &te) {
					t.Fatalf("Check of a torn copy = %v, %v; want a tear", res, err)
				}
				t.Logf("detected: %v", err)
			case err != nil || res.Level != tc.level || (res.Ahead > 0) != tc.wantAhead:
				t.Fatalf("Check = %v, %v; want %s (ahead %v)", res, err, tc.level, tc.wantAhead)
			}
		})
	}
}

// atomicCopy copies the image as a reflink clone would: the inode locked
// (no record write in progress), every record whole.
func atomicCopy(t *testing.T, w *Writer) string {
	t.Helper()
	w.ioMu.Lock()
	defer w.ioMu.Unlock()
	return copyFile(t, w.Path(), plain)
}

func waitWritten(t *testing.T, w *Writer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		got := w.written
		w.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records not written", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func stat(t *testing.T, path string) (time.Time, uint64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Check(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.ModTime(), res.Commit
}

func TestFreezeThaw(t *testing.T) {
	w := start(t, filepath.Join(t.TempDir(), "disk.img"), 20*time.Millisecond)
	waitGen(t, w, 1)
	// A long interval would make the freeze wait; it finishes unpaced.
	begin := time.Now()
	if err := w.Freeze(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Freeze(context.Background(), 0); err != nil { // idempotent
		t.Fatal(err)
	}
	t.Logf("froze in %s", time.Since(begin))
	m1, g1 := stat(t, w.Path())
	time.Sleep(100 * time.Millisecond)
	if m2, g2 := stat(t, w.Path()); !m2.Equal(m1) || g2 != g1 {
		t.Fatalf("frozen guest wrote: mtime %v -> %v, generation %d -> %d", m1, m2, g1, g2)
	}
	if s := w.Status(); !s.Frozen || s.Freezes != 1 {
		t.Fatalf("status %+v", s)
	}
	if !w.Thaw() || w.Thaw() {
		t.Fatal("Thaw: want true, then false")
	}
	waitGen(t, w, g1+2)
	if s := w.Status(); s.Frozen || s.Thaws != 1 {
		t.Fatalf("status %+v", s)
	}
}

func TestFreezeWatchdog(t *testing.T) {
	w := start(t, filepath.Join(t.TempDir(), "disk.img"), 20*time.Millisecond)
	waitGen(t, w, 1)
	if err := w.Freeze(context.Background(), 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	g := w.Status().Generation
	waitGen(t, w, g+2)
	if s := w.Status(); s.Frozen || s.AutoThaws != 1 || s.Thaws != 0 {
		t.Fatalf("status %+v", s)
	}
}

func TestFreezeSlowGeneration(t *testing.T) {
	// One generation every 10 s: the freeze finishes it without pacing.
	w := start(t, filepath.Join(t.TempDir(), "disk.img"), 10*time.Second)
	waitWritten(t, w, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.Freeze(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if res, err := Check(w.Path()); err != nil || res.Level != ApplicationConsistent || res.Commit != 1 {
		t.Fatalf("Check = %v, %v", res, err)
	}
}

func TestRestartContinues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	w := start(t, path, 20*time.Millisecond)
	waitGen(t, w, 3)
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w.Freeze(context.Background(), 0); !errors.Is(err, ErrStopped) {
		t.Fatalf("Freeze of a stopped writer = %v", err)
	}
	g := w.Status().Generation
	w2 := start(t, path, 20*time.Millisecond)
	waitGen(t, w2, g+1)
	if err := w2.Stop(); err != nil {
		t.Fatal(err)
	}
	if res, err := Check(path); err != nil || res.Level != ApplicationConsistent || res.Commit <= g {
		t.Fatalf("Check after restart = %v, %v (first run committed %d)", res, err, g)
	}
}
