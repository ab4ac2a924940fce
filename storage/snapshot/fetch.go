package snapshot

import (
	"context"

	"github.com/hangar-vm/hangar/storage/chunk"
)

// FetchedChunk is one chunk returned by FetchChunk.
type FetchedChunk struct {
	// Raw is the chunk's verified raw bytes. The caller may read it but
	// must not modify it: a fetch shared with concurrent callers hands
	// them the same slice.
	Raw []byte
	// FromCache is true when the chunk came from the cache, false when it
	// was read from the store.
	FromCache bool
	// Joined is true when this caller took another caller's fetch in
	// flight (nothing was read for it).
	Joined bool
	// Stored is the size of the stored object.
	Stored int
}

// FetchChunk returns chunk id's raw bytes, verified against id, for a
// reader that needs chunks one at a time (lazy restore) rather than whole
// files (Download). It takes the path Download takes: cache first (a
// corrupt cached copy is removed), else the store, then the cache is given
// the stored bytes (Offer when offer and the cache has it, else Put).
// Concurrent fetches of one id on this Repo, Download's included, share
// one fetch.
func (r *Repo) FetchChunk(ctx context.Context, id chunk.ID, cache ChunkCache, offer bool) (FetchedChunk, error) {
	f, _, err := r.fetch(ctx, id, cache, offer)
	if err != nil {
		return FetchedChunk{}, err
	}
	return FetchedChunk{Raw: f.raw, FromCache: f.fromCache, Joined: f.joined, Stored: f.stored}, nil
}
