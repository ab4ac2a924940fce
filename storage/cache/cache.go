package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

const (
	// tempPrefix starts the name of a Put's temporary file. '.' is not a
	// hex digit, so no chunk file is ever mistaken for one.
	tempPrefix = ".tmp-"
	lockName   = ".lock"
)

// Stats is a snapshot of the cache's size and its counters since Open.
type Stats struct {
	Bytes     int64 // bytes of the entries held
	Entries   int64 // entries held
	MaxBytes  int64 // the bound on Bytes
	Hits      int64 // Gets that returned an entry
	Misses    int64 // Gets that found none
	Evictions int64 // entries removed to make room (not by Remove)
	// Offer's queue: chunks waiting for the background writer (counted
	// in Bytes and Entries only once on disk), fills dropped because the
	// queue was full, and background writes that failed.
	Queued       int64
	QueuedBytes  int64
	FillsDropped int64
	FillErrors   int64
}

// entry is one cached chunk. Its list element's position is its recency:
// the front is the most recently used.
type entry struct {
	id      chunk.ID
	size    int64
	touched time.Time // last recency written to disk (the file's mtime)
}

// Cache is a host chunk cache in one directory. See the package
// documentation for its layout and guarantees.
type Cache struct {
	dir   string
	max   int64
	opt   options
	log   *slog.Logger
	lock  *os.File // flock on <dir>/.lock
	ins   *instruments
	close sync.Once

	mu    sync.Mutex
	index map[chunk.ID]*list.Element // of *entry
	lru   list.List                  // of *entry, most recent first
	bytes int64
	fills fillQueue // Offer's background writes (fill.go)

	hits, misses, evictions  atomic.Int64
	fillsDropped, fillErrors atomic.Int64
}

// Open opens the cache in dir, creating it if needed, bounded by maxBytes of
// entries. It rebuilds the index from the files found there (see the
// package documentation). The directory is locked until Close.
func Open(dir string, maxBytes int64, opts ...Option) (*Cache, error) {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	var problems []error
	if dir == "" {
		problems = append(problems, errors.New("empty directory name"))
	}
	if maxBytes <= 0 {
		problems = append(problems, fmt.Errorf("max bytes %d: want > 0", maxBytes))
	}
	if o.touchInterval < 0 {
		problems = append(problems, fmt.Errorf("touch interval %s: want >= 0", o.touchInterval))
	}
	if o.fillQueueBytes < 0 {
		problems = append(problems, fmt.Errorf("fill queue %d bytes: want >= 0", o.fillQueueBytes))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("open chunk cache %q: %w", dir, err)
	}

	c := &Cache{
		dir:   dir,
		max:   maxBytes,
		opt:   o,
		log:   o.logger.With(slog.String("component", "cache"), slog.String("dir", dir)),
		index: make(map[chunk.ID]*list.Element),
	}
	if err := c.lockDir(); err != nil {
		return nil, fmt.Errorf("open chunk cache %q: %w", dir, err)
	}
	if err := c.load(); err != nil {
		c.lock.Close()
		return nil, fmt.Errorf("open chunk cache %q: %w", dir, err)
	}
	ins, err := newInstruments(o.meter, c)
	if err != nil {
		c.lock.Close()
		return nil, fmt.Errorf("open chunk cache %q: %w", dir, err)
	}
	c.ins = ins
	s := c.Stats()
	c.log.Info("chunk cache opened", "entries", s.Entries, "bytes", s.Bytes, "max_bytes", s.MaxBytes)
	return c, nil
}

// lockDir creates dir and takes an exclusive lock on it: two Caches on one
// directory would each delete the other's temporary files at Open and
// disagree about its size.
func (c *Cache) lockDir() error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(c.dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return errors.New("directory is in use by another cache")
		}
		return fmt.Errorf("lock: %w", err)
	}
	c.lock = f
	return nil
}

// Close writes the chunks still queued by Offer (so that a clean shutdown
// keeps them), then releases the directory lock and the metrics callback.
// The files stay for the next Open. The Cache must not be used after
// Close.
func (c *Cache) Close() error {
	var err error
	c.close.Do(func() {
		c.mu.Lock()
		c.fills.closed = true
		c.mu.Unlock()
		c.Flush(context.Background()) // cannot fail without a deadline
		err = errors.Join(c.ins.close(), c.lock.Close())
	})
	return err
}

// Dir returns the directory the cache was opened on.
func (c *Cache) Dir() string { return c.dir }

// path returns the file name of id's entry.
func (c *Cache) path(id chunk.ID) string {
	s := id.String()
	return filepath.Join(c.dir, s[:2], s)
}

// Has reports whether id is cached (on disk, or queued by Offer). It does
// not change recency or counters.
func (c *Cache) Has(id chunk.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.index[id]
	return ok || c.pendingLocked(id) != nil
}

// Stats returns the cache's current size and counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	s := Stats{Bytes: c.bytes, Entries: int64(len(c.index)), MaxBytes: c.max,
		Queued: int64(len(c.fills.pending)), QueuedBytes: c.fills.bytes}
	c.mu.Unlock()
	s.Hits, s.Misses, s.Evictions = c.hits.Load(), c.misses.Load(), c.evictions.Load()
	s.FillsDropped, s.FillErrors = c.fillsDropped.Load(), c.fillErrors.Load()
	return s
}

// Get returns the stored bytes of id, as they were Put (or Offered), in a
// new slice the caller owns. A chunk not cached is an error wrapping
// storage.ErrNotFound.
// The bytes are not verified: decode them with chunk.Decode and Remove the
// entry if that fails.
func (c *Cache) Get(id chunk.ID) ([]byte, error) {
	now := c.opt.now()
	c.mu.Lock()
	el, ok := c.index[id]
	var (
		e     *entry
		touch bool
	)
	if ok {
		c.lru.MoveToFront(el)
		e = el.Value.(*entry)
		if now.Sub(e.touched) >= c.opt.touchInterval {
			e.touched, touch = now, true
		}
	} else if f := c.pendingLocked(id); f != nil {
		// Queued by Offer, not on disk yet: copied under mu, since the
		// writer recycles the queued buffer once the fill leaves pending.
		b := append([]byte(nil), f.stored...)
		c.mu.Unlock()
		c.hits.Add(1)
		c.ins.hit()
		return b, nil
	}
	c.mu.Unlock()
	if !ok {
		return nil, c.missed(id)
	}

	// The file is read outside the lock. Files are only ever created whole
	// (rename) and removed, never rewritten, so this reads one whole entry,
	// or fails with ENOENT if it was evicted or removed meanwhile: once
	// open, an unlinked file stays readable.
	p := c.path(id)
	b, err := readFile(p, e.size)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		c.forget(el, "file missing")
		return nil, c.missed(id)
	case errors.Is(err, errWrongSize):
		// Only something outside the cache changes a file in place; the
		// store has the chunk, so drop this copy rather than fail.
		c.log.Warn("cached chunk changed on disk, dropping it", "chunk", id, "err", err)
		c.forget(el, "wrong size")
		return nil, c.missed(id)
	case err != nil:
		return nil, fmt.Errorf("cache get chunk %s: %w", id, err)
	}
	c.hits.Add(1)
	c.ins.hit()
	if touch {
		// Best effort: a failure only makes the order after a restart
		// less exact, and the entry may have been evicted since.
		if err := os.Chtimes(p, now, now); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			c.log.Debug("recording chunk use on disk failed", "chunk", id, "err", err)
		}
	}
	return b, nil
}

func (c *Cache) missed(id chunk.ID) error {
	c.misses.Add(1)
	c.ins.miss()
	return fmt.Errorf("cache get chunk %s: %w", id, storage.ErrNotFound)
}

var errWrongSize = errors.New("file size differs from the indexed size")

// readFile reads the whole file p, which should be size bytes long.
func readFile(p string, size int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != size {
		return nil, fmt.Errorf("%w: %d bytes, indexed as %d", errWrongSize, fi.Size(), size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%w: %w", errWrongSize, err)
	}
	return b, nil
}

// forget drops el from the index and its file from disk, if el is still the
// indexed entry for its id (a concurrent Remove and Put may have replaced
// it, and the new file must stay).
func (c *Cache) forget(el *list.Element, why string) {
	e := el.Value.(*entry)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.index[e.id]; !ok || cur != el {
		return
	}
	c.drop(el)
	c.log.Debug("dropped cache entry", "chunk", e.id, "reason", why)
}

// drop removes el from the index and unlinks its file. The caller holds mu.
// Unlinking under mu is what keeps the directory and the index in step: were
// it done after unlocking, a Put of the same id in between would rename its
// new file into place only to have it deleted.
func (c *Cache) drop(el *list.Element) {
	e := el.Value.(*entry)
	c.lru.Remove(el)
	delete(c.index, e.id)
	c.bytes -= e.size
	if err := os.Remove(c.path(e.id)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		// The index no longer counts it; the next Open will see the file
		// again and account for it.
		c.log.Warn("removing cached chunk failed", "chunk", e.id, "err", err)
	}
}

// Put caches stored, the stored form of chunk id (header and payload, as
// chunk.Encode wrote it). It is idempotent: if id is already cached, Put
// only marks it used and the first copy stays. A chunk larger than the
// cache's MaxBytes is not kept and Put returns nil. Put evicts the least
// recently used entries as needed, never the one it puts. stored is not
// retained: the caller may reuse it once Put returns. Bytes that cannot be a
// stored chunk (bad header, impossible length) are an error matching
// storage.ErrCorrupt, since Open would drop them anyway.
func (c *Cache) Put(id chunk.ID, stored []byte) error {
	if err := checkStored(int64(len(stored)), stored); err != nil {
		return fmt.Errorf("cache put chunk %s: %w", id, err)
	}
	size := int64(len(stored))
	if size > c.max {
		c.log.Debug("chunk larger than the cache, not cached", "chunk", id, "bytes", size, "max_bytes", c.max)
		return nil
	}
	if c.markUsed(id) {
		return nil
	}

	now := c.opt.now()
	tmp, err := c.writeTemp(id, stored, now)
	if err != nil {
		return fmt.Errorf("cache put chunk %s: %w", id, err)
	}

	c.mu.Lock()
	if el, ok := c.index[id]; ok {
		// A concurrent Put of the same id won the race.
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, c.path(id)); err != nil {
		c.mu.Unlock()
		os.Remove(tmp)
		return fmt.Errorf("cache put chunk %s: %w", id, err)
	}
	el := c.lru.PushFront(&entry{id: id, size: size, touched: now})
	c.index[id] = el
	c.bytes += size
	evicted := c.evictLocked(el)
	c.mu.Unlock()

	if evicted > 0 {
		c.evictions.Add(int64(evicted))
		c.ins.evicted(evicted)
	}
	return nil
}

// markUsed moves id to the front if it is cached and reports whether it is.
func (c *Cache) markUsed(id chunk.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.index[id]
	if ok {
		c.lru.MoveToFront(el)
	}
	return ok
}

// writeTemp writes stored to a new temporary file beside id's final name,
// with mtime now, and returns its name.
func (c *Cache) writeTemp(id chunk.ID, stored []byte, now time.Time) (string, error) {
	final := c.path(id)
	sub, pattern := filepath.Dir(final), tempPrefix+filepath.Base(final)[:16]+"-*"
	f, err := os.CreateTemp(sub, pattern)
	if errors.Is(err, iofs.ErrNotExist) {
		// The first chunk under this prefix. Concurrent Puts may race to
		// create the directory, which Mkdir's ErrExist absorbs.
		if err := os.Mkdir(sub, 0o755); err != nil && !errors.Is(err, iofs.ErrExist) {
			return "", err
		}
		f, err = os.CreateTemp(sub, pattern)
	}
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	_, err = f.Write(stored)
	if err == nil && c.opt.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The mtime is the entry's recency after a restart; set it from
		// the cache's clock so that it agrees with the in-memory order.
		err = os.Chtimes(tmp, now, now)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// evictLocked drops least-recently-used entries until the cache fits in
// max, never keep, and returns how many it dropped. The caller holds mu.
func (c *Cache) evictLocked(keep *list.Element) int {
	n := 0
	for c.bytes > c.max {
		el := c.lru.Back()
		if el == nil || el == keep {
			// Only keep is left, and Put checked that it fits alone.
			break
		}
		c.log.Debug("evicting chunk", "chunk", el.Value.(*entry).id, "bytes", el.Value.(*entry).size)
		c.drop(el)
		n++
	}
	return n
}

// Remove drops id from the cache, typically after the caller found its
// bytes corrupt. Removing an id that is not cached is not an error.
func (c *Cache) Remove(id chunk.ID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unqueueLocked(id)
	el, ok := c.index[id]
	if !ok {
		return nil
	}
	e := el.Value.(*entry)
	c.lru.Remove(el)
	delete(c.index, id)
	c.bytes -= e.size
	if err := os.Remove(c.path(id)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("cache remove chunk %s: %w", id, err)
	}
	return nil
}

// checkStored reports whether a file of size bytes starting with head (at
// least chunk.HeaderSize bytes of it, if it has them) can be a stored chunk:
// a valid header, and a payload that fits its raw length (equal to it when
// uncompressed, shorter when compressed — chunk.Encode writes nothing else).
// It catches the usual remains of a crash: empty, short or zeroed files.
func checkStored(size int64, head []byte) error {
	h, err := chunk.ParseHeader(head)
	if err != nil {
		return err
	}
	payload := size - chunk.HeaderSize
	switch {
	case h.Codec == compression.IDNone && payload != int64(h.RawLen):
		return fmt.Errorf("%w: uncompressed payload of %d bytes, raw length %d", storage.ErrCorrupt, payload, h.RawLen)
	case h.Codec != compression.IDNone && payload >= int64(h.RawLen):
		return fmt.Errorf("%w: compressed payload of %d bytes, not shorter than raw length %d", storage.ErrCorrupt, payload, h.RawLen)
	}
	return nil
}
