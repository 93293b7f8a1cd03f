// Metadata, protocol version and path tests.
package blockmover

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// aclXattr encodes a POSIX access ACL (user::rw-, user:1234:r--,
// group::r--, mask::r--, other::---) as the kernel stores it.
func aclXattr() []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, uint32(2))
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 6, ^uint32(0)}, {0x02, 4, 1234}, {0x04, 4, ^uint32(0)}, {0x10, 4, ^uint32(0)}, {0x20, 0, ^uint32(0)}} {
		_ = binary.Write(&b, binary.LittleEndian, e)
	}
	return b.Bytes()
}

// Owner, mode, times, xattrs and ACLs arrive as at the source; an xattr the
// previous DR version had and the source no longer has is removed.
func TestMetadataPreserved(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("owner and trusted xattrs need root")
	}
	e := newEnv(t, t.TempDir())
	makeImage(t, e.src, 8*mib, 1*mib, 2*mib, 4)
	must(t, unix.Setxattr(e.src, "user.old", []byte("gone soon"), 0))
	e.sync(t, SendOptions{})
	must(t, unix.Removexattr(e.src, "user.old"))
	must(t, unix.Setxattr(e.src, "user.ocpdr.test", []byte("value\x00with nul"), 0))
	must(t, unix.Setxattr(e.src, "trusted.t", []byte("t"), 0))
	must(t, unix.Setxattr(e.src, "system.posix_acl_access", aclXattr(), 0))
	must(t, os.Chown(e.src, 1234, 5678))
	must(t, os.Chmod(e.src, 0o640))
	at, mt := time.Unix(1700000000, 123456789), time.Unix(1710000000, 987654321)
	must(t, os.Chtimes(e.src, at, mt))
	e.sync(t, SendOptions{})
	sm, err1 := ReadMeta(open(t, e.src))
	dm, err2 := ReadMeta(open(t, e.dst())) // before reading it: a read may move atime
	must(t, errors.Join(err1, err2))
	assertSame(t, e.src, e.dst())
	sm.AtimeNs = at.UnixNano() // the sender's read moved it (relatime); it sent the one before
	want(t, sm.Mode == dm.Mode && sm.UID == dm.UID && sm.GID == dm.GID && dm.UID == 1234 && dm.Mode == 0o640,
		"mode/owner: source %o %d:%d, DR %o %d:%d", sm.Mode, sm.UID, sm.GID, dm.Mode, dm.UID, dm.GID)
	want(t, dm.MtimeNs == mt.UnixNano() && dm.AtimeNs == at.UnixNano(), "times: DR %d %d", dm.AtimeNs, dm.MtimeNs)
	want(t, xattrString(sm.Xattrs) == xattrString(dm.Xattrs), "xattrs: source %s, DR %s", xattrString(sm.Xattrs), xattrString(dm.Xattrs))
	want(t, strings.Contains(xattrString(dm.Xattrs), "system.posix_acl_access") && !strings.Contains(xattrString(dm.Xattrs), "user.old"),
		"DR xattrs %s", xattrString(dm.Xattrs))
}

func xattrString(xs []Xattr) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(x.Name + "=" + string(x.Value) + ";")
	}
	return b.String()
}

// Ends of different protocol versions refuse each other with a clear error.
func TestVersionMismatch(t *testing.T) {
	e := newEnv(t, t.TempDir())
	makeImage(t, e.src, 1*mib, 64*kib, 256*kib, 1)
	t.Run("old receiver", func(t *testing.T) {
		peer := func(c *conn) {
			var h Hello
			_ = c.expectJSON(frameHello, &h)
			_ = c.sendJSON(frameAck, Ack{Version: 99})
			_ = c.flush()
		}
		r, w := fakePeer(t, peer)
		_, err := Send(SendOptions{Source: e.src}, r, w)
		want(t, err != nil && strings.Contains(err.Error(), "protocol version mismatch: peer speaks 99"), "sender: %v", err)
	})
	t.Run("new sender", func(t *testing.T) {
		got := make(chan error, 1)
		peer := func(c *conn) {
			_ = c.sendJSON(frameHello, Hello{Version: 2, BlockSize: DefaultBlockSize})
			_ = c.flush()
			_, _, err := c.recvFrame(maxJSONFrame)
			got <- err
		}
		r, w := fakePeer(t, peer)
		_, err := Receive(ReceiveOptions{Root: e.root, Path: e.rel}, r, w)
		want(t, err != nil && strings.Contains(err.Error(), "protocol version mismatch"), "receiver: %v", err)
		perr := <-got
		want(t, perr != nil && strings.Contains(perr.Error(), "protocol version mismatch: peer speaks 2"), "sender got %v", perr)
		_, statErr := os.Stat(e.dst())
		want(t, errors.Is(statErr, os.ErrNotExist), "receiver wrote a file: %v", statErr)
	})
}

// fakePeer runs peer on the other end of a pipe pair and returns this end's
// reader and writer.
func fakePeer(t *testing.T, peer func(c *conn)) (io.Reader, io.Writer) {
	aR, aW, err1 := os.Pipe()
	bR, bW, err2 := os.Pipe()
	must(t, errors.Join(err1, err2))
	go func() {
		peer(newConn(aR, bW))
		_ = bW.Close()
		_ = aR.Close()
	}()
	return bR, aW
}

// The receiver writes only beneath its root: "..", absolute and reserved
// names, and symlinks (directory or file) are refused and nothing outside
// changes.
func TestHostilePathsRefused(t *testing.T) {
	base := t.TempDir()
	e := newEnv(t, base)
	makeImage(t, e.src, 1*mib, 64*kib, 256*kib, 1)
	outside := filepath.Join(base, "outside")
	must(t, os.MkdirAll(filepath.Join(outside, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(outside, "disk.img"), []byte("precious"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(e.root, "linkdir")))
	must(t, os.Symlink(filepath.Join(outside, "disk.img"), filepath.Join(e.root, "pv", "link.img")))
	for _, rel := range []string{"../outside/disk.img", "pv/../../outside/disk.img", "/etc/passwd", "", ".",
		"linkdir/disk.img", "linkdir/sub/disk.img", "pv/link.img", ".ocpdr-points/x/disk.img", "pv/.ocpdr-blockmap/disk.img", "pv//disk.img"} {
		t.Run(rel, func(t *testing.T) {
			_, _, serr, rerr := transfer(SendOptions{Source: e.src}, ReceiveOptions{Root: e.root, Path: rel}, 0)
			want(t, errors.Is(rerr, ErrPathRefused), "receiver accepted %q: %v", rel, rerr)
			want(t, serr != nil, "sender did not fail for %q", rel)
			want(t, string(readFile(t, filepath.Join(outside, "disk.img"))) == "precious", "outside file changed")
			top, _ := os.ReadDir(outside)
			sub, _ := os.ReadDir(filepath.Join(outside, "sub"))
			want(t, len(top) == 2 && len(sub) == 0, "files written outside the root: %v %v", top, sub)
		})
	}
}
