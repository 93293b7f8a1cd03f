package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults of Options.
const (
	DefaultSize     = 256 << 20
	DefaultRecords  = 2048
	DefaultInterval = 100 * time.Millisecond
)

// ErrStopped is returned by Freeze on a stopped writer.
var ErrStopped = errors.New("guest writer stopped")

// Options describe one simulated guest disk.
type Options struct {
	Path string // the disk image; created (sparse) when absent
	// Size and Records lay out a new image (defaults DefaultSize,
	// DefaultRecords). An image that already holds a commit record keeps
	// its layout, and the writer continues from its committed generation.
	Size    int64
	Records int
	// Interval is the time one generation takes, its writes spread over
	// it (default DefaultInterval).
	Interval time.Duration
	Log      *zap.Logger
}

type state int

const (
	running  state = iota
	freezing       // finishing the generation in progress
	frozen
	stopping
	stopped
)

// Status is a snapshot of a writer's counters.
type Status struct {
	Path       string    `json:"path"`
	Generation uint64    `json:"generation"` // last committed generation
	Frozen     bool      `json:"frozen"`
	FrozenAt   time.Time `json:"frozenAt,omitzero"`
	Freezes    int       `json:"freezes"`
	Thaws      int       `json:"thaws"`
	AutoThaws  int       `json:"autoThaws"`
	Stopped    bool      `json:"stopped"`
	Err        string    `json:"error,omitempty"`
}

// Writer is a running simulated guest: it writes generation after
// generation into its disk image until stopped, and can be frozen (as the
// guest agent's fsfreeze does) and thawed.
type Writer struct {
	o    Options
	f    *os.File
	lay  layout
	log  *zap.Logger
	kick chan struct{} // wakes the loop to re-read the state
	done chan struct{} // closed when the loop has ended

	// ioMu is held for each record write, so that a copy taken under it
	// sees whole records (as a reflink clone, which locks the inode, does).
	ioMu sync.Mutex

	mu       sync.Mutex
	state    state
	frozenCh chan struct{} // closed when the pending freeze is reached
	epoch    uint64        // counts freezes, so a stale watchdog does nothing
	watchdog *time.Timer
	gen      uint64
	written  int // records of the generation in progress written so far
	st       Status
	err      error
}

// Start opens (or creates) the image and starts writing.
func Start(o Options) (*Writer, error) {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	f, err := os.OpenFile(o.Path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	lay, gen, err := prepare(f, o)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("disk image %s: %w", o.Path, err)
	}
	w := &Writer{o: o, f: f, lay: lay, gen: gen, log: o.Log.With(zap.String("disk", o.Path)),
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.st.Path = o.Path
	w.log.Info("guest writer started", zap.Uint64("generation", gen), zap.Int("records", lay.records),
		zap.Int64("size", lay.size), zap.Duration("interval", o.Interval))
	go w.loop()
	return w, nil
}

// prepare returns the image's layout and committed generation, extending a
// new image (sparsely) to its size.
func prepare(f *os.File, o Options) (layout, uint64, error) {
	st, err := f.Stat()
	if err != nil {
		return layout{}, 0, fmt.Errorf("stat: %w", err)
	}
	if c, err := readCommit(f, st.Size()); err == nil {
		return c.l, c.gen, nil
	}
	size, records := o.Size, o.Records
	if size <= 0 {
		size = DefaultSize
	}
	if records <= 0 {
		records = DefaultRecords
	}
	size = max(size, st.Size())
	lay, err := newLayout(size, records)
	if err != nil {
		return layout{}, 0, err
	}
	if err := f.Truncate(lay.size); err != nil {
		return layout{}, 0, fmt.Errorf("size: %w", err)
	}
	return lay, 0, nil
}

// Path returns the disk image's path.
func (w *Writer) Path() string { return w.o.Path }

// Status returns the writer's counters.
func (w *Writer) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.st
	s.Generation, s.Frozen, s.Stopped = w.gen, w.state == frozen, w.state == stopped
	if w.err != nil {
		s.Err = w.err.Error()
	}
	return s
}

func (w *Writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Freeze finishes the generation in progress (its remaining records without
// pacing, then the commit record), fsyncs and stops writing; it returns once
// the guest is frozen. Freezing a frozen guest only re-arms the watchdog.
// With unfreezeTimeout > 0 the guest thaws by itself that long after the
// freeze (KubeVirt's unfreezeTimeout). When ctx ends first the freeze is
// abandoned (the guest keeps running) and ctx's error returned.
func (w *Writer) Freeze(ctx context.Context, unfreezeTimeout time.Duration) error {
	w.mu.Lock()
	switch w.state {
	case stopping, stopped:
		w.mu.Unlock()
		return ErrStopped
	case running:
		w.state, w.frozenCh = freezing, make(chan struct{})
		w.wake()
	}
	ch := w.frozenCh
	w.mu.Unlock()
	select {
	case <-ch:
	case <-w.done:
		return errors.Join(ErrStopped, w.Err())
	case <-ctx.Done():
		w.abandon(ch)
		return fmt.Errorf("freeze %s: %w", w.o.Path, ctx.Err())
	}
	return w.armWatchdog(ch, unfreezeTimeout)
}

func (w *Writer) armWatchdog(ch chan struct{}, timeout time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != frozen || w.frozenCh != ch {
		return fmt.Errorf("freeze %s: thawed before the freeze completed", w.o.Path)
	}
	if w.watchdog != nil {
		w.watchdog.Stop()
		w.watchdog = nil
	}
	if timeout > 0 {
		epoch := w.epoch
		w.watchdog = time.AfterFunc(timeout, func() { w.autoThaw(epoch) })
	}
	return nil
}

// abandon undoes a freeze whose caller gave up.
func (w *Writer) abandon(ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frozenCh == ch && (w.state == freezing || w.state == frozen) {
		w.resume()
	}
}

// Thaw resumes writing; it reports whether the guest was frozen (or
// freezing).
func (w *Writer) Thaw() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != frozen && w.state != freezing {
		return false
	}
	w.st.Thaws++
	w.resume()
	w.log.Info("guest thawed", zap.Uint64("generation", w.gen))
	return true
}

func (w *Writer) autoThaw(epoch uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != frozen || w.epoch != epoch {
		return
	}
	w.st.AutoThaws++
	w.resume()
	w.log.Info("guest thawed by the unfreeze watchdog", zap.Uint64("generation", w.gen))
}

// resume (w.mu held) goes back to running.
func (w *Writer) resume() {
	if w.state == freezing {
		close(w.frozenCh) // waiting Freeze calls find the guest running
	}
	if w.watchdog != nil {
		w.watchdog.Stop()
		w.watchdog = nil
	}
	w.state, w.st.FrozenAt = running, time.Time{}
	w.wake()
}

// Stop finishes the generation in progress, fsyncs, closes the image and
// returns the first write error, if any.
func (w *Writer) Stop() error {
	w.mu.Lock()
	if w.state != stopped {
		if w.state == freezing {
			close(w.frozenCh)
		}
		w.state = stopping
		w.wake()
	}
	w.mu.Unlock()
	<-w.done
	return w.Err()
}

// Err returns the write error that ended the writer, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

type action int

const (
	actWrite action = iota
	actWait
	actStop
)

func (w *Writer) loop() {
	defer close(w.done)
	for {
		switch act, err := w.next(); {
		case err != nil:
			w.end(err)
			return
		case act == actStop:
			w.end(nil)
			return
		case act == actWait:
			<-w.kick
		default:
			if err := w.generation(); err != nil {
				w.end(err)
				return
			}
		}
	}
}

// next decides, between generations, what the loop does; a pending freeze
// is reached here (fsync, frozen).
func (w *Writer) next() (action, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch w.state {
	case running:
		return actWrite, nil
	case freezing:
		if err := w.f.Sync(); err != nil {
			return actStop, fmt.Errorf("fsync: %w", err)
		}
		w.state, w.epoch = frozen, w.epoch+1
		w.st.Freezes++
		w.st.FrozenAt = time.Now()
		close(w.frozenCh)
		w.log.Info("guest frozen", zap.Uint64("generation", w.gen))
		return actWait, nil
	case frozen:
		return actWait, nil
	default:
		return actStop, nil
	}
}

func (w *Writer) end(err error) {
	err = errors.Join(err, w.f.Sync(), w.f.Close())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watchdog != nil {
		w.watchdog.Stop()
	}
	if w.state == freezing {
		close(w.frozenCh)
	}
	w.state, w.err = stopped, err
	if err != nil {
		w.log.Error("guest writer failed", zap.Error(err))
		return
	}
	w.log.Info("guest writer stopped", zap.Uint64("generation", w.gen))
}

// hurry reports whether a freeze or stop waits for this generation.
func (w *Writer) hurry() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state != running
}

// generation writes every record with the next generation, paced over the
// interval unless a freeze or stop is waiting, then the commit record.
func (w *Writer) generation() error {
	w.mu.Lock()
	g := w.gen + 1
	w.mu.Unlock()
	buf := make([]byte, page)
	start := time.Now()
	batch := w.batch()
	for i := 0; i < w.lay.records; i++ {
		encodeRecord(buf, i, w.lay.records, g)
		if err := w.writePage(buf, w.lay.recordOffset(i)); err != nil {
			return fmt.Errorf("write record %d: %w", i, err)
		}
		w.mu.Lock()
		w.written = i + 1
		w.mu.Unlock()
		if (i+1)%batch == 0 && !w.hurry() {
			w.pace(start.Add(w.o.Interval * time.Duration(i+1) / time.Duration(w.lay.records)))
		}
	}
	encodeCommit(buf, w.lay, g, time.Now().UnixNano())
	if err := w.writePage(buf, w.lay.commitOffset()); err != nil {
		return fmt.Errorf("write commit record: %w", err)
	}
	w.mu.Lock()
	w.gen, w.written = g, 0
	w.mu.Unlock()
	return nil
}

// batch is how many records are written between pauses: pauses of at least
// ~5 ms, as shorter sleeps are not kept.
func (w *Writer) batch() int {
	slices := int(w.o.Interval / (5 * time.Millisecond))
	slices = max(1, min(slices, w.lay.records))
	return max(1, w.lay.records/slices)
}

func (w *Writer) writePage(buf []byte, off int64) error {
	w.ioMu.Lock()
	defer w.ioMu.Unlock()
	_, err := w.f.WriteAt(buf, off)
	return err
}

// pace sleeps until deadline, or until a freeze or stop wakes the writer.
func (w *Writer) pace(deadline time.Time) {
	d := time.Until(deadline)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.kick:
	}
}
