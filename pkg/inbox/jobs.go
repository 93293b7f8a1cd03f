package inbox

// The dispatcher's job store. Job records (Controller jobs and local
// ansible-playbook runs, shown by /api/v1/jobs) share the inbox's bbolt file
// and applier only to be written in the same transactions; they are not part
// of the event queue: nothing here touches the events bucket, the WAL or the
// dedupe indexes. Compaction (compact.go) bounds their number.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
