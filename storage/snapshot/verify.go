package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// VerifyOptions tune a verification. The zero value is usable.
type VerifyOptions struct {
	// Snapshots limits the check to these snapshot ids; empty means all.
	Snapshots []string
	// Workers is how many chunks are read and decoded at once; 0 means 8.
	Workers int
}

// Ref is one place a chunk is used.
type Ref struct {
	Snapshot string `json:"snapshot"`
	File     string `json:"file"`
	Index    int    `json:"index"`
}

// ChunkProblem is a chunk that is missing or does not decode to its id,
// with every place that references it.
type ChunkProblem struct {
	ID   string `json:"id"`
	Err  string `json:"error"`
	Refs []Ref  `json:"refs"`
}

// ManifestProblem is a snapshot whose manifest cannot be read or parsed.
type ManifestProblem struct {
	Snapshot string `json:"snapshot"`
	Err      string `json:"error"`
}

// VerifyReport is what Verify found. OK reports whether it found nothing
// wrong.
type VerifyReport struct {
	Snapshots int               `json:"snapshots"`
	Chunks    int               `json:"chunks"`       // distinct chunks checked
	Bytes     int64             `json:"stored_bytes"` // stored bytes read
	Missing   []ChunkProblem    `json:"missing,omitempty"`
	Corrupt   []ChunkProblem    `json:"corrupt,omitempty"`
	Manifests []ManifestProblem `json:"bad_manifests,omitempty"`
}

// OK reports whether the verification found no problem.
func (v *VerifyReport) OK() bool {
	return len(v.Missing) == 0 && len(v.Corrupt) == 0 && len(v.Manifests) == 0
}

// Verify re-reads every chunk referenced by the chosen snapshots (each
// distinct id once, opts.Workers at a time) and decodes it against its id.
// Missing and corrupt chunks, and manifests that do not parse, are
// reported in the VerifyReport, with every snapshot, file and chunk index
// that references each bad chunk. Verify's error is for failures to check
// at all (listing, a store error other than not found, ctx).
func (r *Repo) Verify(ctx context.Context, opts VerifyOptions) (report VerifyReport, err error) {
	start := time.Now()
	defer func() { r.met.observe("verify", start, err) }()
	if opts.Workers < 0 {
		return VerifyReport{}, fmt.Errorf("verify: Workers %d is negative", opts.Workers)
	}
	if opts.Workers == 0 {
		opts.Workers = 8
	}
	ids := opts.Snapshots
	if len(ids) == 0 {
		if ids, err = r.snapshotIDs(ctx); err != nil {
			return VerifyReport{}, fmt.Errorf("verify: %w", err)
		}
	}
	refs := make(map[chunk.ID][]Ref)
	var order []chunk.ID
	for _, id := range ids {
		m, err := r.Manifest(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return VerifyReport{}, fmt.Errorf("verify: %w", ctx.Err())
			}
			report.Manifests = append(report.Manifests, ManifestProblem{Snapshot: id, Err: err.Error()})
			continue
		}
		report.Snapshots++
		for _, f := range m.Files {
			for _, c := range f.Chunks {
				if c.Hole {
					continue
				}
				cid := c.ChunkID()
				if _, ok := refs[cid]; !ok {
					order = append(order, cid)
				}
				refs[cid] = append(refs[cid], Ref{Snapshot: id, File: f.Name, Index: c.Index})
			}
		}
	}

	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	for _, id := range order {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			buf := storedPool.Get().(*bytes.Buffer)
			defer func() { buf.Reset(); storedPool.Put(buf) }()
			err := r.readChunk(gctx, id, buf)
			var raw []byte
			if err == nil {
				raw, err = chunk.Decode(getRaw(), buf.Bytes(), id)
				putRaw(raw)
			}
			mu.Lock()
			defer mu.Unlock()
			report.Chunks++
			report.Bytes += int64(buf.Len())
			switch {
			case err == nil:
			case errors.Is(err, storage.ErrNotFound):
				report.Missing = append(report.Missing, ChunkProblem{ID: id.String(), Err: err.Error(), Refs: refs[id]})
			case errors.Is(err, storage.ErrCorrupt):
				report.Corrupt = append(report.Corrupt, ChunkProblem{ID: id.String(), Err: err.Error(), Refs: refs[id]})
			default:
				return fmt.Errorf("verify chunk %s: %w", id, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return VerifyReport{}, fmt.Errorf("verify: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return VerifyReport{}, fmt.Errorf("verify: %w", err)
	}
	byID := func(a, b ChunkProblem) int { return strings.Compare(a.ID, b.ID) }
	slices.SortFunc(report.Missing, byID)
	slices.SortFunc(report.Corrupt, byID)
	r.log.Info("verify done", "snapshots", report.Snapshots, "chunks", report.Chunks, "missing", len(report.Missing),
		"corrupt", len(report.Corrupt), "bad_manifests", len(report.Manifests), "duration", time.Since(start).Round(time.Millisecond))
	return report, nil
}
