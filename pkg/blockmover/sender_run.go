// Sender run: the protocol steps of one transfer, in order.
package blockmover

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

func (s *sendState) run(c *conn) (*Result, error) {
	bs := s.opts.BlockSize
	if err := c.sendJSON(frameHello, Hello{Version: ProtocolVersion, BlockSize: bs, Size: s.state.Size, Compress: s.enc != nil}); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	var ack Ack
	if err := c.expectJSON(frameAck, &ack); err != nil {
		return nil, err
	}
	if err := checkVersion(ack.Version); err != nil {
		return nil, err
	}
	base, err := s.base(c, ack)
	if err != nil {
		return nil, err
	}
	digests, err := s.stream(c, base)
	if err != nil {
		return nil, err
	}
	if err := s.finish(c, digests); err != nil {
		return nil, err
	}
	var rs ReceiverStats
	if err := c.expectJSON(frameResult, &rs); err != nil {
		return nil, err
	}
	s.storeTable(digests)
	return &Result{SenderStats: s.stats, Receiver: rs}, nil
}

// base returns the digests of what the DR side holds: a stored table whose
// content id the receiver confirms, else the receiver's own digest pass.
func (s *sendState) base(c *conn, ack Ack) ([]Digest, error) {
	if !ack.Exists {
		s.stats.Method = MethodFull
		return nil, nil
	}
	for _, t := range s.tables {
		if ack.TableID != "" && t.BlockSize == s.opts.BlockSize && t.ID() == ack.TableID {
			s.stats.Method = MethodDigestTable
			if s.prev != nil {
				s.stats.Method = MethodFiemap
				s.prevIsBase = t == s.prev
			}
			return t.Digests, nil
		}
	}
	s.stats.Method = MethodFull
	if err := c.send(frameWant, nil); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	return recvDigests(c, BlockCount(ack.Size, s.opts.BlockSize))
}

func recvDigests(c *conn, want int) ([]Digest, error) {
	var n struct{ Count int }
	if err := c.expectJSON(frameCount, &n); err != nil {
		return nil, err
	}
	if n.Count != want {
		return nil, fmt.Errorf("protocol: %d digests announced, want %d", n.Count, want)
	}
	out := make([]Digest, 0, want)
	for len(out) < want {
		t, b, err := c.recvFrame(16 * digestsPerMsg)
		if err != nil {
			return nil, err
		}
		if t != frameDigests || len(b)%16 != 0 || len(out)+len(b)/16 > want {
			return nil, fmt.Errorf("protocol: bad digest frame %q", t)
		}
		for i := 0; i < len(b); i += 16 {
			out = append(out, Digest(b[i:i+16]))
		}
	}
	return out, nil
}

// stream digests every block (reusing Previous's digest where the extents
// are shared, zeros for holes) and sends those that differ from base.
func (s *sendState) stream(c *conn, base []Digest) ([]Digest, error) {
	bs, size := s.opts.BlockSize, s.state.Size
	n := BlockCount(size, bs)
	s.stats.Blocks = n
	out := make([]Digest, n)
	data, shared := &cursor{rs: s.data}, &cursor{rs: s.shared}
	for i := range n {
		off := int64(i) * bs
		l := min(bs, size-off)
		hole := !data.touches(off, l)
		read := false
		switch {
		case hole:
			out[i] = zeroDigest(l, s.zero)
		case s.prev != nil && shared.covers(off, l) && s.prev.State.Size >= off+l:
			out[i] = s.prev.Digests[i]
			s.stats.BlocksNotRead++
		default:
			if err := s.readBlock(off, l); err != nil {
				return nil, err
			}
			out[i], read = digestBlock(s.buf[:l]), true
		}
		if i < len(base) && base[i] == out[i] {
			continue
		}
		s.stats.BlocksChanged++
		if hole {
			continue // punched at DR
		}
		if !read {
			if err := s.readBlock(off, l); err != nil {
				return nil, err
			}
		}
		if err := s.sendChanged(c, i, l, shared, data); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sendChanged sends block i (in s.buf). When the DR side holds exactly
// Previous, only the parts whose extents changed and that hold data are
// sent: the rest of the block is already there or is punched.
func (s *sendState) sendChanged(c *conn, i int, l int64, shared, data *cursor) error {
	off := int64(i) * s.opts.BlockSize
	s.stats.BlocksSent++
	if !s.prevIsBase || s.prev.State.Size < off+l {
		return s.sendBlock(c, i, 0, s.buf[:l])
	}
	for _, g := range shared.gaps(off, l) {
		for _, p := range data.within(g) {
			if err := s.sendBlock(c, i, p.Off-off, s.buf[p.Off-off:p.End()-off]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sendState) readBlock(off, l int64) error {
	if _, err := s.src.ReadAt(s.buf[:l], off); err != nil {
		return fmt.Errorf("read %s at %d: %w", s.opts.Source, off, err)
	}
	s.stats.BytesRead += l
	return nil
}

// sendBlock sends b, the bytes at offset at of block i, zstd-compressed
// when that makes them smaller.
func (s *sendState) sendBlock(c *conn, i int, at int64, b []byte) error {
	p := binary.AppendUvarint(make([]byte, 0, len(b)+32), uint64(i))
	p = binary.AppendUvarint(p, uint64(at))
	s.stats.DataBytesSent += int64(len(b))
	if s.enc != nil {
		z := s.enc.EncodeAll(b, []byte{encZstd})
		if len(z) < len(b) {
			return c.send(frameBlock, append(p, z...))
		}
	}
	return c.send(frameBlock, append(append(p, encRaw), b...))
}

// finish sends the holes, checks the source did not change while it was
// read, and sends metadata and the content id.
func (s *sendState) finish(c *conn, digests []Digest) error {
	holes := Holes(s.data, s.state.Size)
	for i := 0; i < len(holes); i += holesPerMsg {
		if err := c.send(frameHoles, encodeRanges(holes[i:min(i+holesPerMsg, len(holes))])); err != nil {
			return err
		}
	}
	now, err := StateOf(s.src)
	if err != nil {
		return err
	}
	if now != s.state {
		return fmt.Errorf("source %s changed while it was sent (send a capture, not a live file)", s.opts.Source)
	}
	done := Done{Meta: s.meta, ContentID: ContentID(s.opts.BlockSize, s.state.Size, digests), Sender: s.stats}
	if err := c.sendJSON(frameDone, done); err != nil {
		return err
	}
	return c.flush()
}

// storeTable keeps the table of what the DR side now holds beside the source
// (failure costs the next sync a full pass, nothing else).
func (s *sendState) storeTable(digests []Digest) {
	dir, err := os.Open(filepath.Dir(s.opts.Source))
	if err == nil {
		err = storeTable(dir, filepath.Base(s.opts.Source), &Table{BlockSize: s.opts.BlockSize, State: s.state, Digests: digests})
		dir.Close()
	}
	if err != nil {
		s.stats.Note = joinNote(s.stats.Note, "source table not stored: "+err.Error())
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
