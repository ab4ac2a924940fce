package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/digests"
)

// benchSize is the file size of the pipeline benchmarks: HANGAR_BENCH_SIZE
// bytes (so CI can run them tiny), default 64 MiB. The full-size
// comparison with a zstd + single-object baseline is
// `go run ./cmd/hangar-bench upload` (docs/benchmarks.md).
func benchSize(b *testing.B) int64 {
	if s := os.Getenv("HANGAR_BENCH_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("HANGAR_BENCH_SIZE=%q: want a positive number of bytes", s)
		}
		return n
	}
	return 64 << 20
}

// benchFile writes a memory-like file (60% zero pages) of benchSize bytes.
func benchFile(b *testing.B) (string, int64) {
	size := benchSize(b)
	p := filepath.Join(b.TempDir(), "memory")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	piece := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(piece)) {
		w := piece[:min(int64(len(piece)), size-off)]
		memtest.Fill(w, uint64(off), 0.6)
		if _, err := f.Write(w); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p, size
}

// BenchmarkUpload uploads the file to a fresh bucket of a real MinIO server
// per iteration (nothing deduplicated), zstd level 1, 4 MiB chunks.
func BenchmarkUpload(b *testing.B) {
	p, size := benchFile(b)
	files := []FileSource{{Name: "memory", Path: p}}
	b.SetBytes(size)
	var m *Manifest
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := newRepo(b, minioStore(b))
		b.StartTimer()
		var err error
		if m, err = r.Upload(context.Background(), info("bench", zstd1()), files, UploadOptions{ChunkSize: chunk.DefaultSize}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(m.Totals.Compressed)/float64(m.Totals.Raw), "stored/raw")
}

// BenchmarkDownload downloads the uploaded file into a fresh directory per
// iteration, with no cache: every chunk from MinIO, verified and
// decompressed.
func BenchmarkDownload(b *testing.B) {
	p, size := benchFile(b)
	r := newRepo(b, minioStore(b))
	m, err := r.Upload(context.Background(), info("bench", zstd1()), []FileSource{{Name: "memory", Path: p}}, UploadOptions{ChunkSize: chunk.DefaultSize})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		if _, err := r.Download(context.Background(), m, dir, DownloadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteChunk compares ways to write decoded 4 MiB chunks of
// memory-like data (40% zero pages, some scattered singly) into a fresh
// sparse file, as a download does: chunk.WriteSparse (one pwrite per run of
// non-zero pages, zero pages left as holes) against one WriteAt of the
// whole chunk, and one WriteAt followed by punching the zero runs out
// again. Each iteration writes benchSize bytes into a new file and drops
// it; the page cache does the rest, so this is the CPU cost of the write
// path, not the disk's.
func BenchmarkWriteChunk(b *testing.B) {
	size := benchSize(b)
	const cs = chunk.DefaultSize
	chunks := make([][]byte, size/cs)
	for i := range chunks {
		chunks[i] = make([]byte, cs)
		memtest.Fill(chunks[i], uint64(i), 0.4)
	}
	punch := func(f *os.File, raw []byte, off int64) error {
		if _, err := f.WriteAt(raw, off); err != nil {
			return err
		}
		start := -1
		flush := func(end int) error {
			if start < 0 {
				return nil
			}
			err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off+int64(start), int64(end-start))
			start = -1
			return err
		}
		for p := 0; p < len(raw); p += chunk.SparsePage {
			if chunk.IsZero(raw[p:min(p+chunk.SparsePage, len(raw))]) {
				if start < 0 {
					start = p
				}
			} else if err := flush(p); err != nil {
				return err
			}
		}
		return flush(len(raw))
	}
	whole := func(f *os.File, raw []byte, off int64) error {
		_, err := f.WriteAt(raw, off)
		return err
	}
	for _, tc := range []struct {
		name  string
		write func(*os.File, []byte, int64) error
	}{{"sparse-pwrite", func(f *os.File, raw []byte, off int64) error { return chunk.WriteSparse(f, raw, off) }}, {"whole", whole}, {"whole+punch", punch}} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(int64(len(chunks)) * cs)
			for i := 0; i < b.N; i++ {
				f, err := os.Create(filepath.Join(dir, "memory"))
				if err != nil {
					b.Fatal(err)
				}
				if err := f.Truncate(int64(len(chunks)) * cs); err != nil {
					b.Fatal(err)
				}
				for j, raw := range chunks {
					if err := tc.write(f, raw, int64(j)*cs); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				f.Close()
				os.Remove(f.Name())
				b.StartTimer()
			}
		})
	}
}

// BenchmarkDownloadCacheFill downloads from an in-memory store into a
// fresh file and a fresh host cache per iteration, the cache filled
// through Offer (BackgroundCacheFill) or Put (inline in the fetch
// workers, the default); it
// reports CPU-seconds per GiB of raw data beside the wall time.
func BenchmarkDownloadCacheFill(b *testing.B) {
	p, size := benchFile(b)
	r := newRepo(b, newMem())
	m, err := r.Upload(context.Background(), info("bench", zstd1()), []FileSource{{Name: "memory", Path: p}}, UploadOptions{ChunkSize: chunk.DefaultSize})
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"offer", "inline"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(size)
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				c, err := cache.Open(filepath.Join(dir, "cache"), 1<<40)
				if err != nil {
					b.Fatal(err)
				}
				c0 := processCPU()
				b.StartTimer()
				if _, err := r.Download(context.Background(), m, dir, DownloadOptions{Cache: c, NoSync: true, BackgroundCacheFill: mode == "offer"}); err != nil {
					b.Fatal(err)
				}
				if err := c.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += processCPU() - c0
				c.Close()
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "CPU-s/GiB")
		})
	}
}

// processCPU is this process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReupload uploads the file once to a real MinIO server, then
// measures the upload of a copy with 1% of its non-hole chunks changed (a
// byte each), under a new snapshot id per iteration, as a host that knows
// the store's chunks does: "hash" hashes every chunk (no digest key),
// "digests" recalls the ids of unchanged chunks from the record the
// previous upload left (UploadOptions.DigestKey). CPU-seconds per GiB of
// raw data are reported beside the wall time.
func BenchmarkReupload(b *testing.B) {
	p, size := benchFile(b)
	key := digestKey(b, 1)
	ctx := context.Background()
	changed := filepath.Join(filepath.Dir(p), "changed")
	raw, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	var data []int
	for off := 0; off < len(raw); off += chunk.DefaultSize {
		if !chunk.IsZero(raw[off:min(off+chunk.DefaultSize, len(raw))]) {
			data = append(data, off)
		}
	}
	for n, i := max(1, len(data)/100), 0; i < n; i++ {
		raw[data[i*len(data)/n]] ^= 0x5a
	}
	if err := os.WriteFile(changed, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, arm := range []string{"hash", "digests"} {
		b.Run(arm, func(b *testing.B) {
			r := newRepo(b, minioStore(b))
			opts := UploadOptions{ChunkSize: chunk.DefaultSize}
			if arm == "digests" {
				opts.DigestKey = key
			}
			b.SetBytes(size)
			var cpu time.Duration
			var last Progress
			opts.Progress = func(p Progress) { last = p }
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// The first upload, and the record it leaves, moved to
				// the changed copy (a record describes bytes, not a path).
				if _, err := r.Upload(ctx, info("first-"+strconv.Itoa(i), zstd1()), []FileSource{{Name: "memory", Path: p}}, opts); err != nil {
					b.Fatal(err)
				}
				if arm == "digests" {
					if err := os.Rename(digests.PathFor(p), digests.PathFor(changed)); err != nil {
						b.Fatal(err)
					}
				}
				c0 := processCPU()
				b.StartTimer()
				if _, err := r.Upload(ctx, info("second-"+strconv.Itoa(i), zstd1()), []FileSource{{Name: "memory", Path: changed}}, opts); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += processCPU() - c0
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "CPU-s/GiB")
			b.ReportMetric(float64(last.Unchanged)/float64(last.NonZero), "unchanged/nonzero")
		})
	}
}

// BenchmarkDownloadDigests downloads from an in-memory store into a fresh
// directory per iteration (NoSync, no cache), without and with the host
// digest key: the cost of recording the restored file's chunk digests
// (DownloadOptions.DigestKey), in CPU-seconds per GiB of raw data.
func BenchmarkDownloadDigests(b *testing.B) {
	p, size := benchFile(b)
	r := newRepo(b, newMem())
	m, err := r.Upload(context.Background(), info("bench", zstd1()), []FileSource{{Name: "memory", Path: p}}, UploadOptions{ChunkSize: chunk.DefaultSize})
	if err != nil {
		b.Fatal(err)
	}
	for _, arm := range []string{"none", "digests"} {
		b.Run(arm, func(b *testing.B) {
			opts := DownloadOptions{NoSync: true}
			if arm == "digests" {
				opts.DigestKey = digestKey(b, 1)
			}
			b.SetBytes(size)
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				c0 := processCPU()
				b.StartTimer()
				if _, err := r.Download(context.Background(), m, dir, opts); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += processCPU() - c0
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "CPU-s/GiB")
		})
	}
}
