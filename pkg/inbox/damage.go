package inbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// ErrDamaged is wrapped by the errors Open returns for a state file it
// refuses to use.
var ErrDamaged = errors.New("inbox: damaged state file")

var bucketQuarantine = []byte("quarantine")

// Layout of a bbolt meta page (go.etcd.io/bbolt/internal/common.Meta, in
// the machine's byte order after the 16-byte page header).
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64 // up to and including the checksum
)

// boltMeta is what the checks need from a meta page.
type boltMeta struct {
	pageSize uint32
	root     uint64 // the root bucket's page
	pgid     uint64 // high-water page id: the file holds pages [0, pgid)
	txid     uint64
}

// parseBoltMeta reads the meta in page bytes b, if it is a valid one.
func parseBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	ne := binary.NativeEndian
	if ne.Uint32(m[0:]) != boltMagic || ne.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: ne.Uint32(m[8:]), root: ne.Uint64(m[16:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, true
}

// readBoltMeta returns the meta page bbolt would use: the valid one with the
// higher transaction id. The second page is looked for where the first says,
// else at every power-of-two page size as bbolt does.
func readBoltMeta(f *os.File, size int64) (boltMeta, bool) {
	read := func(off int64) (boltMeta, bool) {
		buf := make([]byte, boltPageHeader+boltMetaSize)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return boltMeta{}, false
		}
		return parseBoltMeta(buf)
	}
	m0, ok0 := read(0)
	if ok0 {
		if m1, ok1 := read(int64(m0.pageSize)); ok1 && m1.txid > m0.txid {
			return m1, true
		}
		return m0, true
	}
	for i := 0; i <= 14; i++ {
		if off := int64(1024) << i; off < size {
			if m1, ok1 := read(off); ok1 {
				return m1, true
			}
		}
	}
	return boltMeta{}, false
}

// checkDBFile looks at inbox.db before bbolt maps it: bbolt reads every page
// below the meta page's high-water mark through the mapping, and a page past
// the end of a truncated file kills the process with SIGBUS. It reports
// whether the file is missing or empty (bbolt then starts a new store).
func checkDBFile(path string) (empty bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("inbox: open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("inbox: stat %s: %w", path, err)
	}
	if st.Size() == 0 {
		return true, nil
	}
	m, ok := readBoltMeta(f, st.Size())
	if !ok {
		return false, fmt.Errorf("%w: %s (%d bytes) has no valid bbolt meta page: it is not a store or its start is damaged; %s",
			ErrDamaged, path, st.Size(), damagedHint(path))
	}
	if need := int64(m.pgid) * int64(m.pageSize); st.Size() < need {
		return false, fmt.Errorf("%w: %s is truncated: %d bytes, but its meta page (page size %d, high-water page %d) needs %d; %s",
			ErrDamaged, path, st.Size(), m.pageSize, m.pgid, need, damagedHint(path))
	}
	if err := checkPages(f, m); err != nil {
		return false, fmt.Errorf("%w: %s is damaged: %w; %s", ErrDamaged, path, err, damagedHint(path))
	}
	return false, nil
}

// Page layout (go.etcd.io/bbolt/internal/common.Page): a 16-byte header (id
// u64, flags u16, count u16, overflow u32), then count 16-byte elements:
// branch {pos, ksize u32; child pgid u64}, leaf {flags, pos, ksize, vsize
// u32}, the key at the element's address + pos, the value after the key.
const (
	boltBranchPage = 0x01
	boltLeafPage   = 0x02
	boltBucketElem = 0x01 // leaf element flag: the value is a bucket
)

// checkPages walks the b+tree pages reachable from the root bucket in the
// file (not through a mapping) and checks what bbolt trusts: page ids,
// types, element bounds, and that no page is reached twice. Opened for
// writing, bbolt rebuilds its free list by walking every page on a goroutine
// of its own, where a damaged page panics, faults or loops, killing the
// process.
func checkPages(f *os.File, m boltMeta) error {
	seen := map[uint64]bool{}
	stack := []uint64{m.root}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		kids, err := checkPage(f, m, id, seen)
		if err != nil {
			return err
		}
		stack = append(stack, kids...)
	}
	return nil
}

// checkPage checks one page and returns the pages it points to.
func checkPage(f *os.File, m boltMeta, id uint64, seen map[uint64]bool) ([]uint64, error) {
	if id < 2 || id >= m.pgid {
		return nil, fmt.Errorf("a page points to page %d, outside [2, %d)", id, m.pgid)
	}
	if seen[id] {
		return nil, fmt.Errorf("page %d is reached twice", id)
	}
	ne := binary.NativeEndian
	base := int64(id) * int64(m.pageSize)
	hdr := make([]byte, 16)
	if _, err := f.ReadAt(hdr, base); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	flags, count, overflow := ne.Uint16(hdr[8:]), int(ne.Uint16(hdr[10:])), uint64(ne.Uint32(hdr[12:]))
	switch {
	case ne.Uint64(hdr) != id:
		return nil, fmt.Errorf("page %d identifies as page %d", id, ne.Uint64(hdr))
	case flags != boltBranchPage && flags != boltLeafPage:
		return nil, fmt.Errorf("page %d has type flags %#x, not a branch or leaf page", id, flags)
	case overflow >= m.pgid-id:
		return nil, fmt.Errorf("page %d overflows past the high-water page %d", id, m.pgid)
	}
	span := int64(1+overflow) * int64(m.pageSize)
	if int64(16+16*count) > span {
		return nil, fmt.Errorf("page %d: %d elements do not fit in it", id, count)
	}
	for i := id; i <= id+overflow; i++ {
		seen[i] = true
	}
	elems := make([]byte, 16*count)
	if _, err := f.ReadAt(elems, base+16); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	return pageChildren(f, id, base, flags, elems, span)
}

// pageChildren checks that a page's elements stay inside it and returns the
// pages they point to: a branch's children, a leaf's (non-inline) buckets.
func pageChildren(f *os.File, id uint64, base int64, flags uint16, elems []byte, span int64) ([]uint64, error) {
	ne := binary.NativeEndian
	var kids []uint64
	for i := 0; i < len(elems)/16; i++ {
		e := elems[16*i : 16*i+16]
		at := int64(16+16*i) + int64(ne.Uint32(e[0:]))
		end := at + int64(ne.Uint32(e[4:]))
		if flags == boltLeafPage {
			at = int64(16+16*i) + int64(ne.Uint32(e[4:])) + int64(ne.Uint32(e[8:])) // the value
			end = at + int64(ne.Uint32(e[12:]))
		}
		if end > span {
			return nil, fmt.Errorf("page %d: element %d points past the page", id, i)
		}
		switch {
		case flags == boltBranchPage:
			kids = append(kids, ne.Uint64(e[8:]))
		case ne.Uint32(e[0:])&boltBucketElem != 0:
			root, err := bucketRoot(f, base+at, end-at)
			if err != nil {
				return nil, fmt.Errorf("page %d: element %d: %w", id, i, err)
			}
			if root != 0 { // 0: an inline bucket, inside the value
				kids = append(kids, root)
			}
		}
	}
	return kids, nil
}

// bucketRoot reads the root page of the bucket whose value starts at off.
func bucketRoot(f *os.File, off, size int64) (uint64, error) {
	if size < 16 {
		return 0, fmt.Errorf("bucket value of %d bytes", size)
	}
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, off); err != nil {
		return 0, fmt.Errorf("read bucket: %w", err)
	}
	return binary.NativeEndian.Uint64(b), nil
}

// damagedHint tells the operator the two ways out.
func damagedHint(path string) string {
	return fmt.Sprintf("restore %s from a backup (the write-ahead log's newer events are replayed into it), "+
		"or move it aside (mv %s %s.damaged) to start with an empty store: the receiver then rebuilds it from "+
		"the write-ahead log's records and reports the events that were only in the damaged file as lost",
		filepath.Base(path), path, path)
}

// guardFile runs fn, which reads the mapped store, and turns a bbolt panic
// (its consistency check at open panics on a damaged page) or a memory
// fault into an error naming the file, so the receiver refuses to start
// with a message instead of a stack trace.
func guardFile(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s cannot be read (%v); %s", ErrDamaged, path, r, damagedHint(path))
		}
	}()
	return fn()
}

// badEntry is a stored value that cannot be used.
type badEntry struct {
	key, value []byte
	reason     string
}

// quarantined is the value kept in the quarantine bucket for a bad entry.
type quarantined struct {
	Key    []byte    `json:"key"`
	Seq    uint64    `json:"seq,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"quarantined_at"`
	Raw    []byte    `json:"raw"`
}

// checkEntry decodes a stored entry and checks that its key, state byte and
// header agree and that a pending entry's payload is JSON (bbolt keeps no
// checksum of values, so this is what catches a damaged one).
func checkEntry(k, v []byte) (*Entry, error) {
	if len(k) != 8 {
		return nil, fmt.Errorf("key %x is not a sequence", k)
	}
	h, payload, err := splitEntry(v)
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(h, &e); err != nil {
		return nil, fmt.Errorf("decode entry header: %w", err)
	}
	if seq := binary.BigEndian.Uint64(k); e.Seq != seq {
		return nil, fmt.Errorf("header says seq %d", e.Seq)
	}
	if !validState(v[0]) || stateByte(e.State) != v[0] {
		return nil, fmt.Errorf("state byte %q disagrees with header state %q", v[0], e.State)
	}
	if e.State == StatePending && len(payload) > 0 && !json.Valid(payload) {
		return nil, errors.New("payload is not valid JSON")
	}
	return &e, nil
}

func validState(b byte) bool { return b == 'p' || b == 'd' || b == 'f' }

// quarantine moves bad entries out of the events bucket into the quarantine
// bucket, raw bytes and reason kept, so that start-up goes on without them.
func (in *Inbox) quarantine(tx *bolt.Tx, bad []badEntry) error {
	if len(bad) == 0 {
		return nil
	}
	qb, err := tx.CreateBucketIfNotExists(bucketQuarantine)
	if err != nil {
		return fmt.Errorf("create quarantine bucket: %w", err)
	}
	ev := tx.Bucket(bucketEvents)
	now := time.Now().UTC()
	for _, b := range bad {
		q := quarantined{Key: b.key, Reason: b.reason, At: now, Raw: b.value}
		if len(b.key) == 8 {
			q.Seq = binary.BigEndian.Uint64(b.key)
		}
		if err := moveToQuarantine(ev, qb, b.key, q); err != nil {
			return err
		}
		in.log.Error("inbox: corrupt stored entry moved to quarantine", zap.Uint64("seq", q.Seq),
			zap.String("reason", b.reason), zap.Int("bytes", len(b.value)))
	}
	in.log.Error("inbox: corrupt stored entries quarantined; the receiver starts without them",
		zap.Int("entries", len(bad)), zap.String("bucket", string(bucketQuarantine)))
	return nil
}

func moveToQuarantine(ev, qb *bolt.Bucket, key []byte, q quarantined) error {
	id, err := qb.NextSequence()
	if err != nil {
		return fmt.Errorf("quarantine entry %d: %w", q.Seq, err)
	}
	v, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("quarantine entry %d: %w", q.Seq, err)
	}
	if err := qb.Put(seqKey(id), v); err != nil {
		return fmt.Errorf("quarantine entry %d: %w", q.Seq, err)
	}
	if err := ev.Delete(key); err != nil {
		return fmt.Errorf("quarantine entry %d: %w", q.Seq, err)
	}
	return nil
}

// seqRange is an inclusive range of sequences.
type seqRange struct{ first, last uint64 }

func (r seqRange) count() uint64 { return r.last - r.first + 1 }

// missingSeqs lists the sequences in (after, last of sorted] that sorted
// (ascending, no duplicates) lacks.
func missingSeqs(after uint64, sorted []walRecord) []seqRange {
	var out []seqRange
	next := after + 1
	for _, r := range sorted {
		if r.seq > next {
			out = append(out, seqRange{next, r.seq - 1})
		}
		next = r.seq + 1
	}
	return out
}

// reportLost logs the acknowledged events that neither the store nor the
// write-ahead log holds and returns how many they are.
func (in *Inbox) reportLost(lost []seqRange) uint64 {
	var n uint64
	for _, r := range lost {
		n += r.count()
		in.log.Error("inbox: acknowledged events lost: neither inbox.db nor the write-ahead log holds them",
			zap.Uint64("first_seq", r.first), zap.Uint64("last_seq", r.last), zap.Uint64("events", r.count()))
	}
	if n > 0 {
		in.log.Error("inbox: acknowledged events lost to damaged state files; restore inbox.db from a backup if they matter",
			zap.Uint64("lost_events", n), zap.Int("ranges", len(lost)))
	}
	return n
}
