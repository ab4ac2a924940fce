package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage/chunk"
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
