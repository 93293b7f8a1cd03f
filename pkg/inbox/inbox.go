// Package inbox is the receiver's durable event queue. Append acknowledges an
// event once it is in the write-ahead log (wal.go) and synced: the first
// caller that finds no sync running becomes the group-commit leader
// (append.go) and syncs every append queued meanwhile with one fdatasync,
// then hands the lead to a waiting caller. An applier goroutine (apply.go)
// later writes the entries to a bbolt file (inbox.db) in larger
// transactions. The inbox also keeps the job records shown by /api/v1/jobs
// (jobs.go).
//
// Damaged state files, as Open finds them:
//
//   - inbox.db shorter than its meta page's high-water mark (page size ×
//     pgid), without a valid meta page, or with a damaged b+tree page (wrong
//     id or type, an element past its page, a page reached twice): Open
//     refuses, before bbolt maps the file (a mapped page past the end of the
//     file is a SIGBUS, and bbolt checks every page on a goroutine of its
//     own at open, where a damaged page panics), with an error wrapping
//     ErrDamaged that names the file and the two ways out: restore it from a
//     backup, or move it aside to start with an empty store. Nothing is
//     written.
//   - inbox.db missing or empty while the WAL files exist: the store is
//     rebuilt from every record the WAL holds (logged with their count and
//     sequence range); these are dispatched again, since whether they had
//     finished was recorded only in the lost store. The sequences below the
//     first WAL record were only in the store: they are reported as lost.
//   - A stored entry that does not decode, or whose key, state byte and
//     header disagree, or a pending entry whose payload is not JSON: it is
//     moved, raw bytes and reason kept, to the quarantine bucket, logged with
//     its sequence, and the inbox starts without it.
//   - WAL damage: a torn last record (a write cut short, never acknowledged)
//     ends the log as before. A bad record that intact newer records follow
//     was acknowledged: the records after it are replayed.
//
// Acknowledged events found in neither inbox.db nor the WAL (a damaged WAL
// record, a store restored from an older backup, a lost store) are logged
// by sequence range at error level and counted in
// receiver_inbox_lost_events; quarantined entries in
// receiver_inbox_quarantined_entries.
package inbox

// The inbox's types (Item, Result, Entry, Outcome, Options, Inbox and the
// internal op), Open with its rebuild of the in-memory dedupe indexes from
// bbolt, Close, the health and depth accessors, and submit, which hands an
// operation to the applier and waits for its answer. The rest of the package
// is split by concern: append.go, apply.go, compact.go, read.go, codec.go
// (with encode.go), jobs.go, metrics.go, wal.go and damage.go.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Entry states.
const (
	StatePending = "pending"
	StateDone    = "done"
	StateFailed  = "failed"
)

var (
	bucketEvents  = []byte("events")
	bucketObjects = []byte("objects")
	bucketJobs    = []byte("jobs")

	// ErrClosed is returned by operations on a closed inbox.
	ErrClosed = errors.New("inbox closed")
	// ErrUnavailable wraps the reason the inbox refuses new events for now
	// (the store cannot be written, or the write-ahead log is full). Nothing
	// acknowledged is lost; the sender should retry later.
	ErrUnavailable = errors.New("event store unavailable")
)

// Item is one accepted webhook request, before it is stored.
type Item struct {
	// ID is the sender's idempotency id (the forwarder payload's "id"); empty
	// when the body has none. A second item with the same ID is dropped.
	ID string
	// ObjectKey identifies the Kubernetes object (cluster/uid) and
	// ResourceVersion its state; both empty for bodies that are not
	// forwarder events.
	ObjectKey       string
	ResourceVersion string
	// Initial marks an event from a forwarder's initial list. It is dropped
	// when the same object state was already accepted.
	Initial bool
	// Deleted marks a DELETED event; the object's recorded state is removed.
	Deleted bool

	Endpoint   string
	Headers    map[string]string
	ReceivedAt time.Time
	UUID       string
	Payload    json.RawMessage
}

// Result tells what Append did with an item.
type Result struct {
	Seq       uint64 // sequence of the stored entry (or of the earlier duplicate)
	Duplicate bool   // true when the item was acknowledged and dropped
	Reason    string // why it was dropped: "duplicate-id" or "initial-seen"
}

// Entry is a stored event.
type Entry struct {
	Seq        uint64            `json:"seq"`
	ID         string            `json:"id,omitempty"`
	UUID       string            `json:"uuid"`
	Endpoint   string            `json:"endpoint"`
	Headers    map[string]string `json:"headers,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
	State      string            `json:"state"`
	Reason     string            `json:"reason,omitempty"`
	Rules      []string          `json:"rules,omitempty"`
	Jobs       []uint64          `json:"jobs,omitempty"`
	DoneAt     *time.Time        `json:"done_at,omitempty"`
	Payload    json.RawMessage   `json:"payload,omitempty"`

	// Object state carried for rebuilding the in-memory indexes at open.
	ObjectKey       string `json:"object_key,omitempty"`
	ResourceVersion string `json:"resource_version,omitempty"`
	Deleted         bool   `json:"deleted,omitempty"`
}

// Outcome is what the dispatcher records when an entry's actions finished.
type Outcome struct {
	State  string // StateDone or StateFailed
	Reason string
	Rules  []string
	Jobs   []uint64
}

// Options configure an inbox.
type Options struct {
	// Dir is the state directory; it is created if missing.
	Dir string
	// RetainAge and RetainCount bound how long and how many finished entries
	// (and job records) are kept for /api/v1. Pending entries are never removed.
	RetainAge   time.Duration
	RetainCount int
	// CompactInterval is how often compaction runs (default 1 minute).
	CompactInterval time.Duration
	// MaxBatch bounds the appends synced together (default 1024).
	MaxBatch int
	// ApplyDelay is how long acknowledged appends may wait before they are
	// written to bbolt and visible to readers (default 10ms).
	ApplyDelay time.Duration
	Logger     *zap.Logger
	// Registerer receives the inbox metrics; nil means none.
	Registerer prometheus.Registerer
}

type opKind int

const (
	opAppend opKind = iota
	opComplete
	opPutJob
	opCompact
	opApply   // entries made durable in the WAL, to be written to bbolt
	opBarrier // answered once everything queued before it is in bbolt
)

type op struct {
	kind    opKind
	leader  bool // Append: this caller now leads the group commit
	item    *Item
	apply   []walRecord
	seq     uint64
	outcome Outcome
	job     *Job
	res     Result
	err     error
	done    chan *op
}

// Inbox is the durable queue. It is safe for concurrent use.
type Inbox struct {
	db      *bolt.DB
	opts    Options
	log     *zap.Logger
	aops    chan *op // everything but appends, to the bbolt applier
	gmu     sync.Mutex
	queue   []*op // appends waiting for the next sync
	syncing bool  // a leader is syncing
	urgent  chan struct{}
	notify  chan struct{}
	closing chan struct{}
	wstop   chan struct{} // no more appends: the applier drains and stops
	stopped chan struct{} // applier stopped
	wal     *wal
	nextSeq uint64       // writer only
	idxMu   sync.Mutex   // guards ids, objs, objsDirty (writer and applier)
	mu      sync.RWMutex // guards closed against concurrent submit
	closed  bool
	pending atomic.Int64
	done    atomic.Int64 // finished entries currently retained

	// The dedupe indexes live in memory so that an append only touches the
	// tail of the events bucket (random-key index pages would multiply the
	// bytes written per commit). ids covers the retained entries and is
	// rebuilt from them at open; objs (object -> last accepted
	// resourceVersion) is flushed to the objects bucket at compaction, before
	// the entries that carry it are removed, and rebuilt from the bucket plus
	// the retained entries.
	ids       map[string]uint64
	objs      map[string]string
	objsDirty map[string]bool
	m         metrics
	opPool    sync.Pool

	// stalled holds acknowledged records bbolt could not take yet, oldest
	// first (applier only). Every later transaction writes them first, so
	// bbolt's sequence never passes an unapplied record, and the WAL keeps
	// them until it does.
	stalled  []walRecord
	attempts int                    // failed applies in a row (applier only)
	health   atomic.Pointer[string] // why new events are refused; nil when healthy

	// Found at open: entries kept in the quarantine bucket, and acknowledged
	// events that neither bbolt nor the WAL held.
	quarantined int
	lostAtOpen  uint64
}

// Open opens (creating if needed) the inbox under opts.Dir. It refuses, with
// an error wrapping ErrDamaged that names the file and what to do, a store
// it cannot read safely; see the package comment for each kind of damage.
func Open(opts Options) (*Inbox, error) {
	if opts.Dir == "" {
		return nil, errors.New("inbox: state directory is empty")
	}
	opts = withDefaults(opts)
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("inbox: create state directory: %w", err)
	}
	path := filepath.Join(opts.Dir, "inbox.db")
	emptyDB, err := checkDBFile(path)
	if err != nil {
		return nil, err
	}
	in := &Inbox{
		opts: opts, log: opts.Logger,
		aops:    make(chan *op, 4*opts.MaxBatch),
		urgent:  make(chan struct{}, 1),
		notify:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		wstop:   make(chan struct{}),
		stopped: make(chan struct{}),
	}
	in.opPool.New = func() any { return &op{done: make(chan *op, 1)} }
	if err := guardFile(path, func() error { return in.openDB(path) }); err != nil {
		return nil, err
	}
	if err := guardFile(path, func() error { return in.openWAL(filepath.Join(opts.Dir, "inbox.wal"), emptyDB) }); err != nil {
		_ = in.db.Close()
		return nil, err
	}
	in.initMetrics(opts.Registerer)
	go in.applier()
	return in, nil
}

func withDefaults(opts Options) Options {
	if opts.RetainAge <= 0 {
		opts.RetainAge = 24 * time.Hour
	}
	if opts.RetainCount <= 0 {
		opts.RetainCount = 10000
	}
	if opts.CompactInterval <= 0 {
		opts.CompactInterval = time.Minute
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.ApplyDelay <= 0 {
		opts.ApplyDelay = 10 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return opts
}

// openDB opens the bbolt file (checked by checkDBFile), creates the buckets
// and loads the indexes.
func (in *Inbox) openDB(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         5 * time.Second,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 64 << 20,
	})
	if err != nil {
		return fmt.Errorf("inbox: open %s: %w", path, err)
	}
	ok := false
	defer func() { // also when a damaged page panics
		if !ok {
			_ = db.Close()
		}
	}()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketObjects, bucketJobs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return in.rebuild(tx)
	}); err != nil {
		return fmt.Errorf("inbox: initialise %s: %w", path, err)
	}
	in.db, ok = db, true
	return nil
}

// rebuild loads the in-memory indexes and counters from the file. Entries
// that fail checkEntry are moved to the quarantine bucket.
func (in *Inbox) rebuild(tx *bolt.Tx) error {
	in.ids, in.objs, in.objsDirty = map[string]uint64{}, map[string]string{}, map[string]bool{}
	in.pending.Store(0)
	in.done.Store(0)
	if err := tx.Bucket(bucketObjects).ForEach(func(k, v []byte) error {
		in.objs[string(k)] = string(v)
		return nil
	}); err != nil {
		return err
	}
	var bad []badEntry
	if err := tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		e, err := checkEntry(k, v)
		if err != nil {
			bad = append(bad, badEntry{key: bytes.Clone(k), value: bytes.Clone(v), reason: err.Error()})
			return nil
		}
		in.index(e)
		return nil
	}); err != nil {
		return err
	}
	if err := in.quarantine(tx, bad); err != nil {
		return err
	}
	in.quarantined = countKeys(tx.Bucket(bucketQuarantine))
	return nil
}

// countKeys counts a bucket's keys (Stats misses a write transaction's
// uncommitted ones); a nil bucket has none.
func countKeys(b *bolt.Bucket) int {
	n := 0
	if b != nil {
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
	}
	return n
}

// index counts a stored entry and adds it to the dedupe indexes.
func (in *Inbox) index(e *Entry) {
	if e.State == StatePending {
		in.pending.Add(1)
	} else {
		in.done.Add(1)
	}
	if e.ID != "" {
		in.ids[e.ID] = e.Seq
	}
	in.noteObject(e.ObjectKey, e.ResourceVersion, e.Deleted)
}

// lastSeq is the highest sequence ever handed out that bbolt knows of.
func lastSeq(tx *bolt.Tx) uint64 {
	seq := tx.Bucket(bucketEvents).Sequence()
	if k, _ := tx.Bucket(bucketEvents).Cursor().Last(); k != nil {
		seq = max(seq, binary.BigEndian.Uint64(k))
	}
	return seq
}

func (in *Inbox) noteObject(key, rv string, deleted bool) {
	switch {
	case key == "":
	case deleted:
		delete(in.objs, key)
		in.objsDirty[key] = true
	case rv != "":
		in.objs[key] = rv
		in.objsDirty[key] = true
	}
}

// Notify returns a channel that receives a value after new entries were
// committed. It has a buffer of one; readers re-scan after each receive.
func (in *Inbox) Notify() <-chan struct{} { return in.notify }

// Depth is the number of pending entries.
func (in *Inbox) Depth() int { return int(in.pending.Load()) }

// Health is nil while the inbox accepts events, else an ErrUnavailable
// naming the reason; readiness reports it.
func (in *Inbox) Health() error {
	if r := in.health.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrUnavailable, *r)
	}
	if err := in.wal.failure(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func (in *Inbox) setHealth(err error) {
	if err == nil {
		in.health.Store(nil)
		return
	}
	r := err.Error()
	in.health.Store(&r)
}

func (in *Inbox) submit(ctx context.Context, o *op) error {
	in.mu.RLock()
	if in.closed {
		in.mu.RUnlock()
		return ErrClosed
	}
	ch := in.aops
	select { // cut a pending apply delay short
	case in.urgent <- struct{}{}:
	default:
	}
	select {
	case ch <- o:
	case <-ctx.Done():
		in.mu.RUnlock()
		return ctx.Err()
	}
	in.mu.RUnlock()
	// Once queued, the writer always answers (it drains the queue on close),
	// so wait without the context: the caller's answer must match the disk.
	<-o.done
	return o.err
}

func (in *Inbox) getOp() *op {
	o := in.opPool.Get().(*op)
	return o
}

func (in *Inbox) putOp(o *op) {
	done := o.done
	*o = op{done: done}
	in.opPool.Put(o)
}

// Close stops the writer after it has committed everything queued.
func (in *Inbox) Close() error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return nil
	}
	// Appends hold the read lock until acknowledged: none is in flight now.
	in.closed = true
	close(in.closing)
	in.mu.Unlock()
	close(in.wstop)
	<-in.stopped
	werr := in.wal.close()
	if err := in.db.Close(); err != nil {
		return fmt.Errorf("inbox: close: %w", err)
	}
	return werr
}
