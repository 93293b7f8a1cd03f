// Holes: where a sparse file holds data (SEEK_DATA/SEEK_HOLE) and punching
// the source's holes into the DR copy (fallocate PUNCH_HOLE|KEEP_SIZE).
package blockmover

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Range is a byte range [Off, Off+Len).
type Range struct {
	Off, Len int64
}

// End is the first byte after the range.
func (r Range) End() int64 { return r.Off + r.Len }

// DataRanges lists the ranges of f (size bytes) that hold data, in order. A
// filesystem without SEEK_DATA reports the whole file as data.
func DataRanges(f *os.File, size int64) ([]Range, error) {
	fd := int(f.Fd())
	var out []Range
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole after off
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return []Range{{0, size}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("seek data %s: %w", f.Name(), err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole %s: %w", f.Name(), err)
		}
		end = min(end, size)
		if end > start {
			out = append(out, Range{start, end - start})
		}
		off = end
	}
	return out, nil
}

// Holes is the complement of data within [0, size).
func Holes(data []Range, size int64) []Range {
	var out []Range
	pos := int64(0)
	for _, d := range data {
		if d.Off > pos {
			out = append(out, Range{pos, d.Off - pos})
		}
		pos = d.End()
	}
	if pos < size {
		out = append(out, Range{pos, size - pos})
	}
	return out
}

// PunchHole deallocates r in f, keeping its size; the range reads as zeros.
func PunchHole(f *os.File, r Range) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, r.Off, r.Len)
	if err != nil {
		return fmt.Errorf("punch hole %d+%d in %s: %w", r.Off, r.Len, f.Name(), err)
	}
	return nil
}

// cursor walks sorted, non-overlapping ranges for blocks asked in
// increasing offset order.
type cursor struct {
	rs []Range
	i  int
}

func (c *cursor) skip(off int64) {
	for c.i < len(c.rs) && c.rs[c.i].End() <= off {
		c.i++
	}
}

// touches reports whether [off, off+n) overlaps any range.
func (c *cursor) touches(off, n int64) bool {
	c.skip(off)
	return c.i < len(c.rs) && c.rs[c.i].Off < off+n
}

// covers reports whether [off, off+n) lies inside one range.
func (c *cursor) covers(off, n int64) bool {
	c.skip(off)
	return c.i < len(c.rs) && c.rs[c.i].Off <= off && c.rs[c.i].End() >= off+n
}

// gaps lists the parts of [off, off+n) that no range covers.
func (c *cursor) gaps(off, n int64) []Range {
	c.skip(off)
	var out []Range
	pos, end := off, off+n
	for j := c.i; j < len(c.rs) && c.rs[j].Off < end && pos < end; j++ {
		if c.rs[j].Off > pos {
			out = append(out, Range{pos, c.rs[j].Off - pos})
		}
		pos = max(pos, c.rs[j].End())
	}
	if pos < end {
		out = append(out, Range{pos, end - pos})
	}
	return out
}

// within lists the parts of r that the ranges cover.
func (c *cursor) within(r Range) []Range {
	c.skip(r.Off)
	var out []Range
	for j := c.i; j < len(c.rs) && c.rs[j].Off < r.End(); j++ {
		lo, hi := max(r.Off, c.rs[j].Off), min(r.End(), c.rs[j].End())
		if lo < hi {
			out = append(out, Range{lo, hi - lo})
		}
	}
	return out
}
