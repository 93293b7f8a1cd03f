// Sender: reads the source file (only the blocks that may have changed),
// compares their digests with the DR side's and streams the changed ones.
package blockmover

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Methods of change detection, as reported in the result.
const (
	MethodFiemap      = "fiemap"       // extents of the previous capture; only changed extents read
	MethodDigestTable = "digest-table" // the stored table; source read, DR side not
	MethodFull        = "full"         // no usable table: the DR side digested its copy (or had none)
)

// SendOptions configure one transfer.
type SendOptions struct {
	Source     string // file to send
	Previous   string // previous reflink capture of the same file (optional)
	BlockSize  int64  // default DefaultBlockSize
	NoCompress bool   // never zstd-compress blocks
	NoFiemap   bool   // do not compare extents with Previous (its table is still used)
}

// SenderStats is the sender's part of a Result.
type SenderStats struct {
	Method        string `json:"method"`
	FileSize      int64  `json:"file_size"`
	BytesRead     int64  `json:"bytes_read"`
	Blocks        int    `json:"blocks"`
	BlocksChanged int    `json:"blocks_changed"`
	BlocksSent    int    `json:"blocks_sent"`
	BlocksNotRead int    `json:"blocks_not_read"`
	DataBytesSent int64  `json:"data_bytes_sent"`
	Holes         int    `json:"holes"`
	HoleBytes     int64  `json:"hole_bytes"`
	Note          string `json:"note,omitempty"`
}

// Result describes a finished transfer; both ends produce one.
type Result struct {
	SenderStats
	BytesSent       int64         `json:"bytes_sent"`
	BytesReceived   int64         `json:"bytes_received"`
	Receiver        ReceiverStats `json:"receiver"`
	DurationSeconds float64       `json:"duration_seconds"`
}

type sendState struct {
	opts   SendOptions
	src    *os.File
	state  FileState
	meta   Meta
	data   []Range
	tables []*Table // candidates for the DR side's content: previous's, source's
	prev   *Table   // table describing Previous (enables FIEMAP)
	shared []Range  // ranges of src equal to Previous by extents
	// prevIsBase: the DR side holds Previous, so a changed block's parts
	// that share Previous's extents need not be sent.
	prevIsBase bool
	stats      SenderStats
	enc        *zstd.Encoder
	buf        []byte
	zero       []byte
}

// Send runs the sender side of one transfer over r (from the receiver) and
// w (to it).
func Send(opts SendOptions, r io.Reader, w io.Writer) (*Result, error) {
	start := time.Now()
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.BlockSize < 4096 || opts.BlockSize > maxBlockSize {
		return nil, fmt.Errorf("block size %d out of range [4096, %d]", opts.BlockSize, maxBlockSize)
	}
	s, err := openSender(opts)
	if err != nil {
		return nil, err
	}
	defer s.close()
	c := newConn(r, w)
	res, err := s.run(c)
	return c.finish(res, err, start)
}

func openSender(opts SendOptions) (*sendState, error) {
	src, err := os.Open(opts.Source)
	if err != nil {
		return nil, fmt.Errorf("open source: %w", err)
	}
	s := &sendState{opts: opts, src: src, buf: make([]byte, opts.BlockSize), zero: make([]byte, opts.BlockSize)}
	if err := s.inspect(); err != nil {
		s.close()
		return nil, err
	}
	if !opts.NoCompress {
		s.enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	}
	return s, nil
}

func (s *sendState) close() {
	if s.enc != nil {
		_ = s.enc.Close()
	}
	_ = s.src.Close()
}

// inspect reads the source's state, metadata and holes, and the tables.
func (s *sendState) inspect() error {
	fi, err := s.src.Stat()
	if err != nil {
		return fmt.Errorf("stat source: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("source %s is not a regular file", s.opts.Source)
	}
	s.state = stateOfInfo(fi)
	if s.meta, err = ReadMeta(s.src); err != nil {
		return err
	}
	if s.data, err = DataRanges(s.src, s.state.Size); err != nil {
		return err
	}
	if BlockCount(s.state.Size, s.opts.BlockSize) > maxBlocks {
		return fmt.Errorf("source %s: %d bytes is more than %d blocks of %d", s.opts.Source, s.state.Size, maxBlocks, s.opts.BlockSize)
	}
	s.stats.FileSize = s.state.Size
	for _, h := range Holes(s.data, s.state.Size) {
		s.stats.Holes++
		s.stats.HoleBytes += h.Len
	}
	s.loadTables()
	return nil
}

// loadTables finds the stored tables; every problem only costs speed.
func (s *sendState) loadTables() {
	var notes []error
	if s.opts.Previous != "" {
		t, err := s.previousTable()
		if err != nil {
			notes = append(notes, err)
		}
		if t != nil {
			s.tables = append(s.tables, t)
		}
	}
	if t, err := tableBeside(s.opts.Source); err == nil {
		s.tables = append(s.tables, t)
	} else if s.opts.Previous == "" {
		notes = append(notes, err)
	}
	if len(notes) > 0 {
		s.stats.Note = errors.Join(notes...).Error()
	}
}

// previousTable loads Previous's table and, when it still describes
// Previous, the extents Previous shares with the source.
func (s *sendState) previousTable() (*Table, error) {
	t, err := tableBeside(s.opts.Previous)
	if err != nil {
		return nil, err
	}
	pf, err := os.Open(s.opts.Previous)
	if err != nil {
		return t, fmt.Errorf("previous capture: %w", err)
	}
	defer pf.Close()
	st, err := StateOf(pf)
	if err != nil || !t.Describes(st, s.opts.BlockSize) {
		return t, fmt.Errorf("%w: table of %s does not describe it (stale)", ErrBadTable, s.opts.Previous)
	}
	if s.opts.NoFiemap {
		return t, nil
	}
	if s.shared, err = SameBlocks(pf, s.src); err != nil {
		return t, err
	}
	s.prev = t
	return t, nil
}

func tableBeside(file string) (*Table, error) {
	dir, err := os.Open(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTable, err)
	}
	defer dir.Close()
	return loadTable(dir, filepath.Base(file))
}
