package inbox

// Readers of the stored entries (Pending for the dispatcher, Get and Recent
// for /api/v1). They read bbolt in their own read-only transactions, so they
// see an append once the applier has written it (Flush waits for that).

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

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
