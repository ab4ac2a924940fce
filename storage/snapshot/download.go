package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/digests"
)

// DownloadOptions tune a download. The zero value is usable.
type DownloadOptions struct {
	// Concurrency is how many chunks are fetched, verified and written at
	// once; 0 means 8.
	Concurrency int
	// Cache, if set, is asked for every chunk first, and receives every
	// chunk fetched from the store (Put, in the fetch worker).
	Cache ChunkCache
	// BackgroundCacheFill hands fetched chunks to a Cache that has
	// Offer(chunk.ID, []byte) bool (storage/cache.Cache does) instead of
	// Put: the cache copies each into a bounded queue, serves it from
	// memory at once and writes it from one goroutine, so the download
	// never waits for the cache's disk write (see cacheOfferer); a full
	// queue drops the fill. Off by default: on the benchmark machine it
	// made no cold restore faster and cost CPU (the queue's copies are
	// fresh memory each restore), see docs/benchmarks.md.
	BackgroundCacheFill bool
	// Progress, if set, is called after every chunk (see reporter).
	Progress func(DownloadProgress)
	// NoSync skips the fsync of the files (and of dir) before they are
	// renamed into place. The default (false) makes a renamed file
	// durable: after a host crash, a file under its final name is whole.
	// With NoSync the files are just as complete when Download returns
	// and nothing partial is ever visible while the host runs, but after
	// a crash a renamed file may have lost chunks that were still in the
	// page cache. Set it only when the caller does not trust restored
	// files across a crash anyway (it records completion itself, or
	// downloads again after a restart): the store holds the snapshot, so
	// the files are re-creatable. Saves the disk write wait, about half a
	// second per GiB of data on the benchmark machine.
	NoSync bool
	// DigestKey, if set, is the host's digest key (storage/digests): the
	// keyed digest of every chunk is computed as it is written, and once
	// the files are renamed into place each gets its chunk digests
	// (digests.PathFor), so that uploading it again after a guest ran on
	// it hashes only the chunks that changed (UploadOptions.DigestKey).
	// Failing to write a record is only logged.
	DigestKey *digests.Key
	// Exclude names files of the manifest not to download (a lazy restore
	// serves the memory file itself, storage/snapshot/lazyfs). The whole
	// manifest is still validated; names it does not have are ignored.
	Exclude []string
}

// DownloadStats say where a download's chunks came from. A chunk id that
// appears several times in the snapshot is fetched once and counted once in
// ChunksFromCache, ChunksFromStore or ChunksShared; Reused counts its other
// positions. A fetch shared by concurrent downloads on one Repo (forks) is
// counted in the From* fields of the download that ran it only; the others
// count it in ChunksShared, so that summing stats over downloads counts
// every fetch once.
type DownloadStats struct {
	Files           int
	ChunksFromCache int
	ChunksFromStore int
	ChunksShared    int   // taken from another download's fetch in flight
	BytesFromCache  int64 // stored bytes
	BytesFromStore  int64 // stored bytes
	Reused          int
	Holes           int
	// BytesWritten counts the raw bytes of the chunks restored (each
	// position once); hole chunks are never written, and zero pages
	// inside a chunk are left as holes too, so fewer bytes may reach
	// the disk.
	BytesWritten int64
}

// target is one position of a chunk in the files being written.
type target struct {
	file  int
	index int
	off   int64
}

// fetched is a verified chunk: its raw bytes and where they came from.
type fetched struct {
	raw       []byte
	fromCache bool
	stored    int
	joined    bool // this caller took another's fetch in flight (per caller: set on its copy)
}

// download is one Download call's state.
type download struct {
	r     *Repo
	m     *Manifest
	opts  DownloadOptions
	files []*os.File

	mu    sync.Mutex // guards stats and prog
	stats DownloadStats
	prog  reporter[DownloadProgress]
	// records are the files' chunk digests (opts.DigestKey): each entry is
	// written by the one goroutine that writes its chunk.
	records []*digests.Record
}

// Download writes the files of snapshot m into dir, each as dir/<name>.
//
// Each file is first written to a temporary file in dir
// (".<name>.partial-*"), sized to the file (so it is sparse) and filled
// with WriteAt at each chunk's offset; holes are never written and stay
// holes, and so are the all-zero pages inside a chunk (chunk.WriteSparse). Chunks are fetched opts.Concurrency at a time: from opts.Cache
// first, else from the store (then offered to the cache); each is verified
// against its id (chunk.Decode) before a byte of it is written. A corrupt
// cached copy is removed from the cache and fetched from the store instead;
// a corrupt or missing stored chunk fails the download with an error that
// names the snapshot, file, chunk index and id, and wraps
// storage.ErrCorrupt or storage.ErrNotFound. A chunk id that occurs several
// times is fetched once, and concurrent downloads on one Repo (forks of
// one snapshot on one host) fetch a chunk they both need once.
//
// On success every file is fsynced (unless opts.NoSync) and renamed to its
// name (replacing a file there); on any error, cancellation included, the
// temporary files are removed and nothing is left in dir.
func (r *Repo) Download(ctx context.Context, m *Manifest, dir string, opts DownloadOptions) (stats DownloadStats, err error) {
	start := time.Now()
	defer func() { r.met.observe("download", start, err) }()
	if m == nil {
		return DownloadStats{}, errors.New("download: nil manifest")
	}
	if err := m.Validate(); err != nil {
		return DownloadStats{}, fmt.Errorf("download snapshot %s: %w", m.ID, err)
	}
	if len(opts.Exclude) > 0 {
		m = m.without(opts.Exclude)
	}
	if opts.Concurrency < 0 {
		return DownloadStats{}, fmt.Errorf("download snapshot %s: Concurrency %d is negative", m.ID, opts.Concurrency)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 8
	}
	if st, err := os.Stat(dir); err != nil {
		return DownloadStats{}, fmt.Errorf("download snapshot %s: %w", m.ID, err)
	} else if !st.IsDir() {
		return DownloadStats{}, fmt.Errorf("download snapshot %s: %s is not a directory", m.ID, dir)
	}

	d := &download{r: r, m: m, opts: opts, files: make([]*os.File, 0, len(m.Files))}
	d.prog.fn = opts.Progress
	d.stats.Files = len(m.Files)
	defer func() {
		if err != nil {
			d.removeTemps()
		}
	}()
	for _, f := range m.Files {
		if opts.DigestKey != nil {
			d.records = append(d.records, digests.NewRecord(f.Size, f.ChunkSize))
		}
		tmp, err := os.CreateTemp(dir, "."+f.Name+".partial-*")
		if err != nil {
			return DownloadStats{}, fmt.Errorf("download snapshot %s: %w", m.ID, err)
		}
		d.files = append(d.files, tmp)
		if err := tmp.Truncate(f.Size); err != nil {
			return DownloadStats{}, fmt.Errorf("download snapshot %s: file %s: %w", m.ID, f.Name, err)
		}
	}

	// Group positions by chunk id, keeping first-seen order so that reads
	// and writes go roughly front to back.
	var order []chunk.ID
	targets := make(map[chunk.ID][]target)
	for fi, f := range m.Files {
		for _, c := range f.Chunks {
			if c.Hole {
				d.stats.Holes++
				continue
			}
			id := c.ChunkID()
			if _, ok := targets[id]; !ok {
				order = append(order, id)
			}
			targets[id] = append(targets[id], target{file: fi, index: c.Index, off: int64(c.Index) * int64(f.ChunkSize)})
			d.prog.p.ChunksTotal++
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for _, id := range order {
		if gctx.Err() != nil {
			break
		}
		ts := targets[id]
		g.Go(func() error { return d.one(gctx, id, ts) })
	}
	if err := g.Wait(); err != nil {
		return DownloadStats{}, err
	}
	if err := ctx.Err(); err != nil {
		return DownloadStats{}, fmt.Errorf("download snapshot %s: %w", m.ID, err)
	}
	if err := d.finish(dir, !opts.NoSync); err != nil {
		return DownloadStats{}, err
	}
	for i, rec := range d.records {
		r.saveDigests(opts.DigestKey, filepath.Join(dir, m.Files[i].Name), rec)
	}
	r.log.Info("snapshot downloaded", "snapshot", m.ID, "dir", dir,
		"from_cache", d.stats.ChunksFromCache, "from_store", d.stats.ChunksFromStore,
		"written", d.stats.BytesWritten, "duration", time.Since(start).Round(time.Millisecond))
	return d.stats, nil
}

// one fetches a chunk and writes it at each of its positions.
func (d *download) one(ctx context.Context, id chunk.ID, ts []target) error {
	first := ts[0]
	name := func(t target) string {
		return fmt.Sprintf("download snapshot %s: file %s chunk %d (%s)", d.m.ID, d.m.Files[t.file].Name, t.index, id)
	}
	f, shared, err := d.r.fetch(ctx, id, d.opts.Cache, d.opts.BackgroundCacheFill)
	if err != nil {
		return fmt.Errorf("%s: %w", name(first), err)
	}
	if !shared {
		defer putRaw(f.raw)
	}
	var digest chunk.Digest
	if d.opts.DigestKey != nil {
		// Of the bytes just verified against id, which are the bytes
		// written: the pair is the file's record entry.
		digest = d.opts.DigestKey.Digest(f.raw)
	}
	for _, t := range ts {
		if err := chunk.WriteSparse(d.files[t.file], f.raw, t.off); err != nil {
			return fmt.Errorf("%s: %w", name(t), err)
		}
		if d.records != nil {
			d.records[t.file].Chunks[t.index] = digests.Entry{ID: id, Digest: digest}
		}
	}
	d.mu.Lock()
	switch {
	case f.joined:
		d.stats.ChunksShared++
	case f.fromCache:
		d.stats.ChunksFromCache++
		d.stats.BytesFromCache += int64(f.stored)
	default:
		d.stats.ChunksFromStore++
		d.stats.BytesFromStore += int64(f.stored)
	}
	d.stats.Reused += len(ts) - 1
	written := int64(len(f.raw)) * int64(len(ts))
	d.stats.BytesWritten += written
	d.mu.Unlock()
	d.prog.update(func(p *DownloadProgress) {
		p.ChunksDone += int64(len(ts))
		p.Written += written
		if f.fromCache {
			p.FromCache += int64(f.stored)
		} else {
			p.FromStore += int64(f.stored)
		}
	})
	return nil
}

// finish makes the temporary files durable (if sync) and gives them their
// names.
func (d *download) finish(dir string, sync bool) error {
	if sync {
		for i, f := range d.files {
			if err := f.Sync(); err != nil {
				return fmt.Errorf("download snapshot %s: file %s: %w", d.m.ID, d.m.Files[i].Name, err)
			}
		}
	}
	for i, f := range d.files {
		if err := f.Close(); err != nil {
			return fmt.Errorf("download snapshot %s: file %s: %w", d.m.ID, d.m.Files[i].Name, err)
		}
	}
	for i, f := range d.files {
		if err := os.Rename(f.Name(), filepath.Join(dir, d.m.Files[i].Name)); err != nil {
			return fmt.Errorf("download snapshot %s: %w", d.m.ID, err)
		}
	}
	d.files = nil
	if !sync {
		return nil
	}
	if df, err := os.Open(dir); err == nil {
		err = df.Sync()
		df.Close()
		if err != nil {
			return fmt.Errorf("download snapshot %s: sync %s: %w", d.m.ID, dir, err)
		}
	}
	return nil
}

func (d *download) removeTemps() {
	for _, f := range d.files {
		f.Close()
		os.Remove(f.Name())
	}
}

// fetch returns chunk id's raw bytes, verified: from cache if it has a good
// copy, else from the store (and then into cache). Concurrent fetches of
// one id on this Repo share one fetch; shared reports that the result may
// be in other hands too, so its buffer must not be recycled.
func (r *Repo) fetch(ctx context.Context, id chunk.ID, cache ChunkCache, offer bool) (fetched, bool, error) {
	// A shared fetch runs under the first caller's ctx: if that caller
	// gives up, the others try again under their own.
	for attempt := 0; ; attempt++ {
		ran := false // the function runs in the caller that leads the flight
		v, err, shared := r.fetches.Do(id.String(), func() (any, error) {
			ran = true
			return r.fetchOne(ctx, id, cache, offer)
		})
		if err != nil {
			if ctx.Err() == nil && attempt < 3 && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				continue
			}
			return fetched{}, false, err
		}
		f := v.(fetched)
		f.joined = !ran
		return f, shared, nil
	}
}

func (r *Repo) fetchOne(ctx context.Context, id chunk.ID, cache ChunkCache, offer bool) (fetched, error) {
	if cache != nil {
		stored, err := cache.Get(id)
		if err == nil {
			raw, derr := chunk.Decode(getRaw(), stored, id)
			if derr == nil {
				r.met.downloadChunks.Add(ctx, 1, attrSrcCache)
				r.met.downloadBytes.Add(ctx, int64(len(stored)), attrSrcCache)
				return fetched{raw: raw, fromCache: true, stored: len(stored)}, nil
			}
			putRaw(raw)
			r.log.Warn("corrupt chunk in the cache; removing it and fetching from the store", "chunk", id.String(), "err", derr)
			if err := cache.Remove(id); err != nil {
				r.log.Warn("cache remove failed", "chunk", id.String(), "err", err)
			}
		} else if !errors.Is(err, storage.ErrNotFound) {
			r.log.Warn("cache get failed; fetching from the store", "chunk", id.String(), "err", err)
		}
	}
	buf := storedPool.Get().(*bytes.Buffer)
	defer func() { buf.Reset(); storedPool.Put(buf) }()
	if err := r.readChunk(ctx, id, buf); err != nil {
		return fetched{}, err
	}
	stored := buf.Bytes()
	raw, err := chunk.Decode(getRaw(), stored, id)
	if err != nil {
		putRaw(raw)
		return fetched{}, fmt.Errorf("stored chunk: %w", err)
	}
	r.met.downloadChunks.Add(ctx, 1, attrSrcStore)
	r.met.downloadBytes.Add(ctx, int64(len(stored)), attrSrcStore)
	if o, ok := cache.(cacheOfferer); ok && offer {
		if !o.Offer(id, stored) {
			r.log.Debug("cache declined the chunk (fill queue full?)", "chunk", id.String())
		}
	} else if cache != nil {
		if err := cache.Put(id, stored); err != nil {
			r.log.Warn("cache put failed", "chunk", id.String(), "err", err)
		}
	}
	return fetched{raw: raw, stored: len(stored)}, nil
}

// cacheOfferer is a ChunkCache that can take a chunk without writing it
// on the caller's path (storage/cache.Cache.Offer): it keeps a copy of
// stored and reports whether it will cache it. The cache must serve an
// offered chunk from Get as soon as Offer returns true, so that a fork
// starting after this download still finds every chunk it fetched.
type cacheOfferer interface {
	Offer(id chunk.ID, stored []byte) bool
}

// maxStored is the largest valid stored chunk.
const maxStored = chunk.HeaderSize + chunk.MaxSize

// readChunk reads chunk id's stored object into buf. An object larger than
// any valid chunk is ErrCorrupt without reading it all.
func (r *Repo) readChunk(ctx context.Context, id chunk.ID, buf *bytes.Buffer) error {
	rc, err := r.store.Get(ctx, id.Key(), 0, -1)
	if err != nil {
		return fmt.Errorf("get chunk: %w", err)
	}
	defer rc.Close()
	n, err := buf.ReadFrom(io.LimitReader(rc, maxStored+1))
	if err != nil {
		return fmt.Errorf("read chunk: %w", err)
	}
	if n > maxStored {
		return fmt.Errorf("stored chunk: %w: larger than %d bytes", storage.ErrCorrupt, maxStored)
	}
	return nil
}

// Buffer pools: stored objects being read, raw chunks being written. Both
// grow to the largest chunk seen and are then reused.
var (
	storedPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	rawPool    sync.Pool
)

func getRaw() []byte {
	if p, ok := rawPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

func putRaw(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:0]
	rawPool.Put(&b)
}

// without returns a copy of m (validated) without the named files. Only
// Files differs: the copy is for reading the remaining files, its Totals
// still describe the whole snapshot.
func (m *Manifest) without(names []string) *Manifest {
	c := *m
	c.Files = nil
	for _, f := range m.Files {
		if !slices.Contains(names, f.Name) {
			c.Files = append(c.Files, f)
		}
	}
	return &c
}
