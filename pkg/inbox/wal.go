package inbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
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
// file is read until the first record that is torn (a write cut by a crash,
// never acknowledged), zero, or older than the one before it (left over from
// before the file was reused).
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

func readWAL(data []byte, log *zap.Logger, name string) []walRecord {
	var out []walRecord
	var prev uint64
	for off := 0; off+8 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[off:]))
		if n == 0 {
			break // preallocated zeros: the end
		}
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n < 8 || off+8+n > len(data) || crc32.Checksum(data[off+8:off+8+n], crcTable) != sum {
			log.Info("inbox: write-ahead log ends in a torn or stale record (never acknowledged); ignored", zap.String("file", name), zap.Int("offset", off))
			break
		}
		body := data[off+8 : off+8+n]
		seq := binary.BigEndian.Uint64(body)
		if seq <= prev {
			break // left over from before the file was reused
		}
		prev = seq
		out = append(out, walRecord{seq: seq, value: body[8:]})
		off += 8 + n
	}
	return out
}

func (in *Inbox) openWAL(base string) error {
	var applied uint64
	if err := in.db.View(func(tx *bolt.Tx) error { applied = lastSeq(tx); return nil }); err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	var replay []walRecord
	w := &wal{}
	w.caught = sync.NewCond(&w.mu)
	for i := range w.files {
		path := fmt.Sprintf("%s.%d", base, i)
		data, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("inbox: read write-ahead log: %w", err)
		}
		for _, r := range readWAL(data, in.log, path) {
			if r.seq > applied {
				replay = append(replay, r)
			}
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("inbox: open write-ahead log: %w", err)
		}
		w.files[i] = &walFile{f: f, size: int64(len(data))}
	}
	sort.Slice(replay, func(i, j int) bool { return replay[i].seq < replay[j].seq })
	if len(replay) > 0 {
		var maxSeq uint64
		err := in.db.Update(func(tx *bolt.Tx) error {
			ev := tx.Bucket(bucketEvents)
			for _, r := range replay {
				if err := ev.Put(seqKey(r.seq), r.value); err != nil {
					return err
				}
				maxSeq = max(maxSeq, r.seq)
			}
			if err := ev.SetSequence(max(maxSeq, ev.Sequence())); err != nil {
				return err
			}
			return in.rebuild(tx)
		})
		if err != nil {
			w.closeFiles()
			return fmt.Errorf("inbox: replay write-ahead log: %w", err)
		}
		in.log.Info("inbox: replayed acknowledged events from the write-ahead log", zap.Int("events", len(replay)))
		applied = max(applied, maxSeq)
	}
	// Everything in the files is in bbolt now: both start over at offset 0
	// with a zeroed first header, preallocated to their full size.
	zeros := make([]byte, 1<<20)
	for _, wf := range w.files {
		for off := wf.size; off < walFileSize; off += int64(len(zeros)) {
			if _, err := wf.f.WriteAt(zeros[:min(int64(len(zeros)), walFileSize-off)], off); err != nil {
				w.closeFiles()
				return fmt.Errorf("inbox: preallocate write-ahead log: %w", err)
			}
		}
		wf.size = max(wf.size, walFileSize)
		if _, err := wf.f.WriteAt(make([]byte, 8), 0); err != nil {
			w.closeFiles()
			return fmt.Errorf("inbox: reset write-ahead log: %w", err)
		}
		if err := wf.f.Sync(); err != nil {
			w.closeFiles()
			return fmt.Errorf("inbox: sync write-ahead log: %w", err)
		}
	}
	if d, err := os.Open(filepath.Dir(base)); err == nil { // make the files' directory entries durable
		_ = d.Sync()
		_ = d.Close()
	}
	w.done = applied
	in.nextSeq = applied
	in.wal = w
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
