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

// ReportBucketName is the bbolt bucket of the newest report of each kind.
var ReportBucketName = []byte("drstate_reports")

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

// LoadReports reads the newest report of each kind; one that does not decode
// is skipped with an error naming it after the others are read.
func (b BoltStore) LoadReports() ([]*Report, error) {
	var out []*Report
	var bad error
	err := b.DB.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(ReportBucketName)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			r := &Report{}
			if err := json.Unmarshal(v, r); err != nil || r.Kind == "" {
				bad = fmt.Errorf("report %q does not decode: %v", k, err)
				return nil
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ReportBucketName, err)
	}
	return out, bad
}

// PutReport writes the newest report of its kind.
func (b BoltStore) PutReport(r *Report) error {
	enc, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode the %s report: %w", r.Kind, err)
	}
	err = b.DB.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(ReportBucketName)
		if err != nil {
			return err
		}
		return bk.Put([]byte(r.Kind), enc)
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", ReportBucketName, err)
	}
	return nil
}
