package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/fs"
)

// TestUploadMemoryBounded uploads a 256 MiB file in 4 MiB chunks and checks
// that the Go heap's high-water mark stays far below the file size: the
// pipeline holds a fixed number of chunk buffers, whatever the input.
func TestUploadMemoryBounded(t *testing.T) {
	const size = 256 << 20
	dir := t.TempDir()
	path := filepath.Join(dir, "memory")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	piece := make([]byte, 4<<20)
	for i := range size / len(piece) {
		memtest.Fill(piece, uint64(i), 0.6)
		if _, err := f.Write(piece); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	piece = nil
	st, err := fs.Open(filepath.Join(dir, "store")) // on disk: the store's bytes are not heap
	if err != nil {
		t.Fatal(err)
	}
	r := newRepo(t, st)
	runtime.GC()

	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	m, err := r.Upload(context.Background(), info("big", zstd1()), []FileSource{{Name: "memory", Path: path}},
		UploadOptions{ChunkSize: chunk.DefaultSize})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if m.Totals.Raw != size {
		t.Fatalf("uploaded %d bytes", m.Totals.Raw)
	}
	t.Logf("heap high-water %d MiB for a %d MiB upload", peak>>20, size>>20)
	// Default buffers: (2 × workers + 8 uploaders) × ~8 MiB and the zstd
	// encoders' history, about 125 MiB on 2 CPUs; under -race sync.Pool
	// drops items on purpose, which adds garbage (about 210 MiB seen). The
	// target is 512 MiB whatever the file size.
	if limit := uint64(320 << 20); peak > limit {
		t.Fatalf("heap high-water %d MiB, want under %d MiB", peak>>20, limit>>20)
	}
}
