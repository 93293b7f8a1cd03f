package inbox

// A minimal accessor for state kept beside the queue (pkg/drstate's bucket):
// such callers use their own buckets and never touch the inbox's.

import bolt "go.etcd.io/bbolt"

// Bolt returns the inbox's bbolt database, for callers that keep their own
// buckets in inbox.db (so that it is backed up and restored with it). They
// must not read or write the events, objects, jobs or quarantine buckets.
func (in *Inbox) Bolt() *bolt.DB { return in.db }
