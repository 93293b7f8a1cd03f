// Receiver: applies a sender's blocks to a reflink clone of the DR file,
// verifies what it wrote, then switches the clone in atomically.
package blockmover

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// ReceiveOptions name the file a receiver writes: Path (relative, checked)
// beneath Root.
type ReceiveOptions struct {
	Root string
	Path string
}

// ReceiverStats is the receiver's part of a Result.
type ReceiverStats struct {
	Clone         string `json:"clone"`
	DRBytesRead   int64  `json:"dr_bytes_read"`
	BlocksWritten int    `json:"blocks_written"`
	BytesWritten  int64  `json:"bytes_written"`
	HolesPunched  int    `json:"holes_punched"`
	TableStored   bool   `json:"table_stored"`
	Note          string `json:"note,omitempty"`
}

type recvState struct {
	dir     *os.File
	name    string
	old     *os.File
	oldSize int64
	table   *Table // valid table of old
	hello   Hello
	base    []Digest
	tmp     *os.File
	written []bool
	punched []Range
	dec     *zstd.Decoder
	buf     []byte
	zero    []byte
	stats   ReceiverStats
	done    bool
}

// Receive runs the receiver side of one transfer over r (from the sender)
// and w (to it). On any error the target is left as it was.
func Receive(opts ReceiveOptions, r io.Reader, w io.Writer) (*Result, error) {
	start := time.Now()
	c := newConn(r, w)
	s, err := openReceiver(opts)
	if err != nil {
		c.sendError(err)
		return nil, err
	}
	defer s.close()
	res, err := s.run(c)
	return c.finish(res, err, start)
}

func openReceiver(opts ReceiveOptions) (*recvState, error) {
	dir, err := OpenDirBeneath(opts.Root, opts.Path)
	if err != nil {
		return nil, err
	}
	s := &recvState{dir: dir, name: filepath.Base(opts.Path)}
	if s.old, err = openIn(dir, s.name, unix.O_RDONLY, 0); err != nil {
		dir.Close()
		return nil, err
	}
	return s, nil
}

func (s *recvState) close() {
	if s.tmp != nil {
		_ = s.tmp.Close()
		if !s.done {
			_ = unix.Unlinkat(int(s.dir.Fd()), tempPrefix+s.name, 0)
		}
	}
	if s.old != nil {
		_ = s.old.Close()
	}
	if s.dec != nil {
		s.dec.Close()
	}
	_ = s.dir.Close()
}

func (s *recvState) run(c *conn) (*Result, error) {
	if err := c.expectJSON(frameHello, &s.hello); err != nil {
		return nil, err
	}
	if err := checkVersion(s.hello.Version); err != nil {
		return nil, err
	}
	if bs := s.hello.BlockSize; bs < 4096 || bs > maxBlockSize || s.hello.Size < 0 || BlockCount(s.hello.Size, bs) > maxBlocks {
		return nil, fmt.Errorf("protocol: block size %d or size %d out of range", bs, s.hello.Size)
	}
	if err := c.sendJSON(frameAck, s.ack()); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	if err := s.prepare(); err != nil {
		return nil, err
	}
	done, err := s.apply(c)
	if err != nil {
		return nil, err
	}
	if err := s.commit(done); err != nil {
		return nil, err
	}
	if err := c.sendJSON(frameResult, s.stats); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	return &Result{SenderStats: done.Sender, Receiver: s.stats}, nil
}

// ack describes the DR file; its table id only when the table still
// describes the file (same inode, size, mtime, ctime) with this block size.
func (s *recvState) ack() Ack {
	a := Ack{Version: ProtocolVersion}
	if s.old == nil {
		return a
	}
	st, err := StateOf(s.old)
	if err != nil {
		a.Note = err.Error()
		return a
	}
	a.Exists, a.Size, s.oldSize = true, st.Size, st.Size
	t, err := loadTable(s.dir, s.name)
	switch {
	case err != nil:
		a.Note = err.Error()
	case !t.Describes(st, s.hello.BlockSize):
		a.Note = "DR table is stale"
	default:
		s.table, s.base, a.TableID = t, t.Digests, t.ID()
	}
	s.stats.Note = a.Note
	return a
}

// prepare makes the working copy: a clone of the old file (or a new file)
// under the reserved temporary name, sized like the source.
func (s *recvState) prepare() error {
	tmp := tempPrefix + s.name
	if err := unix.Unlinkat(int(s.dir.Fd()), tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	f, err := openIn(s.dir, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	s.tmp = f
	s.stats.Clone = CloneNew
	if s.old != nil {
		if s.stats.Clone, err = cloneInto(f, s.old); err != nil {
			return err
		}
	}
	if err := f.Truncate(s.hello.Size); err != nil {
		return fmt.Errorf("size %s: %w", f.Name(), err)
	}
	s.written = make([]bool, BlockCount(s.hello.Size, s.hello.BlockSize))
	s.buf, s.zero = make([]byte, s.hello.BlockSize), make([]byte, s.hello.BlockSize)
	s.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(2*s.hello.BlockSize)))
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	return nil
}
