package chunk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/hangar-vm/hangar/compression"
)

// Options configure Split and SplitReader. The zero value is usable:
// DefaultSize chunks, GOMAXPROCS workers, 2 buffers per worker, chunks
// stored uncompressed, nothing known.
type Options struct {
	// ChunkSize is the fixed chunk size (ValidateSize); 0 means DefaultSize.
	ChunkSize int
	// Workers is how many goroutines detect holes, hash and compress; 0
	// means runtime.GOMAXPROCS(0).
	Workers int
	// Buffers bounds the chunks in flight: read or being read, being
	// processed, waiting for their turn to be delivered, or delivered and
	// not yet released. It is the pipeline's whole memory: about
	// Buffers × (2 × ChunkSize) bytes, whatever the input size. 0 means
	// 2 × Workers. A consumer that keeps chunks while it uploads them holds
	// buffers, and the reader waits for them: that is the backpressure.
	Buffers int
	// Codec compresses the stored form; nil stores chunks uncompressed
	// (codec none). See Encode for the not-smaller rule.
	Codec compression.Codec
	// Known, if set, is asked for each non-hole chunk's id after hashing; a
	// chunk it reports as already stored is not compressed and is delivered
	// with Known set and no Stored bytes. It is called from the worker
	// goroutines concurrently, so it must be safe for concurrent use, and
	// it should be fast (an in-memory set): a worker waits for it.
	Known func(ID) bool
	// Digest, if set, computes a keyed digest of a chunk's raw bytes (see
	// storage/digests). Every non-hole chunk's is computed before it is
	// hashed and delivered as Chunk.Digest. It is called from the worker
	// goroutines concurrently.
	Digest func(raw []byte) Digest
	// Recall, if set (it needs Digest), is asked for each non-hole chunk's
	// index and keyed digest. An id it returns becomes the chunk's ID
	// without hashing (Chunk.Recalled); on false the chunk is hashed as
	// usual. Whoever sets it vouches that an id it returns was hashed from
	// bytes with this keyed digest at this index, and that equal keyed
	// digests mean equal bytes: storage/digests explains why a secret key
	// makes that so. Called from the worker goroutines concurrently; it
	// should be a lookup in memory.
	Recall func(index int64, d Digest) (ID, bool)
}

// withDefaults returns o with every zero field set to its default; defaults
// live here and nowhere else.
func (o Options) withDefaults() Options {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultSize
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Buffers == 0 {
		o.Buffers = 2 * o.Workers
	}
	return o
}

// Validate reports every problem with o at once (after defaults apply).
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if err := ValidateSize(o.ChunkSize); err != nil {
		errs = append(errs, fmt.Errorf("ChunkSize: %w", err))
	}
	if o.Workers < 0 {
		errs = append(errs, fmt.Errorf("Workers: %d is negative (0 means GOMAXPROCS)", o.Workers))
	}
	if o.Buffers < 0 {
		errs = append(errs, fmt.Errorf("Buffers: %d is negative (0 means 2 × Workers)", o.Buffers))
	}
	if o.Codec != nil {
		if _, err := compression.ForID(o.Codec.ID()); err != nil {
			errs = append(errs, fmt.Errorf("Codec: %w", err))
		}
	}
	if o.Recall != nil && o.Digest == nil {
		errs = append(errs, errors.New("Recall: set without Digest"))
	}
	return errors.Join(errs...)
}

// Chunk is one processed chunk of the input, as Split delivers it.
//
// Its byte slices belong to a buffer of the pipeline: they stay valid until
// Release and must not be used after it. The consumer must call Release
// exactly once it no longer needs the bytes (after the upload, or right
// away for holes and known chunks); until then the buffer counts against
// Options.Buffers.
type Chunk struct {
	Index  int64 // position in the input, from 0
	Offset int64 // Index × ChunkSize
	Len    int   // raw length: ChunkSize, or less for the last chunk

	// Hole: every byte is zero. A hole has no ID and no Stored bytes; it is
	// recorded in the manifest and never stored.
	Hole bool
	// ID is the SHA-256 of the raw bytes (zero for holes).
	ID ID
	// Digest is the keyed digest of the raw bytes (Options.Digest); zero
	// for holes and when no Digest was asked for.
	Digest Digest
	// Recalled: ID came from Options.Recall for this Digest, not from
	// hashing.
	Recalled bool
	// Known: Options.Known reported ID as already stored, so the chunk was
	// not compressed; Stored is nil and Codec meaningless.
	Known bool
	// Codec is the codec actually used for Stored: the one asked for, or
	// none when compression did not make the chunk smaller.
	Codec compression.ID
	// Raw is the chunk's raw bytes (all zeros for a hole).
	Raw []byte
	// Stored is the whole stored object (header and payload) to put under
	// ID.Key(); nil for holes and known chunks.
	Stored []byte

	buf atomic.Pointer[buffer]
	rel *freeList
}

// StoredLen is the length of the stored object (0 for holes and known chunks).
func (c *Chunk) StoredLen() int { return len(c.Stored) }

// Release returns the chunk's buffer to the pipeline. Raw and Stored are
// cleared. Calling it again, from any goroutine, does nothing; so does
// calling it after Split returned (the buffer then goes to the garbage
// collector or a later Split).
func (c *Chunk) Release() {
	b := c.buf.Swap(nil)
	if b == nil {
		return
	}
	c.Raw, c.Stored = nil, nil
	c.rel.put(b)
}

// buffer is one chunk's memory: mem holds HeaderSize bytes of headroom and
// then the raw bytes, so that a chunk stored uncompressed is the header
// written in place before its raw bytes, without a copy; comp receives the
// compressed form and is allocated the first time a chunk is compressed.
type buffer struct {
	mem  []byte
	comp []byte
}

// bufferPools recycle buffers across Split calls, one pool per chunk size
// (indexed by log2 of the size). Within one call the freeList bounds how
// many exist.
var bufferPools [25]sync.Pool // log2(MaxSize)+1

// freeList is the fixed set of buffers one Split call may use. Taking a
// buffer blocks while all of them are in flight.
type freeList struct {
	size int
	free chan *buffer
	done atomic.Bool
}

// buffersAllocated counts buffers ever made, so tests can check that memory
// does not grow with the input.
var buffersAllocated atomic.Int64

func newFreeList(size, n int) *freeList {
	f := &freeList{size: size, free: make(chan *buffer, n)}
	for range n {
		f.free <- nil // a slot; the buffer itself is made on first take
	}
	return f
}

// take returns a buffer, waiting while all are in flight.
func (f *freeList) take(ctx context.Context) (*buffer, error) {
	select {
	case b := <-f.free:
		if b == nil {
			pool := &bufferPools[bits.Len(uint(f.size))-1]
			if v, ok := pool.Get().(*buffer); ok {
				b = v
			} else {
				buffersAllocated.Add(1)
				b = &buffer{mem: make([]byte, HeaderSize+f.size)}
			}
		}
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put gives a buffer back. The channel has room for every buffer of the
// call, so put never blocks. Once the call is over, buffers go to the pool.
func (f *freeList) put(b *buffer) {
	if f.done.Load() {
		bufferPools[bits.Len(uint(f.size))-1].Put(b)
		return
	}
	f.free <- b
}

// close ends the call: the buffers already back go to the pool for the next
// call, and so will any released later.
func (f *freeList) close() {
	f.done.Store(true)
	for {
		select {
		case b := <-f.free:
			if b != nil {
				bufferPools[bits.Len(uint(f.size))-1].Put(b)
			}
		default:
			return
		}
	}
}

// Split cuts the size bytes of r into fixed chunks and processes them on
// opts.Workers goroutines: each chunk is read (with ReadAt, by the worker
// itself, so reads from a file run in parallel), checked for zeros, hashed,
// checked against opts.Known, and compressed into its stored form. With
// opts.Digest each chunk's keyed digest is computed first, and with
// opts.Recall an id recalled for it replaces the hash. It calls
// fn for every chunk, in index order, one at a time, from the goroutine that
// called Split; fn hands the chunk on (to an upload queue, say) and the
// chunk's buffer stays in use until someone calls Chunk.Release.
//
// Memory is bounded by opts.Buffers whatever size is: when every buffer is
// in flight, reading waits. A consumer may therefore hold chunks while it
// uploads them, but it must not wait for a later chunk before releasing an
// earlier one, or the pipeline stalls for good.
//
// Split stops at the first error — from reading, compressing, fn, or ctx —
// and returns it after every goroutine it started has ended. fn receives a
// context that is cancelled when the pipeline fails; fn's own error is
// returned as is. Chunks not yet delivered are released by Split; delivered
// ones are the consumer's to release. r must hold at least size bytes; a
// shorter r is an error wrapping io.ErrUnexpectedEOF.
//
// When r is an *os.File (on Linux), chunks wholly inside a hole of the file
// are holes without being read (lseek SEEK_DATA), and the file's readahead
// is turned off for this open file (see holesOf).
func Split(ctx context.Context, r io.ReaderAt, size int64, opts Options, fn func(context.Context, *Chunk) error) error {
	if size < 0 {
		return fmt.Errorf("split: negative size %d", size)
	}
	return split(ctx, opts, fn, func(s *splitter) (int64, error) { return s.produceAt(r, size) })
}

// holeFinder is an input that knows its holes: a sparse file. A chunk that
// lies wholly in a hole is known to be zero without being read, which for
// a sparse memory file (untouched guest RAM, zero pages a restore left
// unwritten) saves the read and the zero-filled pages the kernel would put
// in the page cache for it.
type holeFinder interface {
	// inHole reports whether [off, off+n) is wholly inside a hole; false
	// when unsure.
	inHole(off, n int64) bool
}

// SplitReader is Split for a stream of unknown length: chunks are read from
// r in order by one goroutine (the others hash and compress), until EOF.
// Prefer Split for files: it reads in parallel.
func SplitReader(ctx context.Context, r io.Reader, opts Options, fn func(context.Context, *Chunk) error) error {
	return split(ctx, opts, fn, func(s *splitter) (int64, error) { return s.produceStream(r) })
}

// job is one chunk on its way through the workers.
type job struct {
	chunk *Chunk
	buf   *buffer
	// readAt, if set, is read by the worker (Split); otherwise the producer
	// already filled the buffer (SplitReader).
	readAt io.ReaderAt
	// holes, if set, tells chunks in a hole of readAt, which are not read.
	holes holeFinder
}

type splitter struct {
	opts    Options
	free    *freeList
	ctx     context.Context
	jobs    chan job
	results chan *Chunk
}

func split(ctx context.Context, opts Options, fn func(context.Context, *Chunk) error, produce func(*splitter) (int64, error)) error {
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("split: %w", err)
	}
	opts = opts.withDefaults()
	free := newFreeList(opts.ChunkSize, opts.Buffers)
	defer free.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	s := &splitter{
		opts:    opts,
		free:    free,
		ctx:     gctx,
		jobs:    make(chan job, opts.Workers),
		results: make(chan *Chunk, opts.Buffers),
	}

	// total is the chunk count, published by the producer once it is done.
	var total atomic.Int64
	total.Store(-1)
	g.Go(func() error {
		defer close(s.jobs)
		n, err := produce(s)
		total.Store(n)
		return err
	})
	var workers sync.WaitGroup
	for range opts.Workers {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			return s.work()
		})
	}
	g.Go(func() error {
		workers.Wait()
		close(s.results)
		return nil
	})

	// Deliver in index order. pending holds chunks that finished before
	// their predecessors; it never holds more than opts.Buffers.
	pending := make(map[int64]*Chunk, opts.Buffers)
	var next int64
	var fnErr error
deliver:
	for {
		select {
		case c, ok := <-s.results:
			if !ok {
				break deliver
			}
			pending[c.Index] = c
			for c := pending[next]; c != nil; c = pending[next] {
				if gctx.Err() != nil {
					break deliver
				}
				delete(pending, next)
				next++
				if err := fn(gctx, c); err != nil {
					fnErr = err
					cancel()
					break deliver
				}
			}
		case <-gctx.Done():
			break deliver
		}
	}
	err := g.Wait()
	// Everything has stopped: give back what was never delivered.
	for _, c := range pending {
		c.Release()
	}
	for c := range s.results {
		c.Release()
	}
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return err
	case ctx.Err() != nil: // cancelled between the last chunk and now
		return ctx.Err()
	case next != total.Load() || len(pending) != 0:
		return fmt.Errorf("split: internal error: delivered %d of %d chunks", next, total.Load())
	}
	return nil
}

// produceAt hands out one job per chunk of [0, size); the workers read.
func (s *splitter) produceAt(r io.ReaderAt, size int64) (int64, error) {
	cs := int64(s.opts.ChunkSize)
	n := (size + cs - 1) / cs
	holes := holesOf(r)
	for i := range n {
		off := i * cs
		if err := s.submit(job{
			chunk:  &Chunk{Index: i, Offset: off, Len: int(min(cs, size-off))},
			readAt: r,
			holes:  holes,
		}); err != nil {
			return i, err
		}
	}
	return n, nil
}

// produceStream reads chunks from r in order until EOF.
func (s *splitter) produceStream(r io.Reader) (int64, error) {
	cs := s.opts.ChunkSize
	for i := int64(0); ; i++ {
		buf, err := s.free.take(s.ctx)
		if err != nil {
			return i, err
		}
		raw := buf.mem[HeaderSize : HeaderSize+cs]
		n, err := io.ReadFull(r, raw)
		switch {
		case err == io.EOF: // n == 0: the input ended on a chunk boundary
			s.free.put(buf)
			return i, nil
		case err != nil && err != io.ErrUnexpectedEOF:
			s.free.put(buf)
			return i, fmt.Errorf("read chunk %d at offset %d: %w", i, i*int64(cs), err)
		}
		c := &Chunk{Index: i, Offset: i * int64(cs), Len: n}
		if err := s.send(job{chunk: c, buf: buf}); err != nil {
			s.free.put(buf)
			return i, err
		}
		if n < cs {
			return i + 1, nil
		}
	}
}

// submit takes a buffer for j and queues it for the workers.
func (s *splitter) submit(j job) error {
	buf, err := s.free.take(s.ctx)
	if err != nil {
		return err
	}
	j.buf = buf
	if err := s.send(j); err != nil {
		s.free.put(buf)
		return err
	}
	return nil
}

func (s *splitter) send(j job) error {
	select {
	case s.jobs <- j:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *splitter) work() error {
	for {
		var j job
		select {
		case v, ok := <-s.jobs:
			if !ok {
				return nil
			}
			j = v
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
		c := j.chunk
		c.rel = s.free
		c.buf.Store(j.buf)
		if err := s.process(c, j); err != nil {
			c.Release()
			return err
		}
		select {
		case s.results <- c:
		case <-s.ctx.Done():
			c.Release()
			return s.ctx.Err()
		}
	}
}

// process fills in everything about c from its raw bytes.
func (s *splitter) process(c *Chunk, j job) error {
	b := j.buf
	raw := b.mem[HeaderSize : HeaderSize+c.Len]
	if j.holes != nil && j.holes.inHole(c.Offset, int64(c.Len)) {
		clear(raw) // the buffer may hold an earlier chunk's bytes
		c.Raw, c.Hole = raw, true
		return nil
	}
	if j.readAt != nil {
		n, err := j.readAt.ReadAt(raw, c.Offset)
		if n < len(raw) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read chunk %d at offset %d: %w", c.Index, c.Offset, err)
		}
	}
	c.Raw = raw
	if IsZero(raw) {
		c.Hole = true
		return nil
	}
	if s.opts.Digest != nil {
		c.Digest = s.opts.Digest(raw)
		if s.opts.Recall != nil {
			c.ID, c.Recalled = s.opts.Recall(c.Index, c.Digest)
		}
	}
	if !c.Recalled {
		c.ID = Sum(raw)
	}
	if s.opts.Known != nil && s.opts.Known(c.ID) {
		c.Known = true
		return nil
	}
	if codec := s.opts.Codec; codec != nil && codec.ID() != compression.IDNone {
		if b.comp == nil {
			// Room for the header and a codec's worst-case expansion of
			// incompressible input, so Encode never reallocates.
			b.comp = make([]byte, 0, HeaderSize+s.opts.ChunkSize+s.opts.ChunkSize/64+4096)
		}
		out, ok, err := compress(b.comp[:HeaderSize], raw, codec)
		if err != nil {
			return fmt.Errorf("chunk %d at offset %d: %w", c.Index, c.Offset, err)
		}
		b.comp = out[:0]
		if ok {
			putHeader(out, codec.ID(), c.Len)
			c.Stored, c.Codec = out, codec.ID()
			return nil
		}
	}
	// Uncompressed: the header goes in the headroom before the raw bytes.
	stored := b.mem[:HeaderSize+c.Len]
	putHeader(stored, compression.IDNone, c.Len)
	c.Stored, c.Codec = stored, compression.IDNone
	return nil
}
