// Paths: the receiver writes only beneath its root. The relative path it is
// given is checked lexically, then every directory is opened with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS and every file relative to it with
// O_NOFOLLOW, so neither ".." nor a symlink can lead outside.
package blockmover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ReservedPrefix starts every name the package (and ocpv-dr) keeps for itself.
const ReservedPrefix = ".ocpdr"

const tempPrefix = ".ocpdr-bm-tmp."

// ErrPathRefused is wrapped by every refused path.
var ErrPathRefused = errors.New("path refused")

// CheckRel validates a receiver's relative path lexically.
func CheckRel(rel string) error {
	if rel == "" || strings.ContainsRune(rel, 0) || !filepath.IsLocal(rel) || filepath.Clean(rel) != rel {
		return fmt.Errorf("%w: %q is not a clean path inside the root", ErrPathRefused, rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if strings.HasPrefix(part, ReservedPrefix) {
			return fmt.Errorf("%w: %q names a reserved %s* entry", ErrPathRefused, rel, ReservedPrefix)
		}
	}
	if len(tempPrefix)+len(filepath.Base(rel)) > 255 {
		return fmt.Errorf("%w: file name too long for its temporary name", ErrPathRefused)
	}
	return nil
}

func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	for {
		fd, err := unix.Openat2(dirfd, rel, how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return fd, err
	}
}

// OpenDirBeneath opens rel's parent directory beneath root.
func OpenDirBeneath(root, rel string) (*os.File, error) {
	if err := CheckRel(rel); err != nil {
		return nil, err
	}
	r, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("open root: %w", err)
	}
	defer r.Close()
	fd, err := openBeneath(int(r.Fd()), filepath.Dir(rel), unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("%w: %q leads through a symlink or a non-directory, or out of %s: %w", ErrPathRefused, rel, root, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open directory of %q under %s: %w", rel, root, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, filepath.Dir(rel))), nil
}

// openIn opens name in dir, never following a symlink; a missing file is
// (nil, nil).
func openIn(dir *os.File, name string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
	if errors.Is(err, unix.ENOENT) && flags&unix.O_CREAT == 0 {
		return nil, nil
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: %s/%s is a symlink", ErrPathRefused, dir.Name(), name)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", dir.Name(), name, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name))
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrPathRefused, f.Name())
	}
	return f, nil
}

// openTableDir opens (creating it when asked) dir's table directory.
func openTableDir(dir *os.File, create bool) (*os.File, error) {
	if create {
		if err := unix.Mkdirat(int(dir.Fd()), TableDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s/%s: %w", dir.Name(), TableDir, err)
		}
	}
	fd, err := openBeneath(int(dir.Fd()), TableDir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", dir.Name(), TableDir, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), TableDir)), nil
}

// loadTable reads the table of name in dir (a missing or bad one is an error
// wrapping ErrBadTable).
func loadTable(dir *os.File, name string) (*Table, error) {
	td, err := openTableDir(dir, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTable, err)
	}
	defer td.Close()
	f, err := openIn(td, name, unix.O_RDONLY, 0)
	if err != nil || f == nil {
		return nil, fmt.Errorf("%w: %s/%s: missing or not a file (%v)", ErrBadTable, td.Name(), name, err)
	}
	defer f.Close()
	b, err := readAllLimited(f, 64<<20)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTable, err)
	}
	return UnmarshalTable(b)
}

// storeTable writes t as the table of name in dir: temporary file, fsync,
// rename, fsync of the table directory.
func storeTable(dir *os.File, name string, t *Table) error {
	b, err := t.Marshal()
	if err != nil {
		return err
	}
	td, err := openTableDir(dir, true)
	if err != nil {
		return err
	}
	defer td.Close()
	tmp := tempPrefix + name
	_ = unix.Unlinkat(int(td.Fd()), tmp, 0)
	f, err := openIn(td, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = unix.Renameat(int(td.Fd()), tmp, int(td.Fd()), name)
	}
	if err != nil {
		_ = unix.Unlinkat(int(td.Fd()), tmp, 0)
		return fmt.Errorf("store table %s/%s: %w", td.Name(), name, err)
	}
	return td.Sync()
}

func readAllLimited(f *os.File, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", f.Name(), fi.Size(), limit)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return b, nil
}
