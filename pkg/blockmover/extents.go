// Extent compare: FIEMAP maps of the previous reflink capture and the new one
// tell which blocks share physical extents, i.e. cannot have changed.
package blockmover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	fsIocFiemap     = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync  = 0x1
	fiemapHdrSize   = 32
	fiemapExtSize   = 56
	fiemapBatch     = 512
	extentLast      = 0x1
	extentUntrusted = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 // UNKNOWN, DELALLOC, ENCODED, NOT_ALIGNED, DATA_INLINE, DATA_TAIL
)

// Extent maps a logical range of a file to a physical one.
type Extent struct {
	Logical, Physical, Length int64
	Flags                     uint32
}

// ErrNoFiemap is wrapped when the filesystem cannot report extents.
var ErrNoFiemap = errors.New("FIEMAP not available")

// Fiemap returns f's extents (synced first, so no delayed allocation hides).
func Fiemap(f *os.File) ([]Extent, error) {
	var out []Extent
	buf := make([]byte, fiemapHdrSize+fiemapBatch*fiemapExtSize)
	for start := uint64(0); ; {
		clear(buf)
		le := binary.LittleEndian
		le.PutUint64(buf[0:], start)
		le.PutUint64(buf[8:], ^uint64(0)-start)
		le.PutUint32(buf[16:], fiemapFlagSync)
		le.PutUint32(buf[24:], fiemapBatch)
		_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0])))
		if e != 0 {
			return nil, fmt.Errorf("%w on %s: %w", ErrNoFiemap, f.Name(), e)
		}
		n := int(le.Uint32(buf[20:]))
		if n == 0 {
			return out, nil
		}
		for i := range n {
			b := buf[fiemapHdrSize+i*fiemapExtSize:]
			out = append(out, Extent{Logical: int64(le.Uint64(b)), Physical: int64(le.Uint64(b[8:])),
				Length: int64(le.Uint64(b[16:])), Flags: le.Uint32(b[40:])})
		}
		last := out[len(out)-1]
		if last.Flags&extentLast != 0 {
			return out, nil
		}
		start = uint64(last.Logical + last.Length)
	}
}

// SharedRanges lists the logical ranges where a and b map to the same
// physical bytes (trusted extents only): there the two files are equal.
func SharedRanges(a, b []Extent) []Range {
	var out []Range
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		x, y := a[i], b[j]
		lo, hi := max(x.Logical, y.Logical), min(x.Logical+x.Length, y.Logical+y.Length)
		if lo < hi && x.Flags&extentUntrusted == 0 && y.Flags&extentUntrusted == 0 &&
			x.Physical-x.Logical == y.Physical-y.Logical {
			out = appendRange(out, Range{lo, hi - lo})
		}
		if x.Logical+x.Length < y.Logical+y.Length {
			i++
		} else {
			j++
		}
	}
	return out
}

func appendRange(rs []Range, r Range) []Range {
	if n := len(rs); n > 0 && rs[n-1].End() == r.Off {
		rs[n-1].Len += r.Len
		return rs
	}
	return append(rs, r)
}

// SameBlocks compares the extent maps of prev and cur (same filesystem) and
// returns the ranges of cur known equal to prev without reading either.
func SameBlocks(prev, cur *os.File) ([]Range, error) {
	pi, err1 := prev.Stat()
	ci, err2 := cur.Stat()
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if devOf(pi) != devOf(ci) {
		return nil, fmt.Errorf("%w: %s and %s are on different filesystems", ErrNoFiemap, prev.Name(), cur.Name())
	}
	pe, err := Fiemap(prev)
	if err != nil {
		return nil, err
	}
	ce, err := Fiemap(cur)
	if err != nil {
		return nil, err
	}
	return SharedRanges(pe, ce), nil
}
