// Package blockmover copies one large file (a VM's disk.img) between the two
// NFS hosts sending only the blocks that changed since the last sync.
//
// A Sender on the primary and a Receiver on the DR host speak a small
// versioned protocol over one byte stream (stdin/stdout of `ssh host
// ocpdr-host blocksync receive ...` in production, pipes in tests):
//
//   - change detection (table.go, extents.go): a per-block xxh3-128 digest
//     table is kept beside the file at both ends, so the DR side is never
//     read while both tables agree; where the previous reflink capture of the
//     file is given, FIEMAP extent maps tell which blocks cannot have changed
//     and those are not read at all. Anything missing, stale or damaged falls
//     back to a full digest pass (the receiver digests its copy), never to a
//     wrong result;
//   - holes (holes.go) are found with SEEK_DATA/SEEK_HOLE, never sent, and
//     punched at DR;
//   - the receiver writes into a reflink clone of its previous file under a
//     reserved temporary name, verifies the digest of what it wrote, applies
//     metadata (meta.go), fsyncs and renames it over the target: an
//     interrupted transfer leaves the previous version whole.
//
// Every name the package creates starts with ".ocpdr", which the sync's rsync
// runs exclude at every depth.
package blockmover
