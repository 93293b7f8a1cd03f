package inbox

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// The write-ahead log makes an append durable with one fdatasync of the
// batch's bytes (a bbolt commit costs two syncs plus page writes). Entries
// are acknowledged after the WAL sync; the applier then writes them to bbolt
// in larger transactions.
//
// The log is two preallocated files (inbox.wal.0, inbox.wal.1) overwritten in
// place, so that a sync does not also journal a size or extent change. The
// writer fills one; when it is full it moves to the other, which is reusable
// once bbolt holds every record in it (normally long before). At open, the
// records of both files newer than bbolt's last sequence are replayed. Each
// file is read until the first record that is zero, or torn (a write cut by
// a crash, never acknowledged), or older than the one before it (left over
// from before the file was reused), unless an intact record newer than the
// last one read follows further on: then the bad record is damage in the
// middle, it had been acknowledged, and reading resumes there. Sequences
// are contiguous, so the gaps between bbolt's last sequence and the newest
// record are the acknowledged records lost, reported by range.
//
// A crash while a batch is written could in principle leave a later page of
// the batch on disk and an earlier one not (the disk does not keep the order
// of writes within one sync); such a batch was never acknowledged, but it
// looks like damage in the middle and is reported as lost: a report too many
// rather than a loss unreported.
//
// Record: uint32 length of body | uint32 CRC-32C of body | body = uint64 seq | entry.

// walFileSize is the preallocated size of each WAL file.
const walFileSize = 16 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type walRecord struct {
	seq   uint64
	value []byte
}

type walFile struct {
	f       *os.File
	off     int64  // next write offset
	size    int64  // file size
	lastSeq uint64 // newest record written since the file was (re)started
}

type wal struct {
	mu     sync.Mutex
	caught *sync.Cond
	files  [2]*walFile
	cur    int
	done   uint64 // bbolt holds every record up to this sequence
	err    error  // stops appends: closed, or a failed sync
	broken atomic.Pointer[error]
}

// Outcome of reading one record header.
type recKind int

const (
	recOK    recKind = iota
	recZero          // zero length: preallocated space, or the header reset at open
	recStale         // intact but not newer than the record before it
	recBad           // torn, or damaged
)

// walScan is what readWAL found in one file.
type walScan struct {
	recs []walRecord
	bad  []int // offsets of damaged records that valid newer records follow
	torn int   // offset of the torn record that ends the file; -1 if none
}

// recordAt reads the record at off, which must be newer than prev, and
// returns its size when it is intact (recOK or recStale).
func recordAt(data []byte, off int, prev uint64) (walRecord, int, recKind) {
	n := int(binary.BigEndian.Uint32(data[off:]))
	switch {
	case n == 0:
		return walRecord{}, 0, recZero
	case n < 8 || n > len(data)-off-8:
		return walRecord{}, 0, recBad
	}
	body := data[off+8 : off+8+n]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(data[off+4:]) {
		return walRecord{}, 0, recBad
	}
	if seq := binary.BigEndian.Uint64(body); seq > prev {
		return walRecord{seq: seq, value: body[8:]}, 8 + n, recOK
	}
	return walRecord{}, 8 + n, recStale
}

// nextRecord finds the first intact record at or after from that is newer
// than min, or returns -1. It steps over intact older records whole: no
// newer record starts inside bytes that are still intact.
func nextRecord(data []byte, from int, min uint64) int {
	for off := from; off+8 <= len(data); {
		if binary.BigEndian.Uint32(data[off:]) == 0 {
			off = skipZeros(data, off)
			continue
		}
		if !looksLikeRecord(data, off) {
			off++
			continue
		}
		switch _, n, k := recordAt(data, off, min); k {
		case recOK:
			return off
		case recStale:
			off += n
		default:
			off++
		}
	}
	return -1
}

// skipZeros returns the first offset after off where a header could start:
// its length is not zero, so it starts at most 3 bytes before the next
// nonzero byte.
func skipZeros(data []byte, off int) int {
	i := off
	for i+8 <= len(data) && binary.LittleEndian.Uint64(data[i:]) == 0 {
		i += 8
	}
	for i < len(data) && data[i] == 0 {
		i++
	}
	return max(off+1, i-3)
}

// walBodyPrefix starts every record's entry header (encodeNew).
var walBodyPrefix = []byte(`{"seq":`)

// looksLikeRecord is a cheap test, before the checksum, that off holds a
// record header: a plausible length, and an entry that begins like one that
// encodeNew wrote (pending, then the JSON header).
func looksLikeRecord(data []byte, off int) bool {
	n := int(binary.BigEndian.Uint32(data[off:]))
	if n < 8+2+len(walBodyPrefix) || n > len(data)-off-8 {
		return false
	}
	body := data[off+8 : off+8+n]
	if body[8] != 'p' {
		return false
	}
	_, w := binary.Uvarint(body[9:])
	return w > 0 && bytes.HasPrefix(body[9+w:], walBodyPrefix)
}

// readWAL returns one file's records newer than after, in order. The file
// ends at a zero header, or at a torn or stale record that no newer record
// follows (a write cut by a crash, never acknowledged, or what is left of the
// file's previous use). A bad record that newer intact records follow is
// damage: it was acknowledged (later records were written after it), and the
// scan goes on from the next intact record.
func readWAL(data []byte, after uint64) walScan {
	s := walScan{torn: -1}
	var prev uint64
	for off := 0; off+8 <= len(data); {
		r, n, kind := recordAt(data, off, prev)
		if kind == recOK {
			if r.seq > after {
				s.recs = append(s.recs, r)
			}
			prev, off = r.seq, off+n
			continue
		}
		if kind == recZero && off == 0 {
			break // reset at open, nothing written since
		}
		next := nextRecord(data, off+1, max(prev, after))
		if next < 0 {
			if kind == recBad {
				s.torn = off
			}
			break
		}
		s.bad = append(s.bad, off)
		off = next
	}
	return s
}

func (in *Inbox) logScan(name string, s walScan) {
	if s.torn >= 0 {
		in.log.Info("inbox: write-ahead log ends in a torn or stale record (never acknowledged); ignored", zap.String("file", name), zap.Int("offset", s.torn))
	}
	for _, off := range s.bad {
		in.log.Error("inbox: damaged record in the middle of the write-ahead log (newer records follow it, so it was acknowledged); replaying the records after it",
			zap.String("file", name), zap.Int("offset", off))
	}
}

// openWAL replays the records bbolt lacks, reports acknowledged events that
// neither holds, and resets both files. emptyDB: inbox.db was missing or
// empty, so the store is rebuilt from the log.
func (in *Inbox) openWAL(base string, emptyDB bool) error {
	var applied uint64
	if err := in.db.View(func(tx *bolt.Tx) error { applied = lastSeq(tx); return nil }); err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	w := &wal{}
	w.caught = sync.NewCond(&w.mu)
	replay, existed, err := in.readWALFiles(w, base, applied)
	if err != nil {
		w.closeFiles()
		return err
	}
	if emptyDB && existed {
		in.noteRebuild(replay)
	}
	in.lostAtOpen = in.reportLost(missingSeqs(applied, replay))
	if len(replay) > 0 {
		if err := in.replay(replay); err != nil {
			w.closeFiles()
			return err
		}
		applied = max(applied, replay[len(replay)-1].seq)
	}
	if err := w.reset(filepath.Dir(base)); err != nil {
		w.closeFiles()
		return err
	}
	w.done = applied
	in.nextSeq = applied
	in.wal = w
	return nil
}

// readWALFiles opens both files and returns their records newer than
// applied, sorted, and whether any file had content.
func (in *Inbox) readWALFiles(w *wal, base string, applied uint64) ([]walRecord, bool, error) {
	var replay []walRecord
	existed := false
	for i := range w.files {
		path := fmt.Sprintf("%s.%d", base, i)
		data, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("inbox: read write-ahead log: %w", err)
		}
		existed = existed || len(data) > 0
		s := readWAL(data, applied)
		in.logScan(path, s)
		replay = append(replay, s.recs...)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("inbox: open write-ahead log: %w", err)
		}
		w.files[i] = &walFile{f: f, size: int64(len(data))}
	}
	slices.SortFunc(replay, func(a, b walRecord) int { return cmp.Compare(a.seq, b.seq) })
	replay = slices.CompactFunc(replay, func(a, b walRecord) bool { return a.seq == b.seq })
	return replay, existed, nil
}

// noteRebuild says loudly that the store is rebuilt from the log alone.
func (in *Inbox) noteRebuild(replay []walRecord) {
	if len(replay) == 0 {
		in.log.Error("inbox: inbox.db was missing or empty although the write-ahead log exists, and the log holds no records: " +
			"starting with an empty store; the events the old store held are lost unless inbox.db is restored from a backup")
		return
	}
	in.log.Error("inbox: inbox.db was missing or empty although the write-ahead log exists: rebuilding the store from the log's records; "+
		"they are dispatched again, since whether they had finished was recorded only in the lost store",
		zap.Int("events", len(replay)), zap.Uint64("first_seq", replay[0].seq), zap.Uint64("last_seq", replay[len(replay)-1].seq))
}

// replay writes the records (sorted) to bbolt and reloads the indexes.
func (in *Inbox) replay(replay []walRecord) error {
	maxSeq := replay[len(replay)-1].seq
	err := in.db.Update(func(tx *bolt.Tx) error {
		ev := tx.Bucket(bucketEvents)
		for _, r := range replay {
			if err := ev.Put(seqKey(r.seq), r.value); err != nil {
				return err
			}
		}
		if err := ev.SetSequence(max(maxSeq, ev.Sequence())); err != nil {
			return err
		}
		return in.rebuild(tx)
	})
	if err != nil {
		return fmt.Errorf("inbox: replay write-ahead log: %w", err)
	}
	in.log.Info("inbox: replayed acknowledged events from the write-ahead log", zap.Int("events", len(replay)),
		zap.Uint64("first_seq", replay[0].seq), zap.Uint64("last_seq", maxSeq))
	return nil
}

// reset starts both files over at offset 0 with a zeroed first header,
// preallocated to their full size (everything in them is in bbolt now).
func (w *wal) reset(dir string) error {
	zeros := make([]byte, 1<<20)
	for _, wf := range w.files {
		for off := wf.size; off < walFileSize; off += int64(len(zeros)) {
			if _, err := wf.f.WriteAt(zeros[:min(int64(len(zeros)), walFileSize-off)], off); err != nil {
				return fmt.Errorf("inbox: preallocate write-ahead log: %w", err)
			}
		}
		wf.size = max(wf.size, walFileSize)
		if _, err := wf.f.WriteAt(make([]byte, 8), 0); err != nil {
			return fmt.Errorf("inbox: reset write-ahead log: %w", err)
		}
		if err := wf.f.Sync(); err != nil {
			return fmt.Errorf("inbox: sync write-ahead log: %w", err)
		}
	}
	if d, err := os.Open(dir); err == nil { // make the files' directory entries durable
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// append writes records to the current file and syncs them.
func (w *wal) append(recs []walRecord) error {
	n := 0
	for _, r := range recs {
		n += 16 + len(r.value)
	}
	buf := make([]byte, 0, n)
	for _, r := range recs {
		var h [16]byte
		binary.BigEndian.PutUint32(h[0:], uint32(8+len(r.value)))
		binary.BigEndian.PutUint64(h[8:], r.seq)
		c := crc32.Update(crc32.Checksum(h[8:16], crcTable), crcTable, r.value)
		binary.BigEndian.PutUint32(h[4:], c)
		buf = append(buf, h[:]...)
		buf = append(buf, r.value...)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.files[w.cur]
	if cur.off > 0 && cur.off+int64(len(buf)) > cur.size {
		// Full: switch to the other file once bbolt holds all of it.
		other := w.files[1-w.cur]
		if err := w.awaitApplied(other.lastSeq, other.off > 0); err != nil {
			return err
		}
		w.cur = 1 - w.cur
		cur = other
		cur.off = 0
	}
	if w.err != nil {
		return w.err
	}
	// A batch larger than the file is written at offset 0 and grows it. A
	// failed write is retried over the same bytes by the next batch.
	if _, err := cur.f.WriteAt(buf, cur.off); err != nil {
		return err
	}
	if err := fdatasync(cur.f); err != nil {
		// After a failed sync the page cache no longer tells what is on
		// disk: stop taking events until a restart replays the files.
		w.err = fmt.Errorf("sync failed, restart the receiver: %w", err)
		w.broken.Store(&w.err)
		return w.err
	}
	cur.off += int64(len(buf))
	cur.size = max(cur.size, cur.off)
	cur.lastSeq = recs[len(recs)-1].seq
	return nil
}

// walWait bounds how long an append waits for bbolt to catch up with a full
// WAL file before the batch is refused (503) instead of hanging.
var walWait = 2 * time.Second

// errWALFull: both WAL files hold records bbolt has not taken yet.
var errWALFull = fmt.Errorf("%w: write-ahead log full, the store is behind", ErrUnavailable)

// awaitApplied waits (w.mu held) until bbolt holds every record up to seq,
// at most walWait.
func (w *wal) awaitApplied(seq uint64, inUse bool) error {
	if !inUse || w.done >= seq {
		return w.err
	}
	timedOut := false
	t := time.AfterFunc(walWait, func() {
		w.mu.Lock()
		timedOut = true
		w.caught.Broadcast()
		w.mu.Unlock()
	})
	defer t.Stop()
	for w.err == nil && w.done < seq && !timedOut {
		w.caught.Wait()
	}
	switch {
	case w.err != nil:
		return w.err
	case w.done < seq:
		return errWALFull
	}
	return nil
}

// failure is the error that stopped the log, if any; read without the
// lock, which an append holds during its sync.
func (w *wal) failure() error {
	if p := w.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// applied records that bbolt holds every record up to seq.
func (w *wal) applied(seq uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq > w.done {
		w.done = seq
		w.caught.Broadcast()
	}
	return nil
}

func (w *wal) closeFiles() {
	for _, wf := range w.files {
		if wf != nil {
			_ = wf.f.Close()
		}
	}
}

func (w *wal) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = ErrClosed
	}
	w.caught.Broadcast()
	var errs []error
	for _, wf := range w.files {
		if err := wf.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("inbox: close write-ahead log: %w", err)
	}
	return nil
}
