package chunk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
)

const testChunk = MinSize // 1 MiB keeps the tests quick

// refChunk is what a plain sequential loop says about one chunk.
type refChunk struct {
	off  int64
	n    int
	hole bool
	id   ID
}

// reference chunks data the obvious way: a byte loop for zeros, sha256.Sum256.
func reference(data []byte, size int) []refChunk {
	var out []refChunk
	for off := 0; off < len(data); off += size {
		b := data[off:min(off+size, len(data))]
		hole := true
		for _, c := range b {
			if c != 0 {
				hole = false
				break
			}
		}
		r := refChunk{off: int64(off), n: len(b), hole: hole}
		if !hole {
			r.id = sha256.Sum256(b)
		}
		out = append(out, r)
	}
	return out
}

// testData is memory-like bytes with planted whole zero chunks (holes) and a
// repeated chunk, n bytes long.
func testData(n int) []byte {
	data := make([]byte, n)
	memtest.Fill(data, uint64(n), 0.6)
	for _, i := range []int{1, 4} {
		if (i+1)*testChunk <= n {
			clear(data[i*testChunk : (i+1)*testChunk])
		}
	}
	if 7*testChunk <= n {
		copy(data[6*testChunk:7*testChunk], data[2*testChunk:3*testChunk])
	}
	return data
}

// collect runs split and checks every delivered chunk against the
// reference, decoding its stored form.
func checkSplit(t *testing.T, data []byte, opts Options, run func(fn func(context.Context, *Chunk) error) error) {
	t.Helper()
	ref := reference(data, opts.ChunkSize)
	var got int
	err := run(func(_ context.Context, c *Chunk) error {
		defer c.Release()
		if c.Index != int64(got) {
			return fmt.Errorf("chunk %d delivered as %d-th", c.Index, got)
		}
		got++
		if int(c.Index) >= len(ref) {
			return fmt.Errorf("extra chunk %d", c.Index)
		}
		r := ref[c.Index]
		if c.Offset != r.off || c.Len != r.n || c.Hole != r.hole || c.ID != r.id {
			return fmt.Errorf("chunk %d: got off %d len %d hole %v id %s, want off %d len %d hole %v id %s",
				c.Index, c.Offset, c.Len, c.Hole, c.ID, r.off, r.n, r.hole, r.id)
		}
		if !bytes.Equal(c.Raw, data[r.off:r.off+int64(r.n)]) {
			return fmt.Errorf("chunk %d: Raw differs from input", c.Index)
		}
		if c.Hole {
			if c.Stored != nil || c.StoredLen() != 0 {
				return fmt.Errorf("hole %d has stored bytes", c.Index)
			}
			return nil
		}
		h, err := ParseHeader(c.Stored)
		if err != nil {
			return err
		}
		if h.Codec != c.Codec || c.StoredLen() != len(c.Stored) {
			return fmt.Errorf("chunk %d: header codec %s, Chunk.Codec %s", c.Index, h.Codec, c.Codec)
		}
		out, err := Decode(nil, c.Stored, c.ID)
		if err != nil {
			return err
		}
		if !bytes.Equal(out, c.Raw) {
			return fmt.Errorf("chunk %d: decoded bytes differ", c.Index)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != len(ref) {
		t.Fatalf("delivered %d chunks, want %d", got, len(ref))
	}
}

func TestSplitMatchesReference(t *testing.T) {
	zstd1, _ := compression.New(compression.Zstd, 1)
	lz4, _ := compression.New(compression.LZ4, 0)
	sizes := []int{0, 1, testChunk - 1, testChunk, testChunk + 1, 9*testChunk + 12345, 8 * testChunk}
	for _, n := range sizes {
		data := testData(n)
		for _, tc := range []struct {
			name string
			opts Options
		}{
			{"zstd", Options{ChunkSize: testChunk, Codec: zstd1}},
			{"lz4-1worker-1buffer", Options{ChunkSize: testChunk, Codec: lz4, Workers: 1, Buffers: 1}},
			{"none-4workers", Options{ChunkSize: testChunk, Workers: 4, Buffers: 5}},
		} {
			t.Run(fmt.Sprintf("%s/%d/ReaderAt", tc.name, n), func(t *testing.T) {
				checkSplit(t, data, tc.opts, func(fn func(context.Context, *Chunk) error) error {
					return Split(context.Background(), bytes.NewReader(data), int64(len(data)), tc.opts, fn)
				})
			})
			t.Run(fmt.Sprintf("%s/%d/Reader", tc.name, n), func(t *testing.T) {
				checkSplit(t, data, tc.opts, func(fn func(context.Context, *Chunk) error) error {
					// iotest-like: a reader that returns short reads.
					return SplitReader(context.Background(), &shortReader{r: bytes.NewReader(data)}, tc.opts, fn)
				})
			})
		}
	}
}

// shortReader returns at most 100 KiB per Read, as pipes and sockets do.
type shortReader struct{ r io.Reader }

func (s *shortReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 100<<10)]) }

func TestSplitFile(t *testing.T) {
	data := testData(5*testChunk + 4096)
	path := filepath.Join(t.TempDir(), "memory")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zstd1, _ := compression.New(compression.Zstd, 1)
	opts := Options{ChunkSize: testChunk, Codec: zstd1}
	checkSplit(t, data, opts, func(fn func(context.Context, *Chunk) error) error {
		return Split(context.Background(), f, int64(len(data)), opts, fn)
	})
	// A file shorter than the size claimed is an error, not short chunks.
	err = Split(context.Background(), f, int64(len(data))+1, opts, func(_ context.Context, c *Chunk) error { c.Release(); return nil })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short file: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestSplitKnown(t *testing.T) {
	data := testData(8 * testChunk)
	ref := reference(data, testChunk)
	known := map[ID]bool{ref[2].id: true} // also chunk 6, a copy of chunk 2
	var asked atomic.Int64
	opts := Options{ChunkSize: testChunk, Known: func(id ID) bool { asked.Add(1); return known[id] }}
	opts.Codec, _ = compression.New(compression.Zstd, 1)
	var knownIdx []int64
	err := Split(context.Background(), bytes.NewReader(data), int64(len(data)), opts, func(_ context.Context, c *Chunk) error {
		defer c.Release()
		if c.Known {
			knownIdx = append(knownIdx, c.Index)
			if c.Stored != nil || c.ID != ref[c.Index].id {
				return fmt.Errorf("known chunk %d: stored %d bytes, id %s", c.Index, len(c.Stored), c.ID)
			}
		} else if !c.Hole && c.Stored == nil {
			return fmt.Errorf("chunk %d has no stored form", c.Index)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(knownIdx) != "[2 6]" {
		t.Fatalf("known chunks %v, want [2 6]", knownIdx)
	}
	var nonHoles int64
	for _, r := range ref {
		if !r.hole {
			nonHoles++
		}
	}
	if asked.Load() != nonHoles || nonHoles == int64(len(ref)) {
		t.Fatalf("Known asked %d times, want %d (once per chunk that is not a hole)", asked.Load(), nonHoles)
	}
}

func TestSplitIncompressibleStoredUncompressed(t *testing.T) {
	data := make([]byte, 2*testChunk)
	memtest.FillMix(data, 5, 0, memtest.Mix{Random: 1})
	zstd1, _ := compression.New(compression.Zstd, 1)
	opts := Options{ChunkSize: testChunk, Codec: zstd1}
	err := Split(context.Background(), bytes.NewReader(data), int64(len(data)), opts, func(_ context.Context, c *Chunk) error {
		defer c.Release()
		if c.Codec != compression.IDNone || c.StoredLen() != HeaderSize+c.Len {
			return fmt.Errorf("chunk %d: codec %s, %d stored bytes", c.Index, c.Codec, c.StoredLen())
		}
		_, err := Decode(nil, c.Stored, c.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSplitOptionsValidate(t *testing.T) {
	err := Options{ChunkSize: 3 << 20, Workers: -1, Buffers: -2}.Validate()
	for _, field := range []string{"ChunkSize", "Workers", "Buffers"} {
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(field)) {
			t.Errorf("Validate() = %v, want a problem with %s", err, field)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero Options: %v", err)
	}
	called := false
	err = Split(context.Background(), bytes.NewReader(nil), 0, Options{ChunkSize: 12345}, func(context.Context, *Chunk) error { called = true; return nil })
	if err == nil || called {
		t.Fatalf("Split with a bad chunk size: %v, fn called %v", err, called)
	}
	if err := Split(context.Background(), bytes.NewReader(nil), -1, Options{}, nil); err == nil {
		t.Fatal("negative size accepted")
	}
}

// endless is an io.Reader and io.ReaderAt of memory-like bytes that never
// ends (ReadAt pretends the input is huge).
type endless struct{ page [memtest.PageSize]byte }

func newEndless() *endless {
	e := &endless{}
	memtest.FillMix(e.page[:], 1, 0, memtest.Mix{Text: 1})
	return e
}

func (e *endless) Read(p []byte) (int, error) { return e.ReadAt(p, 0) }
func (e *endless) ReadAt(p []byte, _ int64) (int, error) {
	for i := 0; i < len(p); i += len(e.page) {
		copy(p[i:], e.page[:])
	}
	return len(p), nil
}

// checkNoLeak fails if goroutines started during f are still running a
// while after it returns.
func checkNoLeak(t *testing.T, f func()) {
	t.Helper()
	before := runtime.NumGoroutine()
	f()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSplitCancel(t *testing.T) {
	zstd1, _ := compression.New(compression.Zstd, 1)
	opts := Options{ChunkSize: testChunk, Codec: zstd1, Workers: 3}
	const huge = 1 << 50 // the input would take years: only cancellation ends it
	for _, mode := range []string{"ReaderAt", "Reader"} {
		t.Run(mode, func(t *testing.T) {
			checkNoLeak(t, func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var delivered int
				fn := func(_ context.Context, c *Chunk) error {
					c.Release()
					delivered++
					if delivered == 5 {
						cancel()
					}
					return nil
				}
				var err error
				if mode == "ReaderAt" {
					err = Split(ctx, newEndless(), huge, opts, fn)
				} else {
					err = SplitReader(ctx, newEndless(), opts, fn)
				}
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
				if delivered != 5 {
					t.Fatalf("fn called %d times, want no call after the cancel (5)", delivered)
				}
			})
		})
	}
}

func TestSplitStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	opts := Options{ChunkSize: testChunk, Workers: 2}
	t.Run("fn", func(t *testing.T) {
		checkNoLeak(t, func() {
			calls := 0
			err := Split(context.Background(), newEndless(), 1<<50, opts, func(_ context.Context, c *Chunk) error {
				c.Release()
				calls++
				if calls == 3 {
					return boom
				}
				return nil
			})
			if err != boom || calls != 3 {
				t.Fatalf("err = %v after %d calls, want boom after 3", err, calls)
			}
		})
	})
	t.Run("read", func(t *testing.T) {
		checkNoLeak(t, func() {
			r := &failingReaderAt{r: newEndless(), failAt: 7 * testChunk, err: boom}
			err := Split(context.Background(), r, 1<<50, opts, func(_ context.Context, c *Chunk) error { c.Release(); return nil })
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
		})
	})
	t.Run("stream", func(t *testing.T) {
		checkNoLeak(t, func() {
			r := io.MultiReader(io.LimitReader(newEndless(), 3*testChunk+5), &failingReaderAt{err: boom})
			err := SplitReader(context.Background(), r, opts, func(_ context.Context, c *Chunk) error { c.Release(); return nil })
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
		})
	})
	t.Run("codec", func(t *testing.T) {
		checkNoLeak(t, func() {
			o := opts
			o.Codec = failingCodec{err: boom}
			err := Split(context.Background(), newEndless(), 1<<50, o, func(_ context.Context, c *Chunk) error { c.Release(); return nil })
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
		})
	})
}

type failingReaderAt struct {
	r      io.ReaderAt
	failAt int64
	err    error
}

func (f *failingReaderAt) Read([]byte) (int, error) { return 0, f.err }
func (f *failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.failAt {
		return 0, f.err
	}
	return f.r.ReadAt(p, off)
}

// failingCodec is a test-only codec that claims the zstd id and always fails.
type failingCodec struct{ err error }

func (failingCodec) ID() compression.ID                            { return compression.IDZstd }
func (failingCodec) Algorithm() compression.Algorithm              { return compression.Zstd }
func (failingCodec) Level() int                                    { return 1 }
func (f failingCodec) Encode(dst, _ []byte) ([]byte, error)        { return dst, f.err }
func (f failingCodec) Decode(dst, _ []byte, _ int) ([]byte, error) { return dst, f.err }

var _ compression.Codec = failingCodec{}

// TestSplitBoundedMemory pushes 200 chunks through 4 buffers while the
// consumer holds chunks and releases them from other goroutines (as an
// uploader does): no more than 4 chunks are ever out at once, no more than 4
// buffers are ever made, and every chunk still arrives.
func TestSplitBoundedMemory(t *testing.T) {
	const buffers, chunks = 4, 200
	zstd1, _ := compression.New(compression.Zstd, 1)
	opts := Options{ChunkSize: testChunk, Codec: zstd1, Workers: 2, Buffers: buffers}
	allocsBefore := buffersAllocated.Load()
	var out, maxOut atomic.Int64
	uploads := make(chan *Chunk)
	var uploaders sync.WaitGroup
	var uploaded atomic.Int64
	for range 3 {
		uploaders.Add(1)
		go func() {
			defer uploaders.Done()
			for c := range uploads {
				time.Sleep(100 * time.Microsecond) // the "upload"
				uploaded.Add(1)
				out.Add(-1)
				c.Release()
			}
		}()
	}
	err := Split(context.Background(), newEndless(), chunks*testChunk, opts, func(ctx context.Context, c *Chunk) error {
		n := out.Add(1)
		for {
			m := maxOut.Load()
			if n <= m || maxOut.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case uploads <- c:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(uploads)
	uploaders.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if uploaded.Load() != chunks {
		t.Fatalf("uploaded %d chunks, want %d", uploaded.Load(), chunks)
	}
	if maxOut.Load() > buffers {
		t.Fatalf("%d chunks out at once, Buffers is %d", maxOut.Load(), buffers)
	}
	if n := buffersAllocated.Load() - allocsBefore; n > buffers {
		t.Fatalf("%d buffers allocated for %d chunks, want at most %d", n, chunks, buffers)
	}
}

// TestReleaseAfterSplit: releasing late or twice is harmless.
func TestReleaseAfterSplit(t *testing.T) {
	var kept []*Chunk
	err := Split(context.Background(), newEndless(), 3*testChunk, Options{ChunkSize: testChunk, Buffers: 3}, func(_ context.Context, c *Chunk) error {
		kept = append(kept, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range kept {
		c.Release()
		c.Release()
		if c.Raw != nil || c.Stored != nil {
			t.Fatal("Release left the byte slices set")
		}
	}
}

// BenchmarkChunker measures Split end to end (zero detection, SHA-256,
// compression, stored-form encoding) in MB/s of input, on memtest bytes with
// 60% zero pages held in memory. The input is 1 GiB; set
// HANGAR_BENCH_SIZE (bytes, or with a MiB/GiB suffix) to change it, e.g.
// HANGAR_BENCH_SIZE=64MiB go test -bench Chunker -benchtime=1x.
func BenchmarkChunker(b *testing.B) {
	size := benchSize(b)
	data := make([]byte, size)
	memtest.Fill(data, 1, 0.6)
	for _, s := range []struct {
		alg   compression.Algorithm
		level int
	}{{compression.Zstd, 1}, {compression.LZ4, 0}, {compression.None, 0}} {
		codec, err := compression.New(s.alg, s.level)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s-%d", s.alg, s.level), func(b *testing.B) {
			b.SetBytes(size)
			var stored, holes int64
			for b.Loop() {
				stored, holes = 0, 0
				err := Split(context.Background(), bytes.NewReader(data), size, Options{Codec: codec}, func(_ context.Context, c *Chunk) error {
					stored += int64(c.StoredLen())
					if c.Hole {
						holes++
					}
					c.Release()
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(stored)/float64(size), "ratio")
			b.ReportMetric(float64(holes), "holes")
		})
	}
}

// BenchmarkWorkerStages splits one worker's work on a non-hole chunk into
// its stages, on one goroutine: the per-core floor of the chunker. SHA-256
// (the chunk id, DESIGN §3) runs at the SHA-NI hardware rate and zstd level 1
// at klauspost/compress's fastest strategy; "cpu-s/GiB" is the CPU time of
// the benchmark's thread per GiB of raw input (what N workers divide by N
// at best), steadier than MB/s when other processes load the machine.
// docs/benchmarks.md explains what was tried to lower it.
func BenchmarkWorkerStages(b *testing.B) {
	raw := benchChunk()
	codec, err := compression.New(compression.Zstd, 1)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 2*len(raw))
	for _, s := range []struct {
		name string
		fn   func()
	}{
		{"sha256", func() { Sum(raw) }},
		{"zstd-1", func() { dst, _ = codec.Encode(dst[:0], raw) }},
		{"sha256+zstd-1", func() { Sum(raw); dst, _ = codec.Encode(dst[:0], raw) }},
	} {
		b.Run(s.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			s.fn() // warm up: the codec's pooled encoder is built on first use
			b.SetBytes(int64(len(raw)))
			cpu0, ok := threadCPU()
			for b.Loop() {
				s.fn()
			}
			if cpu1, ok1 := threadCPU(); ok && ok1 {
				perByte := (cpu1 - cpu0).Seconds() / float64(b.N) / float64(len(raw))
				b.ReportMetric(perByte*(1<<30), "cpu-s/GiB")
			}
		})
	}
}

func benchSize(b *testing.B) int64 {
	s := os.Getenv("HANGAR_BENCH_SIZE")
	if s == "" {
		return 1 << 30
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if t, ok := bytes.CutSuffix([]byte(s), []byte(suffix)); ok {
			s, mult = string(t), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("HANGAR_BENCH_SIZE=%q: want a positive size like 1073741824 or 64MiB", os.Getenv("HANGAR_BENCH_SIZE"))
	}
	return n * mult
}
