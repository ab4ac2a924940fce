// Package cache is the host chunk cache: a directory of stored chunks (the
// self-describing, compressed form that storage/chunk writes and the object
// store holds), bounded by total bytes, with least-recently-used eviction.
//
// A restore or fork looks here before the object store, and an upload puts
// what it compressed here, so that forks of one snapshot on one host download
// each chunk at most once (DESIGN §5).
//
// # Layout
//
//	<dir>/.lock                 held (flock) by the one Cache that has dir open
//	<dir>/<2 hex>/<64 hex>      one chunk: its stored bytes, verbatim
//	<dir>/<2 hex>/.tmp-*        a Put in progress (removed at Open)
//
// The file name is the chunk id (chunk.ID.String()); the two-digit directory
// is its first two hex digits, as in the object store's chunks/ prefix. A
// file's mtime is the entry's last use, approximately: it orders entries
// when Open rebuilds the index after a restart.
//
// # Guarantees
//
//   - A file is named only once it is complete: Put writes a temporary file
//     in the same directory and renames it. A reader therefore sees a whole
//     entry or none, never a torn one, whatever runs concurrently.
//   - The cache holds at most MaxBytes of entries (temporary files of Puts in
//     flight aside). Put evicts least-recently-used entries to make room and
//     never evicts the entry it is putting; an entry larger than MaxBytes is
//     not kept (Put returns nil: a cache may decline).
//   - Recency is exact in memory. On disk it is written (mtime) at Put and at
//     most once per touch interval per entry on Get, so the order survives a
//     restart to within that interval without a write per hit.
//   - Open rebuilds the index from the directory: it removes temporary files,
//     files whose names are not valid chunk ids (or sit under the wrong
//     prefix), and files whose header or size cannot be those of a stored
//     chunk (see chunk.ParseHeader), then evicts down to MaxBytes.
//   - The cache does not verify content: Get returns the bytes as stored,
//     and the caller decodes them with chunk.Decode, which checks them
//     against the id. A caller that finds them corrupt calls Remove and
//     fetches the chunk from the store. This is also why Put does not fsync
//     by default (WithSync turns it on): the cache is never the only copy of
//     a chunk, every hit is verified, and the usual result of a power loss
//     with delayed allocation — an empty or short file under its final name —
//     is dropped at Open. A 4 MiB fsync per chunk would instead slow every
//     restore that fills the cache.
//
// # Background fills
//
// A restore offers every chunk it fetched (Offer) instead of putting it:
// the cache copies the chunk into a queue bounded in bytes
// (WithFillQueue) and one goroutine Puts queued chunks, so the second
// write of every chunk is off the restore's critical path. A queued chunk
// is a hit for Get and Has at once (served from memory), so a fork that
// starts right after the restore still fetches nothing; a full queue drops
// the offer and counts it (Stats.FillsDropped) rather than block or grow.
// Flush waits for the queue; Close flushes before it releases the
// directory.
//
// # Concurrency
//
// A Cache is safe for use by many goroutines. The index (a map and a
// container/list in recency order) is guarded by one mutex. Reading and
// writing chunk bytes happen outside it; the metadata operations that change
// which files exist (rename into place, unlink on eviction or Remove) happen
// under it, so that the index and the directory always agree and a
// concurrent Put of an id is never undone by the eviction of its earlier
// copy. One directory is used by one Cache at a time; Open takes an
// exclusive lock on it and Close releases it.
package cache
