// Receiver commit: verify the working copy against the sender's content id,
// apply metadata, fsync, rename over the target, fsync the directory, then
// store the DR table.
package blockmover

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func (s *recvState) commit(d *Done) error {
	if d.Meta.Size != s.hello.Size {
		return fmt.Errorf("protocol: size %d in done, %d in hello", d.Meta.Size, s.hello.Size)
	}
	if err := s.tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.tmp.Name(), err)
	}
	digests, err := s.verifyDigests()
	if err != nil {
		return err
	}
	if id := ContentID(s.hello.BlockSize, s.hello.Size, digests); id != d.ContentID {
		return fmt.Errorf("verification failed: the DR copy's content id %s is not the source's %s; the previous version is kept", id, d.ContentID)
	}
	if err := ApplyMeta(s.tmp, d.Meta); err != nil {
		return err
	}
	if err := s.tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.tmp.Name(), err)
	}
	if err := unix.Renameat(int(s.dir.Fd()), tempPrefix+s.name, int(s.dir.Fd()), s.name); err != nil {
		return fmt.Errorf("rename into %s/%s: %w", s.dir.Name(), s.name, err)
	}
	s.done = true
	if err := s.dir.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.dir.Name(), err)
	}
	s.storeTable(digests)
	return nil
}

// verifyDigests digests the working copy: written blocks and blocks partly
// punched are read back; blocks wholly punched are zeros; the others are
// the clone's untouched blocks, whose digest the base gives.
func (s *recvState) verifyDigests() ([]Digest, error) {
	bs, size := s.hello.BlockSize, s.hello.Size
	out := make([]Digest, BlockCount(size, bs))
	punched := &cursor{rs: s.punched}
	var err error
	for i := range out {
		off := int64(i) * bs
		l := min(bs, size-off)
		switch {
		case !s.written[i] && punched.covers(off, l):
			out[i] = zeroDigest(l, s.zero)
		case !s.written[i] && !punched.touches(off, l) && i < len(s.base) && min(bs, s.oldSize-off) == l:
			out[i] = s.base[i]
		default:
			if out[i], err = s.readDigest(s.tmp, off, l); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// storeTable keeps the DR table of the new file (its state after the
// rename); failure costs the next sync a full pass, nothing else.
func (s *recvState) storeTable(digests []Digest) {
	st, err := StateOf(s.tmp)
	if err == nil {
		err = storeTable(s.dir, s.name, &Table{BlockSize: s.hello.BlockSize, State: st, Digests: digests})
	}
	if err != nil {
		s.stats.Note = joinNote(s.stats.Note, "DR table not stored: "+err.Error())
		return
	}
	s.stats.TableStored = true
}
