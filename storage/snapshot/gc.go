package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// DefaultGrace is how old an unreferenced chunk must be before GC deletes
// it, by default.
const DefaultGrace = time.Hour

// GCOptions tune a garbage collection. The zero value is usable.
type GCOptions struct {
	// Grace: unreferenced chunks modified less than this long ago are kept
	// (they may belong to an upload whose lock was lost, or one that
	// crashed and will be run again). 0 means DefaultGrace; use a negative
	// value for no grace at all.
	Grace time.Duration
	// DryRun finds what would be deleted without deleting it.
	DryRun bool
	// Workers is how many deletes run at once; 0 means 8.
	Workers int
}

// GCStats report a garbage collection.
type GCStats struct {
	Snapshots  int   // committed manifests read
	Referenced int   // distinct chunk ids they reference
	Chunks     int   // chunk objects listed
	Deleted    int   // unreferenced chunks deleted (or, with DryRun, to delete)
	BytesFreed int64 // their stored size
	KeptYoung  int   // unreferenced chunks younger than the grace period
	Missing    int   // referenced chunks not in the listing (see Verify)
	Foreign    int   // keys under chunks/ that are not chunk keys; never touched
}

// GC deletes every chunk that no committed manifest references and that is
// older than the grace period (DESIGN §3).
//
// Safety against uploads in flight comes from locks in the store: GC writes
// a GC lock and then lists the others; a fresh upload lock (or another GC's)
// makes it withdraw and return an error wrapping ErrBusy, while an upload
// that starts later sees the GC lock and waits for it to go. Locks not
// refreshed for Config.LockStale are left by crashed processes: GC removes
// them. Then GC marks every chunk referenced by every manifest — a manifest
// that cannot be read or parsed aborts the collection, since deleting when
// unsure is the one thing GC must never do — and sweeps: lists chunks/,
// deletes the unreferenced ones older than Grace, in parallel. Before and
// after the sweep it writes a new GC epoch, which tells every Repo to drop
// its index of stored chunks (see LoadIndex).
func (r *Repo) GC(ctx context.Context, opts GCOptions) (stats GCStats, err error) {
	start := time.Now()
	defer func() { r.met.observe("gc", start, err) }()
	grace := opts.Grace
	switch {
	case grace == 0:
		grace = DefaultGrace
	case grace < 0:
		grace = 0
	}
	if opts.Workers < 0 {
		return GCStats{}, fmt.Errorf("gc: Workers %d is negative", opts.Workers)
	}
	if opts.Workers == 0 {
		opts.Workers = 8
	}
	lock, err := r.lockGC(ctx)
	if err != nil {
		return GCStats{}, err
	}
	defer lock.release(ctx)

	refs, nsnap, err := r.mark(ctx)
	if err != nil {
		return GCStats{}, fmt.Errorf("gc: %w (nothing deleted)", err)
	}
	stats.Snapshots, stats.Referenced = nsnap, len(refs)

	var doomed []storage.ObjectInfo
	seen := make(map[chunk.ID]bool, len(refs))
	cutoff := time.Now().Add(-grace)
	err = r.store.List(ctx, "chunks/", func(oi storage.ObjectInfo) error {
		id, ok := parseChunkKey(oi.Key)
		if !ok {
			stats.Foreign++
			return nil
		}
		stats.Chunks++
		if refs[id] {
			seen[id] = true
			return nil
		}
		if oi.ModTime.After(cutoff) {
			stats.KeptYoung++
			return nil
		}
		doomed = append(doomed, oi)
		return nil
	})
	if err != nil {
		return GCStats{}, fmt.Errorf("gc: list chunks: %w (nothing deleted)", err)
	}
	stats.Missing = len(refs) - len(seen)
	if opts.DryRun {
		for _, oi := range doomed {
			stats.Deleted++
			stats.BytesFreed += oi.Size
		}
		r.log.Info("gc dry run", "snapshots", stats.Snapshots, "referenced", stats.Referenced, "would_delete", stats.Deleted, "bytes", stats.BytesFreed)
		return stats, nil
	}
	if len(doomed) > 0 {
		if err := lock.check(); err != nil {
			return stats, fmt.Errorf("gc: %w (nothing deleted)", err)
		}
		// The epoch changes before the first delete (a GC that crashes
		// mid-sweep has still told everyone) and after the last (an index
		// loaded during the sweep may list deleted chunks).
		if err := r.writeEpoch(ctx); err != nil {
			return stats, fmt.Errorf("gc: %w (nothing deleted)", err)
		}
		var mu sync.Mutex
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Workers)
		for _, oi := range doomed {
			if gctx.Err() != nil {
				break
			}
			g.Go(func() error {
				if err := r.store.Delete(gctx, oi.Key); err != nil {
					return fmt.Errorf("delete %s: %w", oi.Key, err)
				}
				r.met.gcDeleted.Add(context.Background(), 1)
				mu.Lock()
				stats.Deleted++
				stats.BytesFreed += oi.Size
				mu.Unlock()
				return nil
			})
		}
		err := g.Wait()
		if eerr := r.writeEpoch(ctx); eerr != nil && err == nil {
			err = eerr
		}
		r.index.reset() // this repo's own index may list deleted chunks
		if err != nil {
			return stats, fmt.Errorf("gc: %w (%d chunks deleted before the error)", err, stats.Deleted)
		}
	}
	r.log.Info("gc done", "snapshots", stats.Snapshots, "referenced", stats.Referenced, "chunks", stats.Chunks,
		"deleted", stats.Deleted, "bytes_freed", stats.BytesFreed, "kept_young", stats.KeptYoung,
		"missing", stats.Missing, "duration", time.Since(start).Round(time.Millisecond))
	return stats, nil
}

// mark reads every committed manifest and returns the set of chunk ids
// they reference. Any manifest that cannot be read or parsed is an error.
func (r *Repo) mark(ctx context.Context) (map[chunk.ID]bool, int, error) {
	ids, err := r.snapshotIDs(ctx)
	if err != nil {
		return nil, 0, err
	}
	refs := make(map[chunk.ID]bool)
	n := 0
	for _, id := range ids {
		m, err := r.Manifest(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since the listing: its chunks are garbage now
		}
		if err != nil {
			return nil, 0, err
		}
		n++
		for _, f := range m.Files {
			for _, c := range f.Chunks {
				if !c.Hole {
					refs[c.ChunkID()] = true
				}
			}
		}
	}
	return refs, n, nil
}
