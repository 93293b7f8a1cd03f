// Digest table: one xxh3-128 digest per block of a file, stored beside it
// (<dir>/.ocpdr-blockmap/<name>) with a header naming the file state it
// describes and a trailing digest that detects damage.
package blockmover

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/zeebo/xxh3"
)

// TableDir is the reserved directory holding the tables of a directory's files.
const TableDir = ".ocpdr-blockmap"

// DefaultBlockSize is the block size of change detection and transfer.
const DefaultBlockSize = 64 << 10

const (
	tableMagic   = "OCPDRBM\n"
	tableVersion = 1
	maxHeader    = 4096
)

// Digest is the xxh3-128 digest of one block (holes read as zeros).
type Digest [16]byte

// FileState is what a table records of the file it was computed from; a table
// describes a file only while all of it still matches.
type FileState struct {
	Size    int64  `json:"size"`
	Ino     uint64 `json:"ino"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
}

// Table is the digest table of one file.
type Table struct {
	BlockSize int64
	State     FileState
	Digests   []Digest
}

type tableHeader struct {
	Version   int       `json:"version"`
	BlockSize int64     `json:"block_size"`
	Blocks    int       `json:"blocks"`
	State     FileState `json:"state"`
	ID        string    `json:"id"`
}

// TablePath is where the table of file lives.
func TablePath(file string) string {
	return filepath.Join(filepath.Dir(file), TableDir, filepath.Base(file))
}

// BlockCount is the number of blocks of a file of size bytes.
func BlockCount(size, bs int64) int {
	return int((size + bs - 1) / bs)
}

// ContentID digests a table's content (block size, file size, digests): two
// tables with the same ID describe the same bytes, wherever they are stored.
func ContentID(bs, size int64, ds []Digest) string {
	h := xxh3.New128()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(bs))
	binary.LittleEndian.PutUint64(b[8:], uint64(size))
	_, _ = h.Write(b[:])
	for i := range ds {
		_, _ = h.Write(ds[i][:])
	}
	s := h.Sum128().Bytes()
	return hex.EncodeToString(s[:])
}

// ID is the table's ContentID.
func (t *Table) ID() string { return ContentID(t.BlockSize, t.State.Size, t.Digests) }

// Marshal encodes the table: magic, header length, JSON header, digests,
// then the xxh3-128 of everything before it.
func (t *Table) Marshal() ([]byte, error) {
	hdr, err := json.Marshal(tableHeader{Version: tableVersion, BlockSize: t.BlockSize, Blocks: len(t.Digests), State: t.State, ID: t.ID()})
	if err != nil {
		return nil, fmt.Errorf("table header: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString(tableMagic)
	_ = binary.Write(&buf, binary.LittleEndian, uint32(len(hdr)))
	buf.Write(hdr)
	for i := range t.Digests {
		buf.Write(t.Digests[i][:])
	}
	sum := xxh3.Hash128(buf.Bytes()).Bytes()
	buf.Write(sum[:])
	return buf.Bytes(), nil
}

// ErrBadTable is wrapped by every reason a stored table is not used.
var ErrBadTable = errors.New("digest table unusable")

// UnmarshalTable decodes and checks a stored table.
func UnmarshalTable(b []byte) (*Table, error) {
	if len(b) < len(tableMagic)+4+16 || string(b[:len(tableMagic)]) != tableMagic {
		return nil, fmt.Errorf("%w: no table header", ErrBadTable)
	}
	body, sum := b[:len(b)-16], b[len(b)-16:]
	if want := xxh3.Hash128(body).Bytes(); !bytes.Equal(want[:], sum) {
		return nil, fmt.Errorf("%w: checksum mismatch (damaged or truncated)", ErrBadTable)
	}
	n := int(binary.LittleEndian.Uint32(body[len(tableMagic):]))
	rest := body[len(tableMagic)+4:]
	if n > maxHeader || n > len(rest) {
		return nil, fmt.Errorf("%w: header length %d", ErrBadTable, n)
	}
	var h tableHeader
	if err := json.Unmarshal(rest[:n], &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadTable, err)
	}
	t, err := tableFromHeader(h, rest[n:])
	if err != nil {
		return nil, err
	}
	if t.ID() != h.ID {
		return nil, fmt.Errorf("%w: content id mismatch", ErrBadTable)
	}
	return t, nil
}

func tableFromHeader(h tableHeader, raw []byte) (*Table, error) {
	if h.Version != tableVersion {
		return nil, fmt.Errorf("%w: version %d (want %d)", ErrBadTable, h.Version, tableVersion)
	}
	if h.BlockSize <= 0 || h.State.Size < 0 || h.Blocks != BlockCount(h.State.Size, h.BlockSize) || len(raw) != 16*h.Blocks {
		return nil, fmt.Errorf("%w: inconsistent sizes", ErrBadTable)
	}
	t := &Table{BlockSize: h.BlockSize, State: h.State, Digests: make([]Digest, h.Blocks)}
	for i := range t.Digests {
		copy(t.Digests[i][:], raw[16*i:])
	}
	return t, nil
}

// ReadTable loads the table stored at path.
func ReadTable(path string) (*Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTable, err)
	}
	return UnmarshalTable(b)
}

// Describes reports whether t was computed from the file in state st with
// block size bs.
func (t *Table) Describes(st FileState, bs int64) bool {
	return t != nil && t.BlockSize == bs && t.State == st
}

// StateOf is the FileState of an open file.
func StateOf(f *os.File) (FileState, error) {
	fi, err := f.Stat()
	if err != nil {
		return FileState{}, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return stateOfInfo(fi), nil
}

// digestBlock is the digest of one block's bytes.
func digestBlock(b []byte) Digest { return xxh3.Hash128(b).Bytes() }

// zeroDigest is the digest of n zero bytes (a block inside a hole).
func zeroDigest(n int64, zero []byte) Digest { return digestBlock(zero[:n]) }
