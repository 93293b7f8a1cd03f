package inbox

// The write side of Append: the group-commit leader (Append, lead) takes a
// batch of queued appends, checks them against the in-memory dedupe indexes
// and assigns their sequences (indexBatch), syncs the new entries to the
// write-ahead log and acknowledges them (writeBatch), and reverts the index
// changes when the log refuses the batch (undoIndex). bbolt is written later
// by the applier (apply.go).

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

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
