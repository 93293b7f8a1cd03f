package inbox

// Compaction, run by the applier every CompactInterval or on Compact: it
// flushes the changed object states of the dedupe index to the objects
// bucket (flushObjects), then removes the finished entries and job records
// beyond the retention (compact). Pending entries are never removed.

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
