package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/digests"
)

// Info is what a snapshot records besides its files.
type Info struct {
	// ID is the snapshot id (ValidateID); it names the manifest key.
	ID             string
	SourceInstance string
	Kind           string          // e.g. "standby", "stopped"
	VM             json.RawMessage // VM config; must be valid JSON if set
	Hypervisor     string
	ImageDigest    string
	// Compression is the setting to compress with, recorded as applied.
	Compression compression.Setting
	// Created defaults to the time Upload starts.
	Created time.Time
	// Labels are recorded as Manifest.Labels (ValidateLabels).
	Labels map[string]string
}

// FileSource is one local file to upload under a snapshot file name.
type FileSource struct {
	Name string // ValidateFileName
	Path string
}

// UploadOptions tune an upload. The zero value is usable.
type UploadOptions struct {
	// ChunkSize is the chunk size (chunk.ValidateSize); 0 means 4 MiB.
	ChunkSize int
	// Workers is how many goroutines hash and compress; 0 means GOMAXPROCS.
	Workers int
	// Uploaders is how many chunks are written to the store at once;
	// 0 means 8.
	Uploaders int
	// Buffers bounds the chunks in memory (each about 2 × ChunkSize);
	// 0 means 2 × Workers + Uploaders, enough to keep every stage busy.
	Buffers int
	// Progress, if set, is called after every chunk (see reporter for
	// which goroutine calls it).
	Progress func(Progress)
	// Cache, if set, receives every chunk this upload writes, so that a
	// later restore on this host fetches nothing.
	Cache ChunkCache
	// DigestKey, if set, is the host's digest key (storage/digests). Each
	// file's chunk digests (digests.PathFor its path), if present, valid
	// under this key and for the file's size and ChunkSize, let a chunk
	// whose keyed digest is unchanged take its recorded id without being
	// hashed (Progress.Unchanged); an absent or rejected record, or any
	// changed chunk, takes the normal path. After the commit every file's
	// record is written afresh; failing to write one is only logged.
	DigestKey *digests.Key
}

func (o UploadOptions) withDefaults() UploadOptions {
	if o.ChunkSize == 0 {
		o.ChunkSize = chunk.DefaultSize
	}
	if o.Workers == 0 {
		o.Workers = defaultWorkers()
	}
	if o.Uploaders == 0 {
		o.Uploaders = 8
	}
	if o.Buffers == 0 {
		o.Buffers = 2*o.Workers + o.Uploaders
	}
	return o
}

// Validate reports every problem with o (after defaults) at once.
func (o UploadOptions) Validate() error {
	o = o.withDefaults()
	var errs []error
	if err := chunk.ValidateSize(o.ChunkSize); err != nil {
		errs = append(errs, fmt.Errorf("ChunkSize: %w", err))
	}
	if o.Workers < 0 {
		errs = append(errs, fmt.Errorf("Workers: %d is negative", o.Workers))
	}
	if o.Uploaders < 0 {
		errs = append(errs, fmt.Errorf("Uploaders: %d is negative", o.Uploaders))
	}
	if o.Buffers < 0 {
		errs = append(errs, fmt.Errorf("Buffers: %d is negative", o.Buffers))
	}
	return errors.Join(errs...)
}

// openSource is a FileSource opened for reading.
type openSource struct {
	name, path string
	f          *os.File
	size       int64
}

// Upload stores files as snapshot snap.ID and commits its manifest, which it
// returns. The pipeline (DESIGN §5): chunk.Split reads, elides zero chunks,
// hashes, skips chunks the index knows and compresses on opts.Workers
// goroutines; opts.Uploaders goroutines write the rest with a conditional
// create each (a chunk someone else stored meanwhile counts as
// deduplicated); the manifest is written last, with a conditional create.
// Memory stays within opts.Buffers chunks whatever the file sizes.
//
// Upload is safe to repeat. Cancelled (ctx) or crashed at any point, it
// leaves no manifest, and run again with the same snapshot id it writes
// only the chunks still missing — skipped without a request when the index
// knows them (call LoadIndex first after a restart), otherwise found by
// their refused create. If the snapshot is already committed with the same
// content (an upload that crashed after its commit), Upload returns the
// committed manifest; with other content it fails with
// storage.ErrAlreadyExists.
//
// An upload holds an upload lock in the store while it runs, so garbage
// collection cannot delete chunks it is about to reference; while a GC
// runs, Upload waits for it (see GC).
func (r *Repo) Upload(ctx context.Context, snap Info, files []FileSource, opts UploadOptions) (m *Manifest, err error) {
	start := time.Now()
	defer func() { r.met.observe("upload", start, err) }()
	if err := validateUpload(snap, files, opts); err != nil {
		return nil, fmt.Errorf("upload snapshot %s: %w", snap.ID, err)
	}
	opts = opts.withDefaults()
	codec, err := snap.Compression.Codec()
	if err != nil {
		return nil, fmt.Errorf("upload snapshot %s: %w", snap.ID, err)
	}
	srcs := make([]openSource, 0, len(files))
	defer func() {
		for _, s := range srcs {
			s.f.Close()
		}
	}()
	for _, fs := range files {
		f, err := os.Open(fs.Path)
		if err != nil {
			return nil, fmt.Errorf("upload snapshot %s: %w", snap.ID, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("upload snapshot %s: %w", snap.ID, err)
		}
		if !st.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("upload snapshot %s: %s is not a regular file", snap.ID, fs.Path)
		}
		srcs = append(srcs, openSource{name: fs.Name, path: fs.Path, f: f, size: st.Size()})
	}

	// The store round trips that must precede every decision about a
	// chunk (the manifest check, the upload lock, the index refresh) run
	// while the chunker already reads, digests and hashes: the pipeline
	// waits for them where it first asks the index whether a chunk is
	// stored, so nothing is skipped on a stale index and nothing is
	// written to the store before the lock is held.
	var lock *heldLock
	defer func() {
		if lock != nil {
			lock.release(ctx)
		}
	}()
	prepare := func(ctx context.Context) error {
		var existing *Manifest
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			m, err := r.Manifest(gctx, snap.ID)
			switch {
			case errors.Is(err, storage.ErrNotFound):
			case err != nil:
				return err
			default:
				existing = m
			}
			return nil
		})
		g.Go(func() error {
			l, err := r.lockUpload(gctx, snap.ID)
			lock = l
			return err
		})
		if err := g.Wait(); err != nil {
			return err
		}
		if err := r.refreshIndex(ctx); err != nil {
			return err
		}
		if existing != nil {
			// Its chunks are stored and referenced, so GC keeps them: a
			// retry of a committed upload only reads and hashes.
			r.indexManifest(existing)
		}
		return nil
	}

	created := snap.Created
	if created.IsZero() {
		created = start
	}
	m = &Manifest{
		Schema:         SchemaVersion,
		ID:             snap.ID,
		SourceInstance: snap.SourceInstance,
		Kind:           snap.Kind,
		Created:        created.UTC(),
		VM:             snap.VM,
		Hypervisor:     snap.Hypervisor,
		ImageDigest:    snap.ImageDigest,
		Compression:    Compression{Algorithm: string(snap.Compression.Algorithm), Level: snap.Compression.Level},
		Labels:         snap.Labels,
	}
	newStored, records, err := r.uploadFiles(ctx, m, srcs, codec, opts, prepare)
	if err != nil {
		return nil, fmt.Errorf("upload snapshot %s: %w", snap.ID, err)
	}
	m.Totals = totals(m.Files)
	m.Totals.NewStored = newStored
	if err := lock.check(); err != nil {
		return nil, fmt.Errorf("upload snapshot %s: %w", snap.ID, err)
	}
	m.Committed = time.Now().UTC()
	committed, err := r.commit(ctx, m)
	if err != nil {
		return nil, err
	}
	var unchanged int64
	for i, rec := range records {
		unchanged += rec.unchanged
		r.saveDigests(opts.DigestKey, srcs[i].path, rec.rec)
	}
	r.log.Info("snapshot uploaded", "snapshot", snap.ID, "raw", m.Totals.Raw, "nonzero", m.Totals.NonZero,
		"compressed", m.Totals.Compressed, "new_stored", m.Totals.NewStored, "unchanged", unchanged,
		"duration", time.Since(start).Round(time.Millisecond))
	return committed, nil
}

// fileDigests is one file's chunk digests as an upload computes them, and
// how many raw bytes it recalled from the file's previous record.
type fileDigests struct {
	rec       *digests.Record
	unchanged int64
}

// loadDigests returns the record of the file at path that an upload may
// recall ids from, or nil: absent, rejected (logged) or no key.
func (r *Repo) loadDigests(key *digests.Key, path string, size int64, chunkSize int) *digests.Record {
	if key == nil {
		return nil
	}
	rec, err := key.Load(digests.PathFor(path), size, chunkSize)
	switch {
	case err == nil:
		return rec
	case errors.Is(err, fs.ErrNotExist):
	default:
		r.log.Warn("chunk digests not used; hashing every chunk", "file", path, "err", err)
	}
	return nil
}

// saveDigests writes rec as the record of the file at path. The record is
// an optimisation: a failure is logged, never fatal.
func (r *Repo) saveDigests(key *digests.Key, path string, rec *digests.Record) {
	if key == nil || rec == nil {
		return
	}
	if err := key.Save(digests.PathFor(path), rec); err != nil {
		r.log.Warn("save chunk digests", "file", path, "err", err)
	}
}

func validateUpload(snap Info, files []FileSource, opts UploadOptions) error {
	var errs []error
	if err := ValidateID(snap.ID); err != nil {
		errs = append(errs, err)
	}
	if len(snap.VM) > 0 && !json.Valid(snap.VM) {
		errs = append(errs, errors.New("VM config is not valid JSON"))
	}
	if err := ValidateLabels(snap.Labels); err != nil {
		errs = append(errs, err)
	}
	if _, err := snap.Compression.Codec(); err != nil {
		errs = append(errs, fmt.Errorf("compression %q: %w", snap.Compression, err))
	}
	if len(files) == 0 {
		errs = append(errs, errors.New("no files"))
	}
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := ValidateFileName(f.Name); err != nil {
			errs = append(errs, err)
		} else if seen[f.Name] {
			errs = append(errs, fmt.Errorf("file name %q given twice", f.Name))
		}
		seen[f.Name] = true
	}
	if err := opts.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// indexManifest adds a committed manifest's chunks to the index.
func (r *Repo) indexManifest(m *Manifest) {
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			if c.Hole {
				continue
			}
			e := entry{storedLen: int32(c.StoredLen), codec: codecUnknown}
			if alg, err := compression.ParseAlgorithm(c.Codec); c.Codec != "" && err == nil {
				id, _ := alg.ID()
				e.codec = uint8(id)
			}
			r.index.add(c.ChunkID(), e)
		}
	}
}

// queued is a chunk on its way to an uploader; entry is where its manifest
// record goes.
type queued struct {
	c     *chunk.Chunk
	entry *Chunk
	file  string
}

// uploadFiles runs the pipeline over every file and fills m.Files. It
// returns the stored bytes it wrote and, with opts.DigestKey, each file's
// chunk digests. prepare runs beside the chunker; no chunk is looked up in
// the index, and so none is queued for upload, before it returned nil.
func (r *Repo) uploadFiles(ctx context.Context, m *Manifest, srcs []openSource, codec compression.Codec, opts UploadOptions, prepare func(context.Context) error) (int64, []fileDigests, error) {
	cs := int64(opts.ChunkSize)
	var total Progress
	m.Files = make([]File, len(srcs))
	for i, s := range srcs {
		n := (s.size + cs - 1) / cs
		m.Files[i] = File{Name: s.name, Size: s.size, ChunkSize: opts.ChunkSize, Chunks: make([]Chunk, n)}
		total.ChunksTotal += n
		total.RawTotal += s.size
	}
	prog := &reporter[Progress]{p: total, fn: opts.Progress}
	var newStored atomic.Int64
	var records []fileDigests
	if opts.DigestKey != nil {
		records = make([]fileDigests, len(srcs))
	}

	queue := make(chan queued, opts.Uploaders)
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan struct{})
	g.Go(func() error {
		if err := prepare(gctx); err != nil {
			return err
		}
		close(ready)
		return nil
	})
	known := func(id chunk.ID) bool {
		select {
		case <-ready:
			return r.index.has(id)
		case <-gctx.Done():
			return false // the chunk goes nowhere: its sender sees gctx done
		}
	}
	g.Go(func() error {
		defer close(queue)
		for fi, s := range srcs {
			file := &m.Files[fi]
			copts := chunk.Options{
				ChunkSize: opts.ChunkSize,
				Workers:   opts.Workers,
				Buffers:   opts.Buffers,
				Codec:     codec,
				Known:     known,
			}
			var rec *fileDigests
			if opts.DigestKey != nil {
				rec = &records[fi]
				rec.rec = digests.NewRecord(s.size, opts.ChunkSize)
				copts.Digest = opts.DigestKey.Digest
				if prev := r.loadDigests(opts.DigestKey, s.path, s.size, opts.ChunkSize); prev != nil {
					copts.Recall = prev.Recall
				}
			}
			err := chunk.Split(gctx, s.f, s.size, copts, func(ctx context.Context, c *chunk.Chunk) error {
				e := &file.Chunks[c.Index]
				e.Index, e.RawLen = int(c.Index), c.Len
				if rec != nil && !c.Hole {
					// The id and digest were computed from (or, recalled,
					// checked against) the same bytes: the pair is the next
					// record's entry.
					rec.rec.Chunks[c.Index] = digests.Entry{ID: c.ID, Digest: c.Digest}
				}
				if c.Recalled { // counted in Progress with the chunk's outcome
					rec.unchanged += int64(c.Len)
					r.met.uploadBytes.Add(context.Background(), int64(c.Len), attrUnchanged)
				}
				switch {
				case c.Hole:
					e.Hole = true
					c.Release()
					r.met.uploadBytes.Add(context.Background(), int64(c.Len), attrRaw)
					prog.update(func(p *Progress) { p.ChunksDone++; p.Raw += int64(c.Len) })
					return nil
				case c.Known:
					known, ok := r.index.get(c.ID)
					c.Release()
					if !ok {
						return fmt.Errorf("chunk %d (%s): the chunk index changed during the upload", c.Index, c.ID)
					}
					r.recordDedup(e, c, known, prog)
					return nil
				}
				select {
				case queue <- queued{c: c, entry: e, file: s.name}:
					return nil
				case <-ctx.Done():
					c.Release()
					return ctx.Err()
				}
			})
			if err != nil {
				return fmt.Errorf("file %s: %w", s.name, err)
			}
		}
		return nil
	})
	for range opts.Uploaders {
		g.Go(func() error {
			for {
				var q queued
				select {
				case v, ok := <-queue:
					if !ok {
						return nil
					}
					q = v
				case <-gctx.Done():
					return gctx.Err()
				}
				n, err := r.storeChunk(gctx, q, opts.Cache, prog)
				q.c.Release()
				if err != nil {
					return err
				}
				newStored.Add(n)
			}
		})
	}
	err := g.Wait()
	for q := range queue { // left behind by uploaders that stopped early
		q.c.Release()
	}
	if err != nil {
		return 0, nil, err
	}
	return newStored.Load(), records, nil
}

// recordDedup fills in a chunk the store already holds.
func (r *Repo) recordDedup(e *Chunk, c *chunk.Chunk, known entry, prog *reporter[Progress]) {
	e.ID, e.StoredLen, e.Codec = c.ID.String(), int(known.storedLen), known.codecName()
	r.met.uploadChunks.Add(context.Background(), 1, attrResDedup)
	r.met.uploadBytes.Add(context.Background(), int64(c.Len), attrRaw)
	r.met.uploadBytes.Add(context.Background(), int64(c.Len), attrDeduplicated)
	r.met.uploadBytes.Add(context.Background(), int64(c.Len), attrNonZero)
	r.met.uploadBytes.Add(context.Background(), int64(known.storedLen), attrCompressed)
	prog.update(func(p *Progress) {
		p.ChunksDone++
		p.Raw += int64(c.Len)
		p.NonZero += int64(c.Len)
		p.Compressed += int64(known.storedLen)
		p.Deduplicated += int64(c.Len)
		if c.Recalled {
			p.Unchanged += int64(c.Len)
		}
	})
}

// storeChunk writes one chunk with put-if-absent semantics and records it.
// It returns the stored bytes it wrote (0 when the chunk was already
// there).
func (r *Repo) storeChunk(ctx context.Context, q queued, cache ChunkCache, prog *reporter[Progress]) (int64, error) {
	c := q.c
	if known, ok := r.index.get(c.ID); ok { // stored by a sibling uploader meanwhile
		r.recordDedup(q.entry, c, known, prog)
		return 0, nil
	}
	key := c.ID.Key()
	n := int64(len(c.Stored))
	err := r.store.Create(ctx, key, bytes.NewReader(c.Stored), n)
	switch {
	case err == nil:
		e := entry{storedLen: int32(n), codec: uint8(c.Codec)}
		r.index.add(c.ID, e)
		q.entry.ID, q.entry.StoredLen, q.entry.Codec = c.ID.String(), int(n), c.Codec.String()
	case errors.Is(err, storage.ErrAlreadyExists):
		// Stored by someone else (or by an earlier, interrupted run of
		// this upload). Its stored form may differ from ours (another
		// codec): record what is there.
		oi, err := r.store.Stat(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("file %s chunk %d (%s): stat existing: %w", q.file, c.Index, c.ID, err)
		}
		e := entry{storedLen: int32(oi.Size), codec: codecUnknown}
		if oi.Size == n {
			e.codec = uint8(c.Codec) // same bytes in all likelihood; the header decides anyway
		}
		r.index.add(c.ID, e)
		r.recordDedup(q.entry, c, e, prog)
		r.cachePut(cache, c)
		return 0, nil
	default:
		return 0, fmt.Errorf("file %s chunk %d (%s): %w", q.file, c.Index, c.ID, err)
	}
	r.cachePut(cache, c)
	r.met.uploadChunks.Add(context.Background(), 1, attrResUploaded)
	r.met.uploadBytes.Add(context.Background(), int64(c.Len), attrRaw)
	r.met.uploadBytes.Add(context.Background(), int64(c.Len), attrNonZero)
	r.met.uploadBytes.Add(context.Background(), n, attrCompressed)
	r.met.uploadBytes.Add(context.Background(), n, attrUploaded)
	prog.update(func(p *Progress) {
		p.ChunksDone++
		p.Raw += int64(c.Len)
		p.NonZero += int64(c.Len)
		p.Compressed += n
		p.Uploaded += n
		if c.Recalled {
			p.Unchanged += int64(c.Len)
		}
	})
	return n, nil
}

// cachePut offers a chunk's stored form to the host cache. The cache is an
// optimisation: a failure is logged, never fatal.
func (r *Repo) cachePut(cache ChunkCache, c *chunk.Chunk) {
	if cache == nil {
		return
	}
	if err := cache.Put(c.ID, c.Stored); err != nil {
		r.log.Warn("cache put failed", "chunk", c.ID.String(), "err", err)
	}
}

// totals sums the files' chunk records.
func totals(files []File) Totals {
	var t Totals
	for _, f := range files {
		t.Raw += f.Size
		for _, c := range f.Chunks {
			if c.Hole {
				t.Holes++
				continue
			}
			t.Chunks++
			t.NonZero += int64(c.RawLen)
			t.Compressed += int64(c.StoredLen)
		}
	}
	return t
}

func defaultWorkers() int { return runtime.GOMAXPROCS(0) }
