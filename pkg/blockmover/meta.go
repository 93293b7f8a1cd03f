// Metadata: size, mode, owner, timestamps and extended attributes (ACLs are
// the system.posix_acl_* xattrs), read at the source and applied at DR like
// rsync -aAX.
package blockmover

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// Meta is what the receiver applies to the file besides its bytes.
type Meta struct {
	Size    int64   `json:"size"`
	Mode    uint32  `json:"mode"`
	UID     int     `json:"uid"`
	GID     int     `json:"gid"`
	AtimeNs int64   `json:"atime_ns"`
	MtimeNs int64   `json:"mtime_ns"`
	Xattrs  []Xattr `json:"xattrs"`
}

func sysStat(fi fs.FileInfo) *syscall.Stat_t {
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil {
		st = &syscall.Stat_t{}
	}
	return st
}

func stateOfInfo(fi fs.FileInfo) FileState {
	st := sysStat(fi)
	return FileState{Size: fi.Size(), Ino: st.Ino, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano()}
}

func devOf(fi fs.FileInfo) uint64 { return sysStat(fi).Dev }

// ReadMeta reads f's metadata.
func ReadMeta(f *os.File) (Meta, error) {
	fi, err := f.Stat()
	if err != nil {
		return Meta{}, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	st := sysStat(fi)
	m := Meta{Size: fi.Size(), Mode: st.Mode & 0o7777, UID: int(st.Uid), GID: int(st.Gid),
		AtimeNs: st.Atim.Nano(), MtimeNs: st.Mtim.Nano()}
	m.Xattrs, err = readXattrs(f)
	return m, err
}

func listXattrs(f *os.File) ([]string, error) {
	fd := int(f.Fd())
	for size := 4096; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Flistxattr(fd, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<22 {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", f.Name(), err)
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

func readXattrs(f *os.File) ([]Xattr, error) {
	names, err := listXattrs(f)
	if err != nil {
		return nil, err
	}
	out := make([]Xattr, 0, len(names))
	for _, name := range names {
		buf := make([]byte, 64<<10)
		n, err := unix.Fgetxattr(int(f.Fd()), name, buf)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s of %s: %w", name, f.Name(), err)
		}
		out = append(out, Xattr{Name: name, Value: buf[:n]})
	}
	return out, nil
}

// ApplyMeta makes f's owner, xattrs, mode and times those of m (in that
// order: chown clears set-id bits, and times go last). Its size is set by
// the caller before the data is written.
func ApplyMeta(f *os.File, m Meta) error {
	if err := f.Chown(m.UID, m.GID); err != nil {
		return fmt.Errorf("chown %s: %w", f.Name(), err)
	}
	if err := syncXattrs(f, m.Xattrs); err != nil {
		return err
	}
	if err := unix.Fchmod(int(f.Fd()), m.Mode); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(m.AtimeNs), unix.NsecToTimespec(m.MtimeNs)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(f), ts, 0); err != nil {
		return fmt.Errorf("set times of %s: %w", f.Name(), err)
	}
	return nil
}

// fdPath names an open file through /proc, so times are set on the inode
// itself whatever its directory entry has become.
func fdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// syncXattrs sets want on f and removes every other xattr (a clone of the
// previous DR file carries the old ones).
func syncXattrs(f *os.File, want []Xattr) error {
	have, err := listXattrs(f)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	fd := int(f.Fd())
	for _, x := range want {
		keep[x.Name] = true
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("set xattr %s on %s: %w", x.Name, f.Name(), err)
		}
	}
	for _, name := range have {
		if keep[name] {
			continue
		}
		if err := unix.Fremovexattr(fd, name); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove xattr %s from %s: %w", name, f.Name(), err)
		}
	}
	return nil
}
