// Package lazyfs serves one file of a committed snapshot (the guest memory)
// through a read-only FUSE mount whose chunks are fetched when they are
// first read: the door to lazy restore (DESIGN §6, docs/lazy-restore.md).
//
// A read of a range maps to the file's chunks (snapshot.File): holes read
// as zeros at once; any other chunk is fetched on first touch through a
// Fetcher (the host cache, then the store, verified), decompressed into a
// sparse local backing file and marked present, so that every later read
// of it is a local pread. Concurrent reads of one chunk fetch it once (so
// do several positions of one chunk id). A background prefetcher fills
// every remaining chunk in file order; a read that needs a chunk the
// prefetcher has not started fetches it itself at once, so demand never
// waits behind the queue.
//
// A failed fetch is sticky (the chunk reads EIO from then on: the Fetcher
// is expected to retry transient errors itself, as a Repo over
// storage/retry does), and the backing file lives as long as the Server
// (it is unlinked at once, so a crash leaves nothing on disk, unless
// Options.BackingPath names it for a Filler). Mounting
// needs root (a direct mount: no fusermount) and /dev/fuse.
package lazyfs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// Fetcher returns one chunk's raw bytes, verified against its id.
// snapshot.Repo's FetchChunk, bound to a cache, is one (see RepoFetcher).
type Fetcher interface {
	FetchChunk(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error)
}

// A Filler is a Fetcher that can also write a chunk into the named
// backing file itself (Options.BackingPath), at each of offsets, sparse:
// the chunk's bytes then never pass through the Server (a ChunkServer in
// the daemon fills a lazy server process's file).
type Filler interface {
	Fetcher
	FillChunk(ctx context.Context, id chunk.ID, backing string, offsets []int64) (Filled, error)
}

// Filled describes a chunk a Filler wrote.
type Filled struct {
	Raw       int // raw bytes
	Stored    int // stored (compressed) bytes
	FromCache bool
}

// RepoFetcher fetches through a Repo with a host cache (nil: none).
type RepoFetcher struct {
	Repo  *snapshot.Repo
	Cache snapshot.ChunkCache
	// Offer fills the cache in the background (Cache.Offer) rather than
	// with a Put in the fetching goroutine.
	Offer bool
}

// FetchChunk implements Fetcher.
func (f RepoFetcher) FetchChunk(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error) {
	return f.Repo.FetchChunk(ctx, id, f.Cache, f.Offer)
}

// Options tune a Server. The zero value is usable.
type Options struct {
	// BackingPath, if set, names the backing file (created or truncated;
	// removed by Close): a Filler writes chunks into it itself. Otherwise
	// the backing file is a temporary file in BackingDir, unlinked at
	// once.
	BackingPath string
	// BackingDir holds the sparse backing file (unlinked at once); default
	// os.TempDir().
	BackingDir string
	// NoPrefetch turns the background prefetcher off: chunks are fetched
	// on first touch only.
	NoPrefetch bool
	// PrefetchWorkers is how many chunks the prefetcher fetches at once;
	// default 4.
	PrefetchWorkers int
	// PrefetchDelay holds the prefetcher back this long after the mount,
	// leaving the first moments (the guest resuming) to demand fetches.
	PrefetchDelay time.Duration
	// PrefetchFirst lists chunk indexes the prefetcher fetches first, in
	// this order (a touch profile: Stats.TouchOrder of an earlier restore
	// of the snapshot); the rest follow in file order.
	PrefetchFirst []int
	// RestWorkers, if > 0, is how many workers fetch the chunks after
	// PrefetchFirst (the hot set goes at PrefetchWorkers, the cold rest
	// at a rate that leaves the CPUs to the guest).
	RestWorkers int
	// PrefetchYield makes prefetch workers start no new chunk while a
	// read waits for a demand fetch.
	PrefetchYield bool
	// DemandAhead, if > 0, starts fetching the next DemandAhead chunks
	// after one a read waits for, at once, beside it (guests touch memory
	// in runs), whatever PrefetchDelay says.
	DemandAhead int
	// MaxReadAhead is passed to the kernel (FUSE init); 0: go-fuse's
	// default.
	MaxReadAhead int
	// MaxWrite bounds a FUSE request (reads too); 0: go-fuse's default.
	MaxWrite int
	// FileName is the served file's name; default "memory".
	FileName string
	Logger   *slog.Logger
}

// slot is one chunk id of the file: fetched once, written at every index
// where it occurs.
type slot struct {
	id      chunk.ID
	indexes []int
	started atomic.Bool
	done    chan struct{}
	err     error // set before done closes
	demand  bool  // fetched by a read, not the prefetcher
}

// Stats describe what a Server did so far.
type Stats struct {
	Chunks         int   // distinct non-hole chunk ids in the file
	Fetched        int   // of them fetched (or failed) so far
	DemandFetches  int   // fetched because a read needed them
	PrefetchFetchs int   // fetched by the prefetcher
	FromCache      int   // fetched from the host cache
	StoredBytes    int64 // stored (compressed) bytes fetched
	RawBytes       int64 // raw bytes of the chunks fetched
	Reads          int64 // FUSE read requests served
	ReadBytes      int64
	ReadsWaited    int64         // reads that waited for a fetch
	ReadWait       time.Duration // summed time reads waited for fetches
	ReadSizes      map[int]int64 // FUSE read request size → count
	PrefetchDone   time.Duration // mount → every chunk present (0: not yet)
	Errors         int
	// TouchOrder is the chunk index of every demand fetch, in the order
	// reads started them: the guest's touch profile.
	TouchOrder []int
}

// Server is one mounted lazy file.
type Server struct {
	file    snapshot.File
	fetcher Fetcher
	opts    Options
	log     *slog.Logger
	dir     string
	backing *os.File
	slots   []*slot // by chunk index; nil for a hole
	order   []*slot // distinct slots in file order
	srv     *fuse.Server
	start   time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	prefetchDone chan struct{}
	demanding    atomic.Int32 // reads waiting for a demand fetch

	mu    sync.Mutex // guards stats
	stats Stats
}

// Mount serves file (a validated manifest's file) as dir/<FileName>,
// read-only, fetching chunks through f. dir must exist and be empty.
// Close unmounts it.
func Mount(dir string, file snapshot.File, f Fetcher, opts Options) (_ *Server, err error) {
	if file.ChunkSize <= 0 {
		return nil, fmt.Errorf("lazyfs: file %s: chunk size %d", file.Name, file.ChunkSize)
	}
	if opts.FileName == "" {
		opts.FileName = "memory"
	}
	if opts.PrefetchWorkers <= 0 {
		opts.PrefetchWorkers = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var backing *os.File
	if opts.BackingPath != "" {
		backing, err = os.OpenFile(opts.BackingPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	} else {
		backing, err = os.CreateTemp(opts.BackingDir, ".lazyfs-backing-*")
		if err == nil {
			// Unlinked at once: nothing to clean up after a crash.
			os.Remove(backing.Name())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lazyfs: %w", err)
	}
	// drop undoes the backing file on an error: a named one is removed.
	drop := func() {
		backing.Close()
		if opts.BackingPath != "" {
			os.Remove(opts.BackingPath)
		}
	}
	if err := backing.Truncate(file.Size); err != nil {
		drop()
		return nil, fmt.Errorf("lazyfs: size backing file: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		file: file, fetcher: f, opts: opts, log: opts.Logger.With("component", "lazyfs"),
		dir: dir, backing: backing, slots: make([]*slot, (file.Size+int64(file.ChunkSize)-1)/int64(file.ChunkSize)),
		ctx: ctx, cancel: cancel, prefetchDone: make(chan struct{}),
	}
	s.stats.ReadSizes = map[int]int64{}
	byID := map[chunk.ID]*slot{}
	for _, c := range file.Chunks {
		if c.Hole {
			continue
		}
		if c.Index < 0 || c.Index >= len(s.slots) {
			drop()
			cancel()
			return nil, fmt.Errorf("lazyfs: file %s: chunk index %d out of range", file.Name, c.Index)
		}
		id := c.ChunkID()
		sl := byID[id]
		if sl == nil {
			sl = &slot{id: id, done: make(chan struct{})}
			byID[id] = sl
			s.order = append(s.order, sl)
		}
		sl.indexes = append(sl.indexes, c.Index)
		s.slots[c.Index] = sl
	}
	s.stats.Chunks = len(s.order)

	root := &rootNode{s: s}
	timeout := time.Hour
	s.start = time.Now()
	s.srv, err = fs.Mount(dir, root, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			FsName:            "hangar-lazy",
			Name:              "hangar",
			DirectMountStrict: true,
			// Replies are bytes, never file descriptors; and with MaxWrite
			// 1 MiB a reply plus its header does not fit the splice pipe.
			DisableSplice: true,
			MaxReadAhead:  opts.MaxReadAhead,
			MaxWrite:      opts.MaxWrite,
		},
	})
	if err != nil {
		drop()
		cancel()
		return nil, fmt.Errorf("lazyfs: mount %s: %w", dir, err)
	}
	s.wg.Add(1)
	go s.prefetch()
	return s, nil
}

// Path is the served file's path.
func (s *Server) Path() string { return filepath.Join(s.dir, s.opts.FileName) }

// PrefetchDone is closed when every chunk is present (never, with
// NoPrefetch, unless reads touched them all).
func (s *Server) PrefetchDone() <-chan struct{} { return s.prefetchDone }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.TouchOrder = append([]int(nil), s.stats.TouchOrder...)
	st.ReadSizes = make(map[int]int64, len(s.stats.ReadSizes))
	for k, v := range s.stats.ReadSizes {
		st.ReadSizes[k] = v
	}
	return st
}

// ConnectionID is the kernel's id of this mount's FUSE connection, the
// directory name under /sys/fs/fuse/connections.
func (s *Server) ConnectionID() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(s.dir, &st); err != nil {
		return 0, err
	}
	// minor(st_dev), as the kernel numbers FUSE connections.
	return (st.Dev & 0xff) | ((st.Dev >> 12) & 0xfff00), nil
}

// BackingResident reports how many bytes of the backing file are in the
// page cache (mincore over a mapping of it).
func (s *Server) BackingResident() (int64, error) {
	size := int(s.file.Size)
	if size == 0 {
		return 0, nil
	}
	m, err := syscall.Mmap(int(s.backing.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return 0, err
	}
	defer syscall.Munmap(m)
	vec := make([]byte, (size+4095)/4096)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, e
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n * 4096, nil
}

// Close stops the prefetcher, unmounts and drops the backing file. Stop
// the file's users first (a QEMU mapping it): a mount still in use is
// detached (MNT_DETACH) instead, and its users read errors from then on.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	err := s.srv.Unmount()
	if err != nil && unix.Unmount(s.dir, unix.MNT_DETACH) == nil {
		err = nil
	}
	s.backing.Close()
	if s.opts.BackingPath != "" {
		os.Remove(s.opts.BackingPath)
	}
	if err != nil {
		return fmt.Errorf("lazyfs: unmount %s: %w", s.dir, err)
	}
	return nil
}

// Abort ends the server as its process's death would: the kernel's FUSE
// connection is aborted (every read of the file fails from then on, and a
// guest mapping it faults on any page it has not read yet), the
// prefetcher stops and the backing file is dropped, but the mount point
// stays, stale, until DetachStale. For tests and for a manager that hands
// its VMs to a successor.
func (s *Server) Abort() error {
	id, err := s.ConnectionID()
	if err == nil {
		abort := fmt.Sprintf("%s/%d/abort", fuseCtl, id)
		if _, serr := os.Stat(abort); serr != nil {
			// The FUSE control filesystem is not mounted (systemd mounts
			// it; a bare container does not): mount it, as root may.
			if merr := unix.Mount("fusectl", fuseCtl, "fusectl", 0, ""); merr != nil && merr != unix.EBUSY {
				err = fmt.Errorf("mount %s: %w", fuseCtl, merr)
			}
		}
		if err == nil {
			err = os.WriteFile(abort, []byte("1"), 0o200)
		}
	}
	s.cancel()
	s.wg.Wait()
	s.backing.Close()
	if err != nil {
		return fmt.Errorf("lazyfs: abort %s: %w", s.dir, err)
	}
	return nil
}

// fuseCtl is where the FUSE control filesystem is mounted.
const fuseCtl = "/sys/fs/fuse/connections"

// DetachStale detaches whatever is mounted on dir (a lazy mount whose
// server is gone reads "transport endpoint is not connected" and cannot
// be removed otherwise). Nothing mounted there, or no dir, is not an
// error.
func DetachStale(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	if err == nil || err == unix.EINVAL || err == unix.ENOENT {
		return nil
	}
	return fmt.Errorf("lazyfs: detach %s: %w", dir, err)
}

// prefetch fetches every slot not started yet, in file order, with
// PrefetchWorkers at once (unless NoPrefetch), then closes prefetchDone
// once all are present.
func (s *Server) prefetch() {
	defer s.wg.Done()
	if !s.opts.NoPrefetch && !s.fetchAll() {
		return
	}
	// Demand fetches started by reads may still run: wait for them too.
	for _, sl := range s.order {
		select {
		case <-sl.done:
		case <-s.ctx.Done():
			return
		}
	}
	s.mu.Lock()
	s.stats.PrefetchDone = time.Since(s.start)
	s.mu.Unlock()
	close(s.prefetchDone)
	s.log.Debug("prefetch done", "chunks", len(s.order), "took", time.Since(s.start))
}

// fetchAll runs the prefetch workers; false if the Server closed first.
func (s *Server) fetchAll() bool {
	if s.opts.PrefetchDelay > 0 {
		select {
		case <-time.After(s.opts.PrefetchDelay):
		case <-s.ctx.Done():
			return false
		}
	}
	order := make([]*slot, 0, len(s.order))
	seen := map[*slot]bool{}
	for _, idx := range s.opts.PrefetchFirst {
		if idx >= 0 && idx < len(s.slots) && s.slots[idx] != nil && !seen[s.slots[idx]] {
			seen[s.slots[idx]] = true
			order = append(order, s.slots[idx])
		}
	}
	for _, sl := range s.order {
		if !seen[sl] {
			order = append(order, sl)
		}
	}
	hot := len(seen)
	if s.opts.RestWorkers <= 0 || hot == 0 {
		s.runWorkers(order, s.opts.PrefetchWorkers)
	} else {
		s.runWorkers(order[:hot], s.opts.PrefetchWorkers)
		s.runWorkers(order[hot:], s.opts.RestWorkers)
	}
	return s.ctx.Err() == nil
}

// runWorkers fetches order with n workers.
func (s *Server) runWorkers(order []*slot, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for s.opts.PrefetchYield && s.demanding.Load() > 0 && s.ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				i := int(next.Add(1) - 1)
				if i >= len(order) || s.ctx.Err() != nil {
					return
				}
				s.ensure(order[i], false)
			}
		}()
	}
	wg.Wait()
}

// ensure makes sl present: the first caller fetches it (in its own
// goroutine: a read's fetch never waits for the prefetcher), later ones
// wait. It returns the fetch's error.
func (s *Server) ensure(sl *slot, demand bool) error {
	if sl.started.CompareAndSwap(false, true) {
		sl.demand = demand
		if demand {
			s.mu.Lock()
			s.stats.TouchOrder = append(s.stats.TouchOrder, sl.indexes[0])
			s.mu.Unlock()
		}
		sl.err = s.fill(sl)
		close(sl.done)
		return sl.err
	}
	select {
	case <-sl.done:
		return sl.err
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// fill fetches sl and writes it at each of its indexes (or has a Filler
// write it into the named backing file).
func (s *Server) fill(sl *slot) error {
	var f snapshot.FetchedChunk
	var rawLen int
	var err error
	if fl, ok := s.fetcher.(Filler); ok && s.opts.BackingPath != "" {
		offs := make([]int64, len(sl.indexes))
		for i, idx := range sl.indexes {
			offs[i] = int64(idx) * int64(s.file.ChunkSize)
		}
		var filled Filled
		filled, err = fl.FillChunk(s.ctx, sl.id, s.opts.BackingPath, offs)
		f.FromCache, f.Stored, rawLen = filled.FromCache, filled.Stored, filled.Raw
	} else {
		f, err = s.fetcher.FetchChunk(s.ctx, sl.id)
		rawLen = len(f.Raw)
		if err == nil {
			for _, idx := range sl.indexes {
				if err = chunk.WriteSparse(s.backing, f.Raw, int64(idx)*int64(s.file.ChunkSize)); err != nil {
					break
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Fetched++
	if err != nil {
		s.stats.Errors++
		lvl := s.log.Warn
		if s.ctx.Err() != nil {
			lvl = s.log.Debug // the server is closing: nobody waits for it
		}
		lvl("lazy chunk fetch failed", "file", s.file.Name, "chunk", sl.id.String(), "err", err)
		return fmt.Errorf("lazyfs: file %s chunk %s: %w", s.file.Name, sl.id, err)
	}
	if sl.demand {
		s.stats.DemandFetches++
	} else {
		s.stats.PrefetchFetchs++
	}
	if f.FromCache {
		s.stats.FromCache++
	}
	s.stats.StoredBytes += int64(f.Stored)
	s.stats.RawBytes += int64(rawLen)
	return nil
}

// ahead starts fetching the DemandAhead chunks after index idx that no one
// fetches yet, each in its own goroutine.
func (s *Server) ahead(idx int) {
	for i, n := idx+1, 0; i < len(s.slots) && n < s.opts.DemandAhead; i++ {
		sl := s.slots[i]
		if sl == nil {
			continue
		}
		n++
		if sl.started.Load() {
			continue
		}
		// Not in wg: a read may run while Close waits. A fetch that
		// outlives Close fails on the cancelled context or closed file.
		go s.ensure(sl, false)
	}
}

// read serves a FUSE read of dest at off.
func (s *Server) read(dest []byte, off int64) ([]byte, syscall.Errno) {
	if off >= s.file.Size {
		return dest[:0], 0
	}
	end := min(off+int64(len(dest)), s.file.Size)
	dest = dest[:end-off]
	cs := int64(s.file.ChunkSize)
	var waited time.Duration
	didWait := false
	for idx := off / cs; idx <= (end-1)/cs; idx++ {
		sl := s.slots[idx]
		if sl == nil {
			continue
		}
		select {
		case <-sl.done:
			if sl.err != nil {
				return nil, syscall.EIO
			}
			continue
		default:
		}
		t := time.Now()
		s.demanding.Add(1)
		s.ahead(int(idx))
		err := s.ensure(sl, true)
		s.demanding.Add(-1)
		waited += time.Since(t)
		didWait = true
		if err != nil {
			return nil, syscall.EIO
		}
	}
	n, err := s.backing.ReadAt(dest, off)
	if err != nil && n < len(dest) {
		s.log.Warn("lazy backing read failed", "off", off, "err", err)
		return nil, syscall.EIO
	}
	s.mu.Lock()
	s.stats.Reads++
	s.stats.ReadBytes += int64(len(dest))
	s.stats.ReadSizes[len(dest)]++
	if didWait {
		s.stats.ReadsWaited++
		s.stats.ReadWait += waited
	}
	s.mu.Unlock()
	return dest, 0
}

// ReadSizeSummary renders ReadSizes as "size×count" pairs, largest count
// first.
func (st Stats) ReadSizeSummary() string {
	type kv struct {
		size  int
		count int64
	}
	var kvs []kv
	for k, v := range st.ReadSizes {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].count > kvs[j].count })
	out := ""
	for i, e := range kvs {
		if i == 6 {
			out += " …"
			break
		}
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%dK×%d", e.size>>10, e.count)
	}
	return out
}

// rootNode is the mount's root directory, holding the one file.
type rootNode struct {
	fs.Inode
	s *Server
}

var _ fs.NodeOnAdder = (*rootNode)(nil)

func (r *rootNode) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, &fileNode{s: r.s}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild(r.s.opts.FileName, ch, false)
}

// fileNode is the served file. It may be opened read-write (QEMU opens a
// memory-backend-file O_RDWR even with share=off, and maps it private),
// but every write is refused.
type fileNode struct {
	fs.Inode
	s *Server
}

var (
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
	_ fs.NodeWriter    = (*fileNode)(nil)
)

func (n *fileNode) attr(out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(n.s.file.Size)
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	out.Nlink = 1
	t := uint64(n.s.start.Unix())
	out.Mtime, out.Ctime, out.Atime = t, t, t
}

func (n *fileNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.attr(&out.Attr)
	return 0
}

func (n *fileNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz != uint64(n.s.file.Size) {
		return syscall.EROFS
	}
	n.attr(&out.Attr)
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	// KEEP_CACHE: pages read once stay in the page cache across opens.
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *fileNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	b, errno := n.s.read(dest, off)
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(b), 0
}

func (n *fileNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}
