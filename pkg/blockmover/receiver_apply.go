// Receiver apply: the frames of a transfer written into the working copy,
// the verification and the atomic switch.
package blockmover

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
)

// apply handles frames until the sender's Done.
func (s *recvState) apply(c *conn) (*Done, error) {
	for {
		t, b, err := c.recvFrame(max(int(s.hello.BlockSize)+blockFrameSlop, maxJSONFrame))
		if err != nil {
			return nil, err
		}
		switch t {
		case frameWant:
			err = s.sendDigests(c)
		case frameBlock:
			err = s.writeBlock(b)
		case frameHoles:
			err = s.punch(b)
		case frameDone:
			var d Done
			if err := json.Unmarshal(b, &d); err != nil {
				return nil, fmt.Errorf("protocol: done: %w", err)
			}
			return &d, nil
		default:
			err = fmt.Errorf("protocol: unexpected frame %q", t)
		}
		if err != nil {
			return nil, err
		}
	}
}

// sendDigests is the full pass: digest the old file and send the digests.
func (s *recvState) sendDigests(c *conn) error {
	var ds []Digest
	if s.old != nil {
		var err error
		if ds, err = s.digestFile(s.old, s.oldSize); err != nil {
			return err
		}
	}
	s.base = ds
	if err := c.sendJSON(frameCount, map[string]int{"count": len(ds)}); err != nil {
		return err
	}
	for i := 0; i < len(ds); i += digestsPerMsg {
		if err := c.send(frameDigests, encodeDigests(ds[i:min(i+digestsPerMsg, len(ds))])); err != nil {
			return err
		}
	}
	return c.flush()
}

// digestFile digests f (size bytes) without reading its holes.
func (s *recvState) digestFile(f *os.File, size int64) ([]Digest, error) {
	bs := s.hello.BlockSize
	data, err := DataRanges(f, size)
	if err != nil {
		return nil, err
	}
	cur := &cursor{rs: data}
	out := make([]Digest, BlockCount(size, bs))
	for i := range out {
		off := int64(i) * bs
		l := min(bs, size-off)
		if !cur.touches(off, l) {
			out[i] = zeroDigest(l, s.zero)
			continue
		}
		if out[i], err = s.readDigest(f, off, l); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *recvState) readDigest(f *os.File, off, l int64) (Digest, error) {
	if _, err := f.ReadAt(s.buf[:l], off); err != nil {
		return Digest{}, fmt.Errorf("read %s at %d: %w", f.Name(), off, err)
	}
	s.stats.DRBytesRead += l
	return digestBlock(s.buf[:l]), nil
}

func (s *recvState) blockLen(i int) int64 {
	return min(s.hello.BlockSize, s.hello.Size-int64(i)*s.hello.BlockSize)
}

func (s *recvState) writeBlock(b []byte) error {
	idx, n := binary.Uvarint(b)
	at, m := binary.Uvarint(b[max(n, 0):])
	if n <= 0 || m <= 0 || idx >= uint64(len(s.written)) || len(b) < n+m+1 {
		return fmt.Errorf("protocol: bad block frame")
	}
	i, enc, data := int(idx), b[n+m], b[n+m+1:]
	if at >= uint64(s.blockLen(i)) {
		return fmt.Errorf("protocol: block %d: offset %d beyond the block", i, at)
	}
	if enc == encZstd {
		out, err := s.dec.DecodeAll(data, s.buf[:0])
		if err != nil {
			return fmt.Errorf("protocol: block %d: %w", i, err)
		}
		data = out
	} else if enc != encRaw {
		return fmt.Errorf("protocol: block %d: encoding %d", i, enc)
	}
	if len(data) == 0 || int64(len(data)) > s.blockLen(i)-int64(at) {
		return fmt.Errorf("protocol: block %d: %d bytes at %d do not fit", i, len(data), at)
	}
	if _, err := s.tmp.WriteAt(data, int64(i)*s.hello.BlockSize+int64(at)); err != nil {
		return fmt.Errorf("write %s: %w", s.tmp.Name(), err)
	}
	if !s.written[i] {
		s.stats.BlocksWritten++
	}
	s.written[i] = true
	s.stats.BytesWritten += int64(len(data))
	return nil
}

func (s *recvState) punch(b []byte) error {
	rs, err := decodeRanges(b, s.hello.Size)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Len == 0 {
			continue
		}
		if len(s.punched) > 0 && r.Off < s.punched[len(s.punched)-1].End() {
			return fmt.Errorf("protocol: hole ranges out of order")
		}
		if err := PunchHole(s.tmp, r); err != nil {
			return err
		}
		s.punched = append(s.punched, r)
		s.stats.HolesPunched++
	}
	return nil
}
