// Package inbox is the receiver's durable event queue. Append acknowledges an
// event once it is in the write-ahead log (wal.go) and synced: the first
// caller that finds no sync running becomes the group-commit leader and
// syncs every append queued meanwhile with one fdatasync, then hands the
// lead to a waiting caller. An applier goroutine later writes the entries to
// a bbolt file (inbox.db) in larger transactions. The inbox also keeps the
// job records shown by /api/v1/jobs.
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

// Job is a job record (a Controller job or a local ansible-playbook run).
type Job struct {
	ID              uint64     `json:"id"`
	EventSeq        uint64     `json:"event_seq"`
	EventUUID       string     `json:"event_uuid,omitempty"`
	Ruleset         string     `json:"ruleset"`
	Rule            string     `json:"rule"`
	Action          string     `json:"action"`
	Name            string     `json:"name"`
	Organization    string     `json:"organization,omitempty"`
	Lane            string     `json:"lane,omitempty"`
	Status          string     `json:"status"`
	Error           string     `json:"error,omitempty"`
	ControllerJobID int64      `json:"controller_job_id,omitempty"`
	URL             string     `json:"url,omitempty"`
	LogPath         string     `json:"log_path,omitempty"`
	Attempts        int        `json:"attempts,omitempty"`
	Coalesced       int        `json:"coalesced,omitempty"`
	Created         time.Time  `json:"created"`
	Started         *time.Time `json:"started,omitempty"`
	Finished        *time.Time `json:"finished,omitempty"`
	DurationSeconds float64    `json:"duration_seconds,omitempty"`
	// FirstChange and ReplicationLagSeconds: for a successful job, the
	// earliest change it carried and the time from it to the job's end.
	FirstChange           *time.Time     `json:"first_change,omitempty"`
	ReplicationLagSeconds float64        `json:"replication_lag_seconds,omitempty"`
	Artifacts             map[string]any `json:"artifacts,omitempty"`
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

type metrics struct {
	depth     prometheus.GaugeFunc
	commits   prometheus.Counter
	batchSize prometheus.Histogram
	dropped   *prometheus.CounterVec
	compacted prometheus.Counter
	applyFail prometheus.Counter
	stalledG  prometheus.GaugeFunc
	quarantG  prometheus.Gauge
	lostG     prometheus.Gauge
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

func (in *Inbox) initMetrics(reg prometheus.Registerer) {
	in.m.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "receiver_inbox_depth", Help: "Events accepted and not yet finished.",
	}, func() float64 { return float64(in.pending.Load()) })
	in.m.commits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "receiver_inbox_commits_total", Help: "Inbox transactions committed (each one fsync).",
	})
	in.m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "receiver_inbox_batch_size", Help: "Operations per inbox transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 6),
	})
	in.m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "receiver_inbox_dropped_total", Help: "Acknowledged events that were not stored, by reason.",
	}, []string{"reason"})
	in.m.compacted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "receiver_inbox_compacted_total", Help: "Finished entries removed by compaction.",
	})
	in.m.applyFail = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "receiver_inbox_apply_failures_total", Help: "Failed attempts to write acknowledged events to the store (retried in order).",
	})
	in.m.stalledG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "receiver_inbox_unavailable", Help: "1 while the inbox refuses new events (store not writable).",
	}, func() float64 {
		if in.Health() != nil {
			return 1
		}
		return 0
	})
	in.initDamageMetrics()
	if reg != nil {
		reg.MustRegister(in.m.depth, in.m.commits, in.m.batchSize, in.m.dropped, in.m.compacted, in.m.applyFail, in.m.stalledG,
			in.m.quarantG, in.m.lostG)
	}
}

// initDamageMetrics creates the gauges of what Open found damaged.
func (in *Inbox) initDamageMetrics() {
	in.m.quarantG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "receiver_inbox_quarantined_entries",
		Help: "Stored entries found corrupt at start-up and moved to the quarantine bucket, where they are kept.",
	})
	in.m.quarantG.Set(float64(in.quarantined))
	in.m.lostG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "receiver_inbox_lost_events",
		Help: "Acknowledged events found at start-up in neither the store nor the write-ahead log (damaged state files; the log names their sequences).",
	})
	in.m.lostG.Set(float64(in.lostAtOpen))
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

// Append stores an item durably and returns only after the transaction that
// holds it was synced to disk (or the item was recognised as a duplicate).
//
// Group commit without a dedicated goroutine: the first caller to find no
// sync in progress becomes the leader and syncs everything queued; callers
// arriving meanwhile queue up, and when the sync ends the leader hands the
// queue to one of them. The sync thus runs on a goroutine that already holds
// a P instead of waiting to be scheduled behind the HTTP handlers.
func (in *Inbox) Append(ctx context.Context, it *Item) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.closed {
		return Result{}, ErrClosed
	}
	if err := in.Health(); err != nil {
		return Result{}, err
	}
	o := in.getOp()
	o.kind, o.item = opAppend, it
	in.gmu.Lock()
	in.queue = append(in.queue, o)
	lead := !in.syncing
	in.syncing = true
	in.gmu.Unlock()
	if lead {
		in.lead()
	}
	for {
		<-o.done
		if !o.leader {
			break
		}
		o.leader = false
		in.lead()
	}
	res, err := o.res, o.err
	in.putOp(o)
	return res, err
}

// lead syncs one batch from the queue, then hands leadership to the oldest
// waiting caller (or ends the sync when none waits).
func (in *Inbox) lead() {
	in.gmu.Lock()
	n, size := 0, 0
	for n < len(in.queue) && n < in.opts.MaxBatch && size < maxBatchBytes {
		size += len(in.queue[n].item.Payload)
		n++
	}
	batch := append([]*op(nil), in.queue[:n]...)
	in.queue = append(in.queue[:0], in.queue[n:]...)
	in.gmu.Unlock()
	in.writeBatch(batch)
	in.gmu.Lock()
	if len(in.queue) == 0 {
		in.syncing = false
		in.gmu.Unlock()
		return
	}
	next := in.queue[0]
	in.gmu.Unlock()
	next.leader = true
	next.done <- next
}

// Complete records the outcome of an entry's actions.
func (in *Inbox) Complete(ctx context.Context, seq uint64, out Outcome) error {
	o := in.getOp()
	o.kind, o.seq, o.outcome = opComplete, seq, out
	err := in.submit(ctx, o)
	if err == nil {
		in.putOp(o)
	}
	return err
}

// PutJob creates (ID 0) or replaces a job record and returns its ID.
func (in *Inbox) PutJob(ctx context.Context, j Job) (uint64, error) {
	o := in.getOp()
	o.kind, o.job = opPutJob, &j
	err := in.submit(ctx, o)
	id := o.job.ID
	if err == nil {
		in.putOp(o)
	}
	return id, err
}

// Compact removes finished entries and job records beyond the retention now.
func (in *Inbox) Compact(ctx context.Context) error {
	o := in.getOp()
	o.kind = opCompact
	err := in.submit(ctx, o)
	if err == nil {
		in.putOp(o)
	}
	return err
}

// Flush returns once every event acknowledged before the call is visible to
// Pending, Get and Recent (appends reach bbolt shortly after their ack).
func (in *Inbox) Flush(ctx context.Context) error {
	o := in.getOp()
	o.kind = opBarrier
	err := in.submit(ctx, o)
	if err == nil {
		in.putOp(o)
	}
	return err
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

// maxBatchBytes bounds the payload bytes synced together.
const maxBatchBytes = 8 << 20

// writeBatch deduplicates a batch of appends, writes the new entries to the
// WAL with one fdatasync and only then acknowledges them; bbolt is written
// later by the applier. A batch the WAL did not take is refused as a whole
// and leaves the indexes as they were, so a retry is not mistaken for a
// duplicate.
func (in *Inbox) writeBatch(batch []*op) {
	recs, undo := in.indexBatch(batch)
	var err error
	if len(recs) > 0 {
		err = in.wal.append(recs)
	}
	if err != nil {
		in.undoIndex(undo, len(recs))
		err = fmt.Errorf("inbox: write-ahead log: %w", err)
		in.log.Error("inbox: events refused", zap.Error(err), zap.Int("events", len(recs)))
	}
	in.m.commits.Inc()
	in.m.batchSize.Observe(float64(len(batch)))
	if err == nil && len(recs) > 0 {
		in.pending.Add(int64(len(recs)))
		// Queued before the acknowledgements, so that any later operation on
		// these entries finds them in bbolt.
		in.aops <- &op{kind: opApply, apply: recs}
	}
	for _, o := range batch {
		if err != nil {
			o.err, o.res = err, Result{}
		} else if o.err == nil && o.res.Duplicate {
			in.m.dropped.WithLabelValues(o.res.Reason).Inc()
		}
		o.done <- o
	}
}

// indexUndo restores the dedupe indexes for one refused record.
type indexUndo struct {
	id        string
	objectKey string
	prevRV    string
	hadObject bool
}

// indexBatch assigns sequences to the new items of a batch, answers the
// duplicates and updates the dedupe indexes, returning the records to write
// and how to undo the index changes.
func (in *Inbox) indexBatch(batch []*op) ([]walRecord, []indexUndo) {
	recs := make([]walRecord, 0, len(batch))
	var undo []indexUndo
	in.idxMu.Lock()
	defer in.idxMu.Unlock()
	for _, o := range batch {
		o.err = nil
		it := o.item
		if it.ID != "" {
			if seq, ok := in.ids[it.ID]; ok {
				o.res = Result{Seq: seq, Duplicate: true, Reason: "duplicate-id"}
				continue
			}
		}
		if it.ObjectKey != "" && it.Initial && it.ResourceVersion != "" {
			if rv, ok := in.objs[it.ObjectKey]; ok && rv == it.ResourceVersion {
				o.res = Result{Duplicate: true, Reason: "initial-seen"}
				continue
			}
		}
		in.nextSeq++
		e := Entry{
			Seq: in.nextSeq, ID: it.ID, UUID: it.UUID, Endpoint: it.Endpoint, Headers: it.Headers,
			ReceivedAt: it.ReceivedAt, State: StatePending, Payload: it.Payload,
			ObjectKey: it.ObjectKey, ResourceVersion: it.ResourceVersion, Deleted: it.Deleted,
		}
		recs = append(recs, walRecord{seq: e.Seq, value: encodeNew(&e)})
		u := indexUndo{id: it.ID, objectKey: it.ObjectKey}
		if it.ObjectKey != "" {
			u.prevRV, u.hadObject = in.objs[it.ObjectKey]
		}
		undo = append(undo, u)
		if it.ID != "" {
			in.ids[it.ID] = e.Seq
		}
		in.noteObject(it.ObjectKey, it.ResourceVersion, it.Deleted)
		o.res = Result{Seq: e.Seq}
	}
	return recs, undo
}

// undoIndex reverts indexBatch for n refused records, newest first.
func (in *Inbox) undoIndex(undo []indexUndo, n int) {
	in.idxMu.Lock()
	defer in.idxMu.Unlock()
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		if u.id != "" {
			delete(in.ids, u.id)
		}
		if u.objectKey != "" {
			if u.hadObject {
				in.objs[u.objectKey] = u.prevRV
			} else {
				delete(in.objs, u.objectKey)
			}
			in.objsDirty[u.objectKey] = true // a compaction may have flushed the refused state
		}
	}
	in.nextSeq -= uint64(n)
}

// applier writes WAL'd entries and the other operations to bbolt, one
// transaction per batch, and truncates the WAL once bbolt holds everything.
// While acknowledged entries cannot be written (a full disk), it retries them
// with backoff, in order, and the inbox refuses new events.
func (in *Inbox) applier() {
	defer close(in.stopped)
	ticker := time.NewTicker(in.opts.CompactInterval)
	defer ticker.Stop()
	batch := make([]*op, 0, in.opts.MaxBatch)
	for {
		batch = batch[:0]
		var retry <-chan time.Time
		if len(in.stalled) > 0 {
			retry = time.After(retryDelay(in.attempts))
		}
		select {
		case o := <-in.aops:
			batch = append(batch, o)
		case <-ticker.C:
			batch = append(batch, &op{kind: opCompact, done: make(chan *op, 1)})
		case <-retry:
		case <-in.wstop:
			in.drain()
			return
		}
		// Appends are already durable in the WAL: gather them for a moment so
		// that bbolt's two syncs per commit are spread over many entries and
		// compete less with the WAL's. Other operations go at once.
		if len(batch) > 0 && batch[0].kind == opApply {
			select {
			case <-time.After(in.opts.ApplyDelay):
			case <-in.urgent:
			case <-in.wstop:
			}
		}
	fill:
		for len(batch) < 64*in.opts.MaxBatch {
			select {
			case o := <-in.aops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		in.commit(batch)
	}
}

// drain answers what is still queued at close; entries bbolt did not take
// stay in the WAL and are replayed at the next open.
func (in *Inbox) drain() {
	for {
		select {
		case o := <-in.aops:
			in.commit([]*op{o})
		default:
			return
		}
	}
}

// retryDelay is the backoff between attempts to apply stalled entries.
func retryDelay(attempts int) time.Duration {
	d := 50 * time.Millisecond << min(attempts, 7)
	return min(d, 5*time.Second)
}

// commit applies a batch in one bbolt transaction and answers every op.
// Stalled entries go first; on failure they, and this batch's entries, stay
// stalled and the WAL keeps them.
func (in *Inbox) commit(batch []*op) {
	if len(in.stalled) > 0 {
		batch = append([]*op{{kind: opApply, apply: in.stalled}}, batch...)
		in.stalled = nil
	}
	var appended, completed int64
	var compactedDone int64
	var maxSeq uint64
	now := time.Now()
	err := in.db.Update(func(tx *bolt.Tx) error {
		appended, completed, compactedDone, maxSeq = 0, 0, 0, 0
		ev := tx.Bucket(bucketEvents)
		objs := tx.Bucket(bucketObjects)
		jobs := tx.Bucket(bucketJobs)
		for _, o := range batch {
			o.err = nil
			switch o.kind {
			case opApply:
				for _, r := range o.apply {
					if err := ev.Put(seqKey(r.seq), r.value); err != nil {
						return err // the WAL still holds them
					}
					appended++
					maxSeq = max(maxSeq, r.seq)
				}
			case opComplete:
				var wasPending bool
				wasPending, o.err = completeEntry(ev, o.seq, o.outcome, now)
				if o.err == nil && wasPending {
					completed++
				}
			case opPutJob:
				o.err = putJob(jobs, o.job)
			case opCompact:
				in.idxMu.Lock()
				if o.err = in.flushObjects(objs); o.err == nil {
					var n int64
					n, o.err = in.compact(ev, jobs, now, in.opts.RetainAge, in.opts.RetainCount)
					compactedDone += n
				}
				in.idxMu.Unlock()
			}
		}
		if maxSeq > ev.Sequence() {
			return ev.SetSequence(maxSeq)
		}
		return nil
	})
	if err != nil {
		in.commitFailed(batch, fmt.Errorf("inbox: commit: %w", err))
	} else {
		in.committed(maxSeq, completed, compactedDone)
	}
	for _, o := range batch {
		if o.kind == opApply {
			continue
		}
		if err != nil {
			o.err = err
		}
		o.done <- o
	}
	if err == nil && appended > 0 {
		select {
		case in.notify <- struct{}{}:
		default:
		}
	}
}

// commitFailed keeps the batch's acknowledged entries for the next attempt
// and refuses new events until they are in bbolt.
func (in *Inbox) commitFailed(batch []*op, err error) {
	n := 0
	for _, o := range batch {
		if o.kind == opApply {
			in.stalled = append(in.stalled, o.apply...)
			n += len(o.apply)
		}
	}
	in.attempts++
	in.m.applyFail.Inc()
	if n > 0 {
		in.setHealth(fmt.Errorf("%d acknowledged events wait to be stored (%w); retrying", len(in.stalled), err))
	}
	in.log.Error("inbox commit failed", zap.Error(err), zap.Int("ops", len(batch)), zap.Int("stalled_events", len(in.stalled)), zap.Int("attempt", in.attempts))
}

func (in *Inbox) committed(maxSeq uint64, completed, compactedDone int64) {
	if in.attempts > 0 && in.health.Load() != nil {
		in.log.Info("inbox: store writable again; accepting events", zap.Int("attempts", in.attempts))
	}
	in.attempts = 0
	in.setHealth(nil)
	in.pending.Add(-completed)
	in.done.Add(completed - compactedDone)
	in.m.compacted.Add(float64(compactedDone))
	if maxSeq > 0 {
		if terr := in.wal.applied(maxSeq); terr != nil {
			in.log.Warn("inbox: truncate write-ahead log", zap.Error(terr))
		}
	}
}

// flushObjects writes the changed object states to the objects bucket.
func (in *Inbox) flushObjects(b *bolt.Bucket) error {
	for k := range in.objsDirty {
		var err error
		if rv, ok := in.objs[k]; ok {
			err = b.Put([]byte(k), []byte(rv))
		} else {
			err = b.Delete([]byte(k))
		}
		if err != nil {
			return err
		}
	}
	clear(in.objsDirty)
	return nil
}

func completeEntry(ev *bolt.Bucket, seq uint64, out Outcome, now time.Time) (bool, error) {
	key := seqKey(seq)
	v := ev.Get(key)
	if v == nil {
		return false, fmt.Errorf("inbox: entry %d not found", seq)
	}
	e, err := decodeEntry(v, true)
	if err != nil {
		return false, err
	}
	wasPending := e.State == StatePending
	e.State = out.State
	if e.State == "" {
		e.State = StateDone
	}
	e.Reason, e.Rules, e.Jobs = out.Reason, out.Rules, out.Jobs
	t := now.UTC()
	e.DoneAt = &t
	nv, err := encodeEntry(e)
	if err != nil {
		return false, err
	}
	return wasPending, ev.Put(key, nv)
}

func putJob(b *bolt.Bucket, j *Job) error {
	if j.ID == 0 {
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		j.ID = id
	}
	v, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("inbox: encode job: %w", err)
	}
	return b.Put(seqKey(j.ID), v)
}

// compact removes finished entries older than age, then the oldest finished
// entries beyond count, and job records beyond count. It returns the number of
// finished entries removed.
func (in *Inbox) compact(ev, jobs *bolt.Bucket, now time.Time, age time.Duration, count int) (int64, error) {
	type fin struct {
		key []byte
		id  string
		seq uint64
		old bool
	}
	var finished []fin
	c := ev.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if stateOf(v) == StatePending {
			continue
		}
		e, err := decodeEntry(v, false)
		if err != nil {
			return 0, err
		}
		finished = append(finished, fin{
			key: append([]byte(nil), k...), id: e.ID, seq: e.Seq,
			old: e.DoneAt != nil && now.Sub(*e.DoneAt) > age,
		})
	}
	var removed int64
	for i, f := range finished {
		if !f.old && len(finished)-i <= count {
			continue
		}
		if f.id != "" && in.ids[f.id] == f.seq {
			delete(in.ids, f.id)
		}
		if err := ev.Delete(f.key); err != nil {
			return removed, err
		}
		removed++
	}
	if n := jobs.Stats().KeyN; n > count {
		jc := jobs.Cursor()
		extra := n - count
		var keys [][]byte
		for k, _ := jc.First(); k != nil && len(keys) < extra; k, _ = jc.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := jobs.Delete(k); err != nil {
				return removed, err
			}
		}
	}
	return removed, nil
}

func seqKey(seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return b[:]
}

// Pending returns up to limit pending entries with a sequence above after, in
// order, payload included.
func (in *Inbox) Pending(after uint64, limit int) ([]Entry, error) {
	var out []Entry
	err := in.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			if stateOf(v) != StatePending {
				continue
			}
			e, err := decodeEntry(v, true)
			if err != nil {
				return err
			}
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: read pending: %w", err)
	}
	return out, nil
}

// Get returns one entry.
func (in *Inbox) Get(seq uint64) (*Entry, error) {
	var e *Entry
	err := in.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEvents).Get(seqKey(seq))
		if v == nil {
			return nil
		}
		var err error
		e, err = decodeEntry(v, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: get %d: %w", seq, err)
	}
	return e, nil
}

// Recent returns up to limit entries, newest first; withPayload includes the bodies.
func (in *Inbox) Recent(limit int, withPayload bool) ([]Entry, error) {
	var out []Entry
	err := in.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			e, err := decodeEntry(v, withPayload)
			if err != nil {
				return err
			}
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: read recent: %w", err)
	}
	return out, nil
}

// RecentJobs returns up to limit job records, newest first.
func (in *Inbox) RecentJobs(limit int) ([]Job, error) {
	var out []Job
	err := in.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode job %x: %w", k, err)
			}
			out = append(out, j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: read jobs: %w", err)
	}
	return out, nil
}

// Stored value layout: one state byte, uvarint length of the JSON header,
// the header (Entry without payload), then the raw payload bytes. Keeping the
// payload out of the JSON header avoids re-encoding request bodies.
func encodeEntry(e *Entry) ([]byte, error) {
	payload := e.Payload
	e.Payload = nil
	h, err := json.Marshal(e)
	e.Payload = payload
	if err != nil {
		return nil, fmt.Errorf("inbox: encode entry: %w", err)
	}
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+len(h)+len(payload))
	buf = append(buf, stateByte(e.State))
	buf = binary.AppendUvarint(buf, uint64(len(h)))
	buf = append(buf, h...)
	buf = append(buf, payload...)
	return buf, nil
}

func decodeEntry(v []byte, withPayload bool) (*Entry, error) {
	h, payload, err := splitEntry(v)
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(h, &e); err != nil {
		return nil, fmt.Errorf("inbox: decode entry: %w", err)
	}
	if withPayload {
		e.Payload = append(json.RawMessage(nil), payload...)
	}
	return &e, nil
}

// splitEntry returns a stored value's JSON header and payload.
func splitEntry(v []byte) (header, payload []byte, err error) {
	if len(v) < 2 {
		return nil, nil, errors.New("inbox: short entry")
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n > uint64(len(v)) || 1+w+int(n) > len(v) {
		return nil, nil, errors.New("inbox: corrupt entry header")
	}
	return v[1+w : 1+w+int(n)], v[1+w+int(n):], nil
}

func stateByte(s string) byte {
	switch s {
	case StatePending:
		return 'p'
	case StateFailed:
		return 'f'
	default:
		return 'd'
	}
}

func stateOf(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case 'p':
		return StatePending
	case 'f':
		return StateFailed
	default:
		return StateDone
	}
}

// GetJob returns one job record, or nil.
func (in *Inbox) GetJob(id uint64) (*Job, error) {
	var j *Job
	err := in.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get(seqKey(id))
		if v == nil {
			return nil
		}
		j = &Job{}
		return json.Unmarshal(v, j)
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: get job %d: %w", id, err)
	}
	return j, nil
}
