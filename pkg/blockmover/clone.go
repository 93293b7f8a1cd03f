// Clone: the receiver's working copy is a reflink clone (FICLONE) of the
// previous DR file; where the filesystem cannot reflink it is a sparse copy.
package blockmover

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Ways the working copy was made, as reported in the result.
const (
	CloneReflink = "reflink"
	CloneCopy    = "copy"
	CloneNew     = "new"
)

// cloneInto makes dst (empty) a copy of src: a reflink clone when the
// filesystem can, otherwise a copy of src's data ranges (holes stay holes).
func cloneInto(dst, src *os.File) (string, error) {
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err == nil {
		return CloneReflink, nil
	}
	fi, err := src.Stat()
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", src.Name(), err)
	}
	if err := dst.Truncate(fi.Size()); err != nil {
		return "", fmt.Errorf("size %s: %w", dst.Name(), err)
	}
	data, err := DataRanges(src, fi.Size())
	if err != nil {
		return "", err
	}
	for _, r := range data {
		if err := copyRange(dst, src, r); err != nil {
			return "", err
		}
	}
	return CloneCopy, nil
}

func copyRange(dst, src *os.File, r Range) error {
	for off := r.Off; off < r.End(); {
		roff, woff := off, off
		n, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(r.End()-off, 1<<30)), 0)
		if err != nil {
			return fmt.Errorf("copy %s to %s: %w", src.Name(), dst.Name(), err)
		}
		if n == 0 {
			return fmt.Errorf("copy %s to %s: short copy at %d", src.Name(), dst.Name(), off)
		}
		off += int64(n)
	}
	return nil
}
