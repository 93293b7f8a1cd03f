// Reflink tests on a loop-mounted XFS (reflink=1): FIEMAP change detection
// between captures, and the receiver's reflink clone.
package blockmover

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// mountXFS mounts a fresh XFS with reflink on a loop file of size bytes and
// returns its mount point; it skips only when not root.
func mountXFS(tb testing.TB, size int64) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("loop-mounting XFS needs root")
	}
	dir := tb.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	must(tb, os.Mkdir(mnt, 0o755))
	must(tb, os.WriteFile(img, nil, 0o600))
	must(tb, os.Truncate(img, size))
	for _, argv := range [][]string{{"mkfs.xfs", "-q", "-m", "reflink=1", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			tb.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	tb.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	return mnt
}

// capture reflink-clones live to dst, as the sync's capture step does.
func capture(tb testing.TB, live, dst string) {
	tb.Helper()
	must(tb, os.MkdirAll(filepath.Dir(dst), 0o755))
	src, out := open(tb, live), openRW(tb, dst)
	defer src.Close()
	defer out.Close()
	must(tb, unix.IoctlFileClone(int(out.Fd()), int(src.Fd())))
}

// Between two captures of a live image, only the extents that changed are
// read and only the rewritten 4 KiB pieces are sent; a capture that is not
// the DR side's previous state falls back to a full pass, still exact.
func TestFiemapBetweenCaptures(t *testing.T) {
	mnt := mountXFS(t, 2*gib)
	live := filepath.Join(mnt, "primary", "pv", "disk.img")
	capDir := filepath.Join(mnt, "primary", ".ocpdr-captures", "pv")
	e := &env{root: filepath.Join(mnt, "dr"), rel: "pv/disk.img"}
	must(t, os.MkdirAll(filepath.Dir(live), 0o755))
	must(t, os.MkdirAll(filepath.Join(e.root, "pv"), 0o755))
	makeImage(t, live, 512*mib, 1*mib, 2*mib, 11) // 256 MiB of data
	c1, c2, c3 := filepath.Join(capDir, "1", "disk.img"), filepath.Join(capDir, "2", "disk.img"), filepath.Join(capDir, "3", "disk.img")
	capture(t, live, c1)
	r := e.sync(t, SendOptions{Source: c1})
	want(t, r.Method == MethodFull, "first sync: %s", r.Method)

	changed := scatter(t, live, 100, 21)
	capture(t, live, c2)
	r = e.sync(t, SendOptions{Source: c2, Previous: c1})
	assertSame(t, c2, e.dst())
	want(t, r.Method == MethodFiemap && r.Receiver.Clone == CloneReflink, "method %s clone %s", r.Method, r.Receiver.Clone)
	want(t, r.BytesRead <= int64(changed)*DefaultBlockSize, "read %d bytes for %d changed blocks", r.BytesRead, changed)
	want(t, r.DataBytesSent <= 100*4*kib, "sent %d data bytes for 100 rewritten 4 KiB blocks", r.DataBytesSent)
	want(t, r.BlocksChanged == changed, "%d blocks changed, want %d", r.BlocksChanged, changed)

	scatter(t, live, 50, 22)
	capture(t, live, c3)
	r = e.sync(t, SendOptions{Source: c3, Previous: c1}) // c1 is not what DR holds
	assertSame(t, c3, e.dst())
	want(t, r.Method == MethodFull, "stale previous: method %s", r.Method)
}
