// Package guest simulates a VM guest writing to its disk image, in a pattern
// that makes a torn copy of the image detectable, and checks such copies.
//
// A disk image holds Records records of one page (4 KiB) each, at a fixed
// stride, and a commit record in its last page. Each generation g the Writer
// rewrites every record, in index order, with generation g (one pwrite per
// record), then writes the commit record with g. So at any instant the image
// holds a prefix of records at generation c+1 followed by a suffix at c, where
// c is the committed generation; a frozen or stopped guest leaves every record
// at c. A copy that reads the image over a longer time than it takes to write
// one generation (rsync of a live disk) mixes generations in another order,
// and Check reports it as torn.
package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

const page = 4096

// Level is a consistency level of a disk image (docs/recovery-points.md).
type Level string

// The levels Check reports.
const (
	ApplicationConsistent Level = "application-consistent"
	CrashConsistent       Level = "crash-consistent"
)

var (
	recordMagic = [8]byte{'O', 'C', 'P', 'D', 'R', 'R', 'E', 'C'}
	commitMagic = [8]byte{'O', 'C', 'P', 'D', 'R', 'C', 'M', 'T'}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// layout places the records and the commit record in an image.
type layout struct {
	size    int64 // image size, a multiple of page
	records int
	stride  int64 // distance between records, a multiple of page
}

func newLayout(size int64, records int) (layout, error) {
	size -= size % page
	if records <= 0 || size < 2*page {
		return layout{}, fmt.Errorf("image of %d bytes cannot hold %d records and a commit", size, records)
	}
	stride := (size - page) / int64(records) / page * page
	if stride < page {
		return layout{}, fmt.Errorf("image of %d bytes is too small for %d records of %d bytes", size, records, page)
	}
	return layout{size: size, records: records, stride: stride}, nil
}

func (l layout) recordOffset(i int) int64 { return int64(i) * l.stride }
func (l layout) commitOffset() int64      { return l.size - page }

// encodeRecord fills buf (one page) with record i of generation g.
func encodeRecord(buf []byte, i, records int, g uint64) {
	copy(buf[0:8], recordMagic[:])
	binary.LittleEndian.PutUint32(buf[8:12], uint32(i))
	binary.LittleEndian.PutUint32(buf[12:16], uint32(records))
	binary.LittleEndian.PutUint64(buf[16:24], g)
	seed := g ^ uint64(i)<<32
	for off := 24; off+8 <= page-4; off += 8 {
		seed = seed*6364136223846793005 + 1442695040888963407
		binary.LittleEndian.PutUint64(buf[off:off+8], seed)
	}
	seal(buf)
}

// encodeCommit fills buf (one page) with the commit record of generation g.
func encodeCommit(buf []byte, l layout, g uint64, unixNano int64) {
	clear(buf)
	copy(buf[0:8], commitMagic[:])
	binary.LittleEndian.PutUint32(buf[8:12], uint32(l.records))
	binary.LittleEndian.PutUint64(buf[16:24], uint64(l.stride))
	binary.LittleEndian.PutUint64(buf[24:32], g)
	binary.LittleEndian.PutUint64(buf[32:40], uint64(unixNano))
	seal(buf)
}

func seal(buf []byte) {
	binary.LittleEndian.PutUint32(buf[page-4:], crc32.Checksum(buf[:page-4], castagnoli))
}

func sealed(buf []byte) bool {
	return binary.LittleEndian.Uint32(buf[page-4:]) == crc32.Checksum(buf[:page-4], castagnoli)
}

// commit is a decoded commit record.
type commit struct {
	l   layout
	gen uint64
}

func decodeCommit(buf []byte, size int64) (commit, error) {
	if [8]byte(buf[0:8]) != commitMagic {
		return commit{}, errors.New("no commit record in the last page")
	}
	if !sealed(buf) {
		return commit{}, errors.New("commit record has a bad checksum")
	}
	l := layout{
		size:    size,
		records: int(binary.LittleEndian.Uint32(buf[8:12])),
		stride:  int64(binary.LittleEndian.Uint64(buf[16:24])),
	}
	if l.records <= 0 || l.stride < page || l.recordOffset(l.records-1)+page > l.commitOffset() {
		return commit{}, fmt.Errorf("commit record has an impossible layout (%d records, stride %d, size %d)", l.records, l.stride, size)
	}
	return commit{l: l, gen: binary.LittleEndian.Uint64(buf[24:32])}, nil
}

// readCommit reads the commit record of an image of the given size.
func readCommit(r io.ReaderAt, size int64) (commit, error) {
	size -= size % page
	if size < 2*page {
		return commit{}, fmt.Errorf("image of %d bytes holds no commit record", size)
	}
	buf := make([]byte, page)
	if _, err := r.ReadAt(buf, size-page); err != nil {
		return commit{}, fmt.Errorf("read commit record: %w", err)
	}
	return decodeCommit(buf, size)
}

// TornError describes why an image is not a consistent state of the guest.
type TornError struct {
	Record     int    // record index, -1 for the commit record
	Generation uint64 // the record's generation (0 when unreadable)
	Commit     uint64 // the committed generation (0 when unreadable)
	Reason     string
}

func (e *TornError) Error() string {
	if e.Record < 0 {
		return "torn: " + e.Reason
	}
	if e.Generation == 0 {
		return fmt.Sprintf("torn: record %d: %s", e.Record, e.Reason)
	}
	return fmt.Sprintf("torn: record %d generation %d, commit %d (%s)", e.Record, e.Generation, e.Commit, e.Reason)
}

// Result is what Check found in a consistent image.
type Result struct {
	Level   Level
	Commit  uint64 // last complete generation
	Records int
	// Ahead counts the records already at generation Commit+1 (a guest
	// caught mid-generation: crash-consistent).
	Ahead int
}

func (r Result) String() string {
	if r.Level == CrashConsistent {
		return fmt.Sprintf("%s (commit %d, %d of %d records at %d)", r.Level, r.Commit, r.Ahead, r.Records, r.Commit+1)
	}
	return fmt.Sprintf("%s (commit %d, %d records)", r.Level, r.Commit, r.Records)
}

// Check reads a disk image (or a copy of one) written by a Writer and
// returns its consistency level, or a *TornError describing the tear.
// Other errors are I/O errors.
func Check(path string) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Result{}, fmt.Errorf("stat image: %w", err)
	}
	c, err := readCommit(f, st.Size())
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return Result{}, err
		}
		return Result{}, &TornError{Record: -1, Reason: err.Error()}
	}
	return checkRecords(f, c)
}

func checkRecords(r io.ReaderAt, c commit) (Result, error) {
	res := Result{Level: ApplicationConsistent, Commit: c.gen, Records: c.l.records}
	buf := make([]byte, page)
	inPrefix := true
	for i := 0; i < c.l.records; i++ {
		if _, err := r.ReadAt(buf, c.l.recordOffset(i)); err != nil {
			return Result{}, fmt.Errorf("read record %d: %w", i, err)
		}
		g, err := decodeRecord(buf, i, c)
		if err != nil {
			return Result{}, err
		}
		switch {
		case g == c.gen+1 && inPrefix:
			res.Ahead++
		case g == c.gen:
			inPrefix = false
		case g == c.gen+1:
			return Result{}, &TornError{Record: i, Generation: g, Commit: c.gen, Reason: "newer than an earlier record"}
		case g < c.gen:
			return Result{}, &TornError{Record: i, Generation: g, Commit: c.gen, Reason: "older than the commit"}
		default:
			return Result{}, &TornError{Record: i, Generation: g, Commit: c.gen, Reason: "beyond the next generation"}
		}
	}
	if res.Ahead > 0 {
		res.Level = CrashConsistent
	}
	return res, nil
}

// decodeRecord returns the generation of record i, or a *TornError.
func decodeRecord(buf []byte, i int, c commit) (uint64, error) {
	if [8]byte(buf[0:8]) != recordMagic {
		return 0, &TornError{Record: i, Commit: c.gen, Reason: "no record (never written)"}
	}
	if !sealed(buf) {
		return 0, &TornError{Record: i, Commit: c.gen, Reason: "bad checksum"}
	}
	if idx := int(binary.LittleEndian.Uint32(buf[8:12])); idx != i {
		return 0, &TornError{Record: i, Commit: c.gen, Reason: fmt.Sprintf("holds record %d", idx)}
	}
	return binary.LittleEndian.Uint64(buf[16:24]), nil
}
