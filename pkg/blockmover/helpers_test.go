// Test helpers: a sender and a receiver joined by pipes, sparse images with
// scattered writes, and comparisons of content and holes.
package blockmover

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// env is one source file and one DR root.
type env struct {
	src, root, rel string
}

func newEnv(t testing.TB, base string) *env {
	t.Helper()
	e := &env{src: filepath.Join(base, "primary", "pv", "disk.img"), root: filepath.Join(base, "dr"), rel: "pv/disk.img"}
	for _, d := range []string{filepath.Dir(e.src), filepath.Join(e.root, "pv")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) dst() string { return filepath.Join(e.root, e.rel) }

// cutWriter fails after n bytes, as a connection dropped mid-stream.
type cutWriter struct {
	w io.WriteCloser
	n int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.n {
		k, _ := c.w.Write(p[:c.n])
		c.n = 0
		_ = c.w.Close()
		return k, errors.New("connection cut")
	}
	c.n -= int64(len(p))
	return c.w.Write(p)
}

// transfer runs Send and Receive joined by pipes; cut > 0 drops the
// sender-to-receiver stream after that many bytes.
func transfer(so SendOptions, ro ReceiveOptions, cut int64) (sres, rres *Result, serr, rerr error) {
	s2rR, s2rW, err1 := os.Pipe() // kernel pipes, buffered like ssh's
	r2sR, r2sW, err2 := os.Pipe()
	if err := errors.Join(err1, err2); err != nil {
		return nil, nil, err, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		rres, rerr = Receive(ro, s2rR, r2sW)
		_ = r2sW.Close()
		_ = s2rR.Close()
	}()
	var w io.Writer = s2rW
	if cut > 0 {
		w = &cutWriter{w: s2rW, n: cut}
	}
	sres, serr = Send(so, r2sR, w)
	_ = s2rW.Close()
	_ = r2sR.Close()
	<-done
	return sres, rres, serr, rerr
}

func (e *env) sync(t testing.TB, so SendOptions) *Result {
	t.Helper()
	if so.Source == "" {
		so.Source = e.src
	}
	sres, _, serr, rerr := transfer(so, ReceiveOptions{Root: e.root, Path: e.rel}, 0)
	if serr != nil || rerr != nil {
		t.Fatalf("sync: sender %v, receiver %v", serr, rerr)
	}
	return sres
}

func openRW(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func writeAt(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f := openRW(t, path)
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func randBytes(r *rand.Rand, n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// makeImage creates a sparse image of size bytes with data extents of
// extent bytes every stride bytes.
func makeImage(t testing.TB, path string, size, extent, stride int64, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	f := openRW(t, path)
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off+extent <= size; off += stride {
		if _, err := f.WriteAt(randBytes(r, extent), off); err != nil {
			t.Fatal(err)
		}
	}
}

// scatter rewrites n 4 KiB blocks at random 4 KiB-aligned offsets and
// returns the distinct 64 KiB blocks touched.
func scatter(t testing.TB, path string, n int, seed uint64) int {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 2))
	f := openRW(t, path)
	defer f.Close()
	fi, _ := f.Stat()
	touched := map[int64]bool{}
	for range n {
		off := r.Int64N(fi.Size()/(4*kib)) * 4 * kib
		if _, err := f.WriteAt(randBytes(r, 4*kib), off); err != nil {
			t.Fatal(err)
		}
		touched[off/DefaultBlockSize] = true
	}
	return len(touched)
}

// assertSame checks b has a's size, data ranges (holes) and bytes.
func assertSame(t testing.TB, a, b string) {
	t.Helper()
	fa, fb := open(t, a), open(t, b)
	defer fa.Close()
	defer fb.Close()
	sa, sb := size(t, fa), size(t, fb)
	if sa != sb {
		t.Fatalf("size: %s %d, %s %d", a, sa, b, sb)
	}
	ra, rb := allocated(t, fa), allocated(t, fb)
	if i := firstDiff(ra, rb); i >= 0 {
		t.Fatalf("holes differ (%d and %d data ranges): from range %d %s has data %v, %s has %v",
			len(ra), len(rb), i, a, head(ra[i:]), b, head(rb[i:]))
	}
	for _, r := range ra {
		x, y := make([]byte, r.Len), make([]byte, r.Len)
		_, _ = fa.ReadAt(x, r.Off)
		_, _ = fb.ReadAt(y, r.Off)
		if !bytes.Equal(x, y) {
			t.Fatalf("%s and %s differ in %d+%d", a, b, r.Off, r.Len)
		}
	}
}

// firstDiff is the index of the first range where a and b differ, or -1.
func firstDiff(a, b []Range) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// allocated lists the logical ranges f has blocks for (FIEMAP: the data
// fork only; XFS's SEEK_DATA also reports copy-on-write staging blocks,
// which the filesystem reclaims later), or its SEEK_DATA ranges where
// FIEMAP is not available.
func allocated(t testing.TB, f *os.File) []Range {
	t.Helper()
	ext, err := Fiemap(f)
	if err != nil {
		rs, err := DataRanges(f, size(t, f))
		must(t, err)
		return rs
	}
	var out []Range
	for _, e := range ext {
		out = appendRange(out, Range{e.Logical, e.Length})
	}
	if n := len(out); n > 0 && out[n-1].End() > size(t, f) {
		out[n-1].Len = size(t, f) - out[n-1].Off
	}
	return out
}

func head(rs []Range) []Range { return rs[:min(len(rs), 4)] }

func open(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func size(t testing.TB, f *os.File) int64 {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
