package inbox

// The applier: the single goroutine that writes to bbolt. It takes the
// entries the WAL already holds and the other operations (Complete, PutJob,
// Compact, Flush) from the aops queue, applies each batch in one transaction
// (commit), retries acknowledged entries it could not write with backoff
// while the inbox refuses new events (commitFailed, retryDelay), and lets the
// WAL truncate once bbolt holds everything (committed).

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

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
