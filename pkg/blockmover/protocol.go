// Protocol: framed messages between sender and receiver over one byte
// stream. A frame is a type byte, a uvarint length and the payload; control
// messages are JSON, blocks and digests binary.
//
//	sender                         receiver
//	hello{version, block size} ->
//	                            <- ack{version, DR file state, table id}
//	[want-digests            ->
//	                            <- digest count, digests]   (full pass)
//	block{index, enc, data}* ->
//	holes{ranges}*           ->
//	done{meta, content id}   ->
//	                            <- result{ok | error}
//
// Either side may send an error frame instead of its next message.
package blockmover

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ProtocolVersion is the version this package speaks; both ends must agree.
const ProtocolVersion = 1

// Frame types.
const (
	frameHello   = 'H'
	frameAck     = 'A'
	frameWant    = 'Q'
	frameCount   = 'N'
	frameDigests = 'D'
	frameBlock   = 'B'
	frameHoles   = 'P'
	frameDone    = 'M'
	frameResult  = 'R'
	frameError   = 'X'
)

// Block encodings.
const (
	encRaw  = 0
	encZstd = 1
)

const (
	maxJSONFrame   = 16 << 20
	digestsPerMsg  = 4096
	holesPerMsg    = 4096
	maxBlockSize   = 16 << 20
	maxBlocks      = 1 << 26 // 4 TiB in 64 KiB blocks; bounds the tables in memory
	blockFrameSlop = 64
)

// Hello opens a transfer.
type Hello struct {
	Version   int   `json:"version"`
	BlockSize int64 `json:"block_size"`
	Size      int64 `json:"size"`
	Compress  bool  `json:"compress"`
}

// Ack answers Hello with what the DR side holds.
type Ack struct {
	Version int    `json:"version"`
	Exists  bool   `json:"exists"`
	Size    int64  `json:"size"`
	TableID string `json:"table_id,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Done ends the data: metadata, the content id of the whole new file (the
// end-to-end check) and the sender's side of the result.
type Done struct {
	Meta      Meta        `json:"meta"`
	ContentID string      `json:"content_id"`
	Sender    SenderStats `json:"sender"`
}

// ProtocolError is an error frame from the other side.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "peer: " + e.Msg }

type conn struct {
	r    *bufio.Reader
	w    *bufio.Writer
	sent int64
	recv int64
}

func newConn(r io.Reader, w io.Writer) *conn {
	return &conn{r: bufio.NewReaderSize(r, 1<<20), w: bufio.NewWriterSize(w, 1<<20)}
}

func (c *conn) send(typ byte, payload []byte) error {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = typ
	n := 1 + binary.PutUvarint(hdr[1:], uint64(len(payload)))
	if _, err := c.w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if _, err := c.w.Write(payload); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	c.sent += int64(n + len(payload))
	return nil
}

func (c *conn) sendJSON(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %c: %w", typ, err)
	}
	return c.send(typ, b)
}

func (c *conn) flush() error {
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// sendError tells the peer why this side stops (best effort).
func (c *conn) sendError(err error) {
	_ = c.sendJSON(frameError, map[string]string{"error": err.Error()})
	_ = c.flush()
}

// finish ends one side's run: a local failure is told to the peer (a
// failure the peer reported is not echoed back), a success gets the
// connection's byte counts and the duration since start.
func (c *conn) finish(res *Result, err error, start time.Time) (*Result, error) {
	if err != nil {
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			c.sendError(err)
		}
		return nil, err
	}
	res.BytesSent, res.BytesReceived = c.sent, c.recv
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// recv reads one frame of at most limit payload bytes; an error frame from
// the peer comes back as *ProtocolError.
func (c *conn) recvFrame(limit int) (byte, []byte, error) {
	typ, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, fmt.Errorf("receive: %w", eofUnexpected(err))
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return 0, nil, fmt.Errorf("receive: %w", eofUnexpected(err))
	}
	if typ == frameError {
		limit = maxJSONFrame
	}
	if n > uint64(limit) {
		return 0, nil, fmt.Errorf("receive: frame %q of %d bytes exceeds %d", typ, n, limit)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return 0, nil, fmt.Errorf("receive: %w", eofUnexpected(err))
	}
	c.recv += int64(1 + n)
	if typ == frameError {
		var e struct{ Error string }
		_ = json.Unmarshal(buf, &e)
		return 0, nil, &ProtocolError{Msg: e.Error}
	}
	return typ, buf, nil
}

func eofUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// expectJSON reads one frame that must be of type typ and decodes it into v.
func (c *conn) expectJSON(typ byte, v any) error {
	t, b, err := c.recvFrame(maxJSONFrame)
	if err != nil {
		return err
	}
	if t != typ {
		return fmt.Errorf("protocol: got frame %q, want %q", t, typ)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("protocol: frame %q: %w", typ, err)
	}
	return nil
}

func checkVersion(v int) error {
	if v != ProtocolVersion {
		return fmt.Errorf("protocol version mismatch: peer speaks %d, this side %d (install the same ocpdr-host on both hosts)", v, ProtocolVersion)
	}
	return nil
}

func encodeDigests(ds []Digest) []byte {
	b := make([]byte, 0, 16*len(ds))
	for i := range ds {
		b = append(b, ds[i][:]...)
	}
	return b
}

func encodeRanges(rs []Range) []byte {
	b := make([]byte, 0, 8*len(rs))
	for _, r := range rs {
		b = binary.AppendUvarint(b, uint64(r.Off))
		b = binary.AppendUvarint(b, uint64(r.Len))
	}
	return b
}

func decodeRanges(b []byte, size int64) ([]Range, error) {
	var out []Range
	for len(b) > 0 {
		off, n1 := binary.Uvarint(b)
		if n1 <= 0 {
			return nil, errors.New("protocol: bad hole range")
		}
		l, n2 := binary.Uvarint(b[n1:])
		if n2 <= 0 || off > uint64(size) || l > uint64(size)-off {
			return nil, errors.New("protocol: bad hole range")
		}
		out = append(out, Range{int64(off), int64(l)})
		b = b[n1+n2:]
	}
	return out, nil
}
