package cache

import (
	"testing"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage/chunk"
)

const benchChunk = 4 << 20

// benchChunks returns n distinct 4 MiB chunks in zstd-1 stored form, as an
// upload would put them.
func benchChunks(b *testing.B, n int) ([]chunk.ID, [][]byte) {
	b.Helper()
	zstd, err := compression.New(compression.Zstd, 1)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]chunk.ID, n)
	stored := make([][]byte, n)
	raw := make([]byte, benchChunk)
	for i := range n {
		memtest.Fill(raw, uint64(i), 0.3)
		ids[i] = chunk.Sum(raw)
		if stored[i], err = chunk.Encode(nil, raw, zstd); err != nil {
			b.Fatal(err)
		}
	}
	return ids, stored
}

// BenchmarkPut puts new entries into a cache that holds four of them, so
// that every Put past the fourth also evicts.
func BenchmarkPut(b *testing.B) {
	ids, stored := benchChunks(b, 8)
	c := open(b, b.TempDir(), 4*(benchChunk+chunk.HeaderSize))
	b.SetBytes(int64(len(stored[0])))
	for i := 0; b.Loop(); i++ {
		k := i % len(ids)
		if err := c.Remove(ids[k]); err != nil { // make every Put a write
			b.Fatal(err)
		}
		if err := c.Put(ids[k], stored[k]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet reads cached entries round robin (the page cache holds them:
// this is the cache's overhead, not the disk's speed).
func BenchmarkGet(b *testing.B) {
	ids, stored := benchChunks(b, 4)
	c := open(b, b.TempDir(), 1<<30)
	for i := range ids {
		mustPut(b, c, ids[i], stored[i])
	}
	b.SetBytes(int64(len(stored[0])))
	for i := 0; b.Loop(); i++ {
		if _, err := c.Get(ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetParallel is BenchmarkGet from several goroutines, to show
// that reads do not serialize on the index lock.
func BenchmarkGetParallel(b *testing.B) {
	ids, stored := benchChunks(b, 4)
	c := open(b, b.TempDir(), 1<<30)
	for i := range ids {
		mustPut(b, c, ids[i], stored[i])
	}
	b.SetBytes(int64(len(stored[0])))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.Get(ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
