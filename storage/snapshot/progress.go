package snapshot

import "sync"

// Progress is an upload's state, reported after every chunk. Byte counts:
// Raw is every byte chunked so far (holes included), NonZero the bytes of
// non-hole chunks, Compressed their stored size, Uploaded the stored bytes
// actually written to the store, Deduplicated the raw bytes of chunks not
// written because the store already had them, Unchanged the raw bytes of
// chunks whose id was recalled from the file's chunk digests instead of
// hashed (UploadOptions.DigestKey; most of them are Deduplicated too).
type Progress struct {
	ChunksDone, ChunksTotal int64
	RawTotal                int64 // the size of all files
	Raw, NonZero            int64
	Compressed, Uploaded    int64
	Deduplicated            int64
	Unchanged               int64
}

// DownloadProgress is a download's state, reported after every chunk.
// Chunks and bytes fetched count each distinct chunk once, by where it came
// from (stored bytes); Written counts raw bytes written into the files
// (holes are skipped, never written).
type DownloadProgress struct {
	ChunksDone, ChunksTotal int64 // non-hole chunk positions
	FromCache, FromStore    int64 // stored bytes
	Written                 int64
}

// reporter serializes progress callbacks. The callback runs with the
// reporter's lock held, on whichever pipeline goroutine finished a chunk,
// one call at a time and with monotonically growing counts; it must return
// quickly and must not call back into the Repo.
type reporter[P any] struct {
	mu sync.Mutex
	p  P
	fn func(P)
}

// update changes the state under the lock and reports it.
func (r *reporter[P]) update(f func(*P)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.p)
	if r.fn != nil {
		r.fn(r.p)
	}
}

func (r *reporter[P]) get() P {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}
