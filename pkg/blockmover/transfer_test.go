// Transfer tests: what a user sees at DR after a sync through the pipes.
package blockmover

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A 1 GiB-apparent sparse image synced, changed and synced again, step by
// step: DR stays byte-identical with the same holes, and the wire carries
// about the changed blocks only.
func TestTransferSparseImage(t *testing.T) {
	e := newEnv(t, t.TempDir())
	makeImage(t, e.src, gib, 256*kib, 16*mib, 1) // 64 extents, 16 MiB of data
	var changed int
	steps := []struct {
		name   string
		change func()
		check  func(t *testing.T, r *Result)
	}{
		{"first sync", func() {}, func(t *testing.T, r *Result) {
			want(t, r.Method == MethodFull && r.Receiver.Clone == CloneNew, "method %s clone %s", r.Method, r.Receiver.Clone)
			want(t, r.BytesSent < 17*mib, "first sync sent %d bytes for 16 MiB of data (holes sent?)", r.BytesSent)
		}},
		{"scattered 4 KiB writes", func() { changed = scatter(t, e.src, 100, 7) }, func(t *testing.T, r *Result) {
			want(t, r.Method == MethodDigestTable, "method %s, want %s", r.Method, MethodDigestTable)
			want(t, r.BlocksChanged == changed, "%d blocks changed, want %d", r.BlocksChanged, changed)
			limit := int64(changed)*(DefaultBlockSize+64) + 64*kib
			want(t, r.BytesSent <= limit, "sent %d bytes for %d changed blocks (limit %d)", r.BytesSent, changed, limit)
			want(t, r.Receiver.DRBytesRead <= int64(changed)*DefaultBlockSize, "DR side read %d bytes", r.Receiver.DRBytesRead)
		}},
		{"no change", func() {}, func(t *testing.T, r *Result) {
			want(t, r.BlocksChanged == 0 && r.BytesSent < 64*kib, "unchanged file: %d blocks, %d bytes", r.BlocksChanged, r.BytesSent)
		}},
		{"last byte changed", func() { writeAt(t, e.src, gib-1, []byte{0x5a}) }, func(t *testing.T, r *Result) {
			want(t, r.BlocksChanged == 1, "%d blocks changed", r.BlocksChanged)
		}},
		{"grows by a partial block", func() { writeAt(t, e.src, gib+1000, []byte("tail")) }, nil},
		{"shrinks mid-block", func() { must(t, os.Truncate(e.src, gib-12345)) }, nil},
		{"hole punched at the source", func() { punch(t, e.src, Range{16 * mib, 256 * kib}) }, nil},
		{"replaced by another file of the same size", func() {
			other := e.src + ".new"
			makeImage(t, other, gib-12345, 128*kib, 8*mib, 99)
			must(t, os.Rename(other, e.src))
		}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change()
			r := e.sync(t, SendOptions{})
			assertSame(t, e.src, e.dst())
			if st.check != nil {
				st.check(t, r)
			}
		})
	}
}

// A stored table that is missing, damaged or stale, at either end, or a DR
// file changed behind the mover's back, costs a full pass, never a wrong copy.
func TestBadTablesFallBackToFullPass(t *testing.T) {
	cases := []struct {
		name   string
		spoil  func(e *env)
		method string
	}{
		{"DR table removed", func(e *env) { must(t, os.Remove(TablePath(e.dst()))) }, MethodFull},
		{"DR table truncated", func(e *env) { truncateBy(t, TablePath(e.dst()), 20) }, MethodFull},
		{"DR table bit flipped", func(e *env) { flip(t, TablePath(e.dst()), 100) }, MethodFull},
		{"DR file changed behind the table", func(e *env) { writeAt(t, e.dst(), 4*mib+100, []byte("tampered")) }, MethodFull},
		{"source table removed", func(e *env) { must(t, os.Remove(TablePath(e.src))) }, MethodFull},
		{"source table damaged", func(e *env) { flip(t, TablePath(e.src), 60) }, MethodFull},
		{"source table of other content", func(e *env) {
			tab, err := ReadTable(TablePath(e.src))
			must(t, err)
			tab.Digests[3][0] ^= 1
			b, _ := tab.Marshal()
			must(t, os.WriteFile(TablePath(e.src), b, 0o600))
		}, MethodFull},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, t.TempDir())
			makeImage(t, e.src, 64*mib, 1*mib, 4*mib, 3)
			e.sync(t, SendOptions{})
			scatter(t, e.src, 20, 5)
			c.spoil(e)
			r := e.sync(t, SendOptions{})
			assertSame(t, e.src, e.dst())
			want(t, r.Method == c.method, "method %s, want %s", r.Method, c.method)
			r = e.sync(t, SendOptions{})
			want(t, r.Method == MethodDigestTable && r.BlocksChanged == 0, "the sync after: %s, %d changed", r.Method, r.BlocksChanged)
		})
	}
}

// A transfer cut mid-stream leaves the previous DR version whole and no
// temporary file; the next sync completes.
func TestInterruptedTransferKeepsPrevious(t *testing.T) {
	for _, cut := range []int64{10, 300, 200 * kib, 2 * mib} {
		t.Run("", func(t *testing.T) {
			e := newEnv(t, t.TempDir())
			makeImage(t, e.src, 64*mib, 1*mib, 2*mib, 3)
			e.sync(t, SendOptions{NoCompress: true})
			before := readFile(t, e.dst())
			scatter(t, e.src, 200, 9)
			_, _, serr, rerr := transfer(SendOptions{Source: e.src, NoCompress: true}, ReceiveOptions{Root: e.root, Path: e.rel}, cut)
			want(t, serr != nil && rerr != nil, "cut at %d: sender %v, receiver %v", cut, serr, rerr)
			if string(readFile(t, e.dst())) != string(before) {
				t.Fatalf("cut at %d changed the DR file", cut)
			}
			ents, _ := os.ReadDir(filepath.Dir(e.dst()))
			for _, d := range ents {
				want(t, d.Name() == "disk.img" || d.Name() == TableDir, "left behind: %s", d.Name())
			}
			e.sync(t, SendOptions{})
			assertSame(t, e.src, e.dst())
		})
	}
}

func want(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func punch(t testing.TB, path string, r Range) {
	f := openRW(t, path)
	defer f.Close()
	must(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, r.Off, r.Len))
}

func truncateBy(t testing.TB, path string, n int64) {
	fi, err := os.Stat(path)
	must(t, err)
	must(t, os.Truncate(path, fi.Size()-n))
}

func flip(t testing.TB, path string, at int) {
	b := readFile(t, path)
	b[at] ^= 0x40
	must(t, os.WriteFile(path, b, 0o600))
}
