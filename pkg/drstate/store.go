package drstate

// Persistence of the per-volume state: a Store interface and its bbolt
// implementation, one JSON value per PV in its own bucket (the receiver uses
// a bucket of its inbox.db, so the state lives and is backed up with it).

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Store persists volumes.
type Store interface {
	Load() ([]*Volume, error)
	Put(vols []*Volume) error
}

// BucketName is the bbolt bucket BoltStore uses by default.
var BucketName = []byte("drstate_volumes")

// BoltStore keeps volumes in a bucket of a bbolt database.
type BoltStore struct {
	DB     *bolt.DB
	Bucket []byte // default BucketName
}

func (b BoltStore) bucket() []byte {
	if len(b.Bucket) == 0 {
		return BucketName
	}
	return b.Bucket
}

// Load reads every volume; a value that does not decode is skipped with an
// error naming it after the others are read.
func (b BoltStore) Load() ([]*Volume, error) {
	var out []*Volume
	var bad error
	err := b.DB.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(b.bucket())
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			vol := &Volume{}
			if err := json.Unmarshal(v, vol); err != nil || vol.Name == "" {
				bad = fmt.Errorf("volume %q does not decode: %v", k, err)
				return nil
			}
			out = append(out, vol)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", b.bucket(), err)
	}
	return out, bad
}

// Put writes volumes in one transaction.
func (b BoltStore) Put(vols []*Volume) error {
	err := b.DB.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(b.bucket())
		if err != nil {
			return err
		}
		for _, v := range vols {
			enc, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if err := bk.Put([]byte(v.Name), enc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", b.bucket(), err)
	}
	return nil
}
