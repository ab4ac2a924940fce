package cache

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// fakeClock is a clock tests advance by hand, so that recency written to
// disk (mtimes) is deterministic.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func withClock(c *fakeClock) Option { return func(o *options) { o.now = c.now } }

// mkChunk returns the id and the uncompressed stored form of rawLen
// memory-like bytes from seed: exactly rawLen+chunk.HeaderSize bytes, which
// makes sizes in eviction tests exact.
func mkChunk(t testing.TB, seed uint64, rawLen int) (chunk.ID, []byte) {
	t.Helper()
	raw := make([]byte, rawLen)
	memtest.Fill(raw, seed, 0)
	stored, err := chunk.Encode(nil, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return chunk.Sum(raw), stored
}

func open(t testing.TB, dir string, max int64, opts ...Option) *Cache {
	t.Helper()
	c, err := Open(dir, max, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustPut(t testing.TB, c *Cache, id chunk.ID, stored []byte) {
	t.Helper()
	if err := c.Put(id, stored); err != nil {
		t.Fatal(err)
	}
}

func mustGet(t testing.TB, c *Cache, id chunk.ID, want []byte) {
	t.Helper()
	got, err := c.Get(id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %s: %d bytes differ from the %d put", id, len(got), len(want))
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	zstd, err := compression.New(compression.Zstd, 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		rawLen int
		zero   float64
		codec  compression.Codec
	}{
		{"empty", 0, 0, nil},
		{"one byte", 1, 0, nil},
		{"page", 4096, 0, nil},
		{"1MiB none", 1 << 20, 0, nil},
		{"1MiB zstd", 1 << 20, 0.5, zstd},
		{"4MiB zstd", 4 << 20, 0.3, zstd},
	}
	c := open(t, t.TempDir(), 64<<20)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := make([]byte, tt.rawLen)
			memtest.Fill(raw, uint64(i), tt.zero)
			id := chunk.Sum(raw)
			stored, err := chunk.Encode(nil, raw, tt.codec)
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(stored)
			mustPut(t, c, id, stored)
			clear(stored) // the caller may reuse its buffer after Put
			if !c.Has(id) {
				t.Fatal("Has is false after Put")
			}
			got, err := c.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("Get returned other bytes than Put")
			}
			dec, err := chunk.Decode(nil, got, id)
			if err != nil || !bytes.Equal(dec, raw) {
				t.Fatalf("cached bytes do not decode to the chunk: %v", err)
			}
			onDisk, err := os.ReadFile(filepath.Join(c.Dir(), id.String()[:2], id.String()))
			if err != nil || !bytes.Equal(onDisk, want) {
				t.Fatalf("file is not the stored bytes verbatim: %v", err)
			}
		})
	}
}

func TestGetMiss(t *testing.T) {
	c := open(t, t.TempDir(), 1<<20)
	id, _ := mkChunk(t, 1, 100)
	_, err := c.Get(id)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("miss: got %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), id.String()) {
		t.Errorf("error %q does not name the chunk", err)
	}
	if c.Has(id) {
		t.Error("Has is true for a chunk never put")
	}
}

func TestPutIdempotent(t *testing.T) {
	c := open(t, t.TempDir(), 1<<20)
	id, stored := mkChunk(t, 1, 1000)
	for range 3 {
		mustPut(t, c, id, stored)
	}
	if s := c.Stats(); s.Entries != 1 || s.Bytes != int64(len(stored)) {
		t.Fatalf("after 3 Puts of one id: %+v", s)
	}
	mustGet(t, c, id, stored)
}

func TestPutRejectsNonChunks(t *testing.T) {
	_, good := mkChunk(t, 1, 1000)
	zstd, _ := compression.New(compression.Zstd, 1)
	raw := make([]byte, 1<<16)
	compressed, err := chunk.Encode(nil, raw, zstd)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		stored []byte
	}{
		{"empty", nil},
		{"short header", good[:5]},
		{"garbage", bytes.Repeat([]byte("x"), 100)},
		{"zeroed", make([]byte, len(good))},
		{"truncated payload", good[:len(good)-1]},
		{"extra byte", append(bytes.Clone(good), 0)},
		{"compressed as long as raw", append(compressed, make([]byte, 1<<16)...)},
	}
	c := open(t, t.TempDir(), 1<<20)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := chunk.Sum([]byte(tt.name))
			err := c.Put(id, tt.stored)
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if c.Has(id) {
				t.Fatal("rejected bytes were cached")
			}
		})
	}
	if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 {
		t.Fatalf("stats after rejected puts: %+v", s)
	}
}

// TestEviction fills a cache that holds three entries, does something to
// them, puts a fourth, and checks which one went.
func TestEviction(t *testing.T) {
	const rawLen = 1000
	size := int64(rawLen + chunk.HeaderSize)
	tests := []struct {
		name    string
		touch   func(t *testing.T, c *Cache, ids []chunk.ID, stored [][]byte)
		evicted int // index of the entry evicted by the fourth Put
	}{
		{"no access: oldest goes", func(*testing.T, *Cache, []chunk.ID, [][]byte) {}, 0},
		{"get protects the oldest", func(t *testing.T, c *Cache, ids []chunk.ID, s [][]byte) {
			mustGet(t, c, ids[0], s[0])
		}, 1},
		{"put again protects it", func(t *testing.T, c *Cache, ids []chunk.ID, s [][]byte) {
			mustPut(t, c, ids[0], s[0])
		}, 1},
		{"get all in reverse", func(t *testing.T, c *Cache, ids []chunk.ID, s [][]byte) {
			for i := 2; i >= 0; i-- {
				mustGet(t, c, ids[i], s[i])
			}
		}, 2},
		{"has does not count as use", func(t *testing.T, c *Cache, ids []chunk.ID, _ [][]byte) {
			c.Has(ids[0])
		}, 0},
		{"a miss changes nothing", func(t *testing.T, c *Cache, _ []chunk.ID, _ [][]byte) {
			other, _ := mkChunk(t, 99, 10)
			c.Get(other)
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, t.TempDir(), 3*size)
			ids := make([]chunk.ID, 4)
			stored := make([][]byte, 4)
			for i := range ids {
				ids[i], stored[i] = mkChunk(t, uint64(i), rawLen)
			}
			for i := range 3 {
				mustPut(t, c, ids[i], stored[i])
			}
			tt.touch(t, c, ids, stored)
			mustPut(t, c, ids[3], stored[3])
			for i, id := range ids {
				if got, want := c.Has(id), i != tt.evicted; got != want {
					t.Errorf("entry %d: Has = %v, want %v", i, got, want)
				}
				_, err := os.Stat(c.path(id))
				if got, want := err == nil, i != tt.evicted; got != want {
					t.Errorf("entry %d: file exists = %v, want %v (%v)", i, got, want, err)
				}
			}
			if s := c.Stats(); s.Evictions != 1 || s.Entries != 3 || s.Bytes != 3*size {
				t.Errorf("stats: %+v", s)
			}
		})
	}
}

func TestEvictionMakesRoomForLargeEntry(t *testing.T) {
	c := open(t, t.TempDir(), 10_000)
	var small []chunk.ID
	for i := range 5 {
		id, s := mkChunk(t, uint64(i), 1000)
		mustPut(t, c, id, s)
		small = append(small, id)
	}
	big, bigStored := mkChunk(t, 100, 9000)
	mustPut(t, c, big, bigStored)
	if !c.Has(big) {
		t.Fatal("the entry being put was evicted")
	}
	for i, id := range small {
		if c.Has(id) {
			t.Errorf("small entry %d kept: %d + %d bytes do not fit in 10000", i, 1012, len(bigStored))
		}
	}
	if s := c.Stats(); s.Evictions != 5 || s.Bytes != int64(len(bigStored)) {
		t.Errorf("stats: %+v", s)
	}
}

func TestOversizeNotCached(t *testing.T) {
	c := open(t, t.TempDir(), 2000)
	small, smallStored := mkChunk(t, 1, 500)
	mustPut(t, c, small, smallStored)
	big, bigStored := mkChunk(t, 2, 2000) // 2012 bytes stored
	if err := c.Put(big, bigStored); err != nil {
		t.Fatalf("oversize Put: %v, want nil", err)
	}
	if c.Has(big) {
		t.Fatal("chunk larger than the cache was kept")
	}
	if !c.Has(small) {
		t.Fatal("an oversize Put evicted another entry")
	}
	if s := c.Stats(); s.Evictions != 0 || s.Entries != 1 {
		t.Fatalf("stats: %+v", s)
	}
	ents, _ := os.ReadDir(filepath.Join(c.Dir(), big.String()[:2]))
	for _, e := range ents {
		if strings.Contains(e.Name(), big.String()[:16]) {
			t.Fatalf("file %s left for an uncached chunk", e.Name())
		}
	}
}

func TestRemove(t *testing.T) {
	c := open(t, t.TempDir(), 1<<20)
	id, stored := mkChunk(t, 1, 1000)
	mustPut(t, c, id, stored)
	if err := c.Remove(id); err != nil {
		t.Fatal(err)
	}
	if c.Has(id) {
		t.Fatal("Has after Remove")
	}
	if _, err := os.Stat(c.path(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file after Remove: %v", err)
	}
	if _, err := c.Get(id); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if err := c.Remove(id); err != nil {
		t.Fatalf("Remove of a missing id: %v", err)
	}
	if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 || s.Evictions != 0 {
		t.Fatalf("stats: %+v", s)
	}
	mustPut(t, c, id, stored) // and it can come back
	mustGet(t, c, id, stored)
}

func TestStats(t *testing.T) {
	size := int64(100 + chunk.HeaderSize)
	c := open(t, t.TempDir(), 2*size)
	ids := make([]chunk.ID, 3)
	stored := make([][]byte, 3)
	for i := range ids {
		ids[i], stored[i] = mkChunk(t, uint64(i), 100)
	}
	mustPut(t, c, ids[0], stored[0])
	mustGet(t, c, ids[0], stored[0])
	mustGet(t, c, ids[0], stored[0])
	c.Get(ids[1])
	mustPut(t, c, ids[1], stored[1])
	mustPut(t, c, ids[2], stored[2]) // evicts ids[0]
	c.Get(ids[0])
	want := Stats{Bytes: 2 * size, Entries: 2, MaxBytes: 2 * size, Hits: 2, Misses: 2, Evictions: 1}
	if got := c.Stats(); got != want {
		t.Fatalf("stats:\n got %+v\nwant %+v", got, want)
	}
}

// TestRestart checks that entries and their approximate recency survive a
// Close and Open: with recency written on every hit the order is exact; with
// a long touch interval, hits within it are lost and the order is that of
// the Puts.
func TestRestart(t *testing.T) {
	const rawLen = 1000
	size := int64(rawLen + chunk.HeaderSize)
	tests := []struct {
		name     string
		interval time.Duration
		evicted  int
	}{
		{"every hit recorded", 0, 1},
		{"hits within the interval not recorded", time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := newClock()
			c := open(t, dir, 3*size, withClock(clk), WithTouchInterval(tt.interval))
			ids := make([]chunk.ID, 4)
			stored := make([][]byte, 4)
			for i := range ids {
				ids[i], stored[i] = mkChunk(t, uint64(i), rawLen)
			}
			for i := range 3 {
				mustPut(t, c, ids[i], stored[i])
				clk.advance(time.Second)
			}
			mustGet(t, c, ids[0], stored[0]) // newest in memory; on disk only if recorded
			clk.advance(time.Second)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}

			c = open(t, dir, 3*size, withClock(clk), WithTouchInterval(tt.interval))
			if s := c.Stats(); s.Entries != 3 || s.Bytes != 3*size || s.Hits != 0 {
				t.Fatalf("after restart: %+v", s)
			}
			mustPut(t, c, ids[3], stored[3])
			for i, id := range ids {
				if got, want := c.Has(id), i != tt.evicted; got != want {
					t.Errorf("entry %d: Has = %v, want %v", i, got, want)
				}
			}
			for i, id := range ids {
				if i != tt.evicted {
					mustGet(t, c, id, stored[i])
				}
			}
		})
	}
}

func TestOpenShrinksToMaxBytes(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	c := open(t, dir, 1<<20, withClock(clk))
	ids := make([]chunk.ID, 5)
	for i := range ids {
		var s []byte
		ids[i], s = mkChunk(t, uint64(i), 1000)
		mustPut(t, c, ids[i], s)
		clk.advance(time.Second)
	}
	c.Close()
	c = open(t, dir, 2*1012)
	for i, id := range ids {
		if got, want := c.Has(id), i >= 3; got != want {
			t.Errorf("entry %d: Has = %v, want %v", i, got, want)
		}
	}
	if s := c.Stats(); s.Entries != 2 || s.Bytes != 2*1012 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestOpenCleans plants what a crash, a bug or a person could leave in the
// directory and checks that Open keeps exactly the valid entries.
func TestOpenCleans(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, 1<<20)
	goodID, good := mkChunk(t, 1, 1000)
	mustPut(t, c, goodID, good)
	c.Close()

	place := func(id chunk.ID) string { return filepath.Join(dir, id.String()[:2], id.String()) }
	write := func(p string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var gone []string
	plant := func(p string, b []byte) { write(p, b); gone = append(gone, p) }

	truncID, trunc := mkChunk(t, 2, 1000)
	plant(place(truncID), trunc[:500])
	emptyID, _ := mkChunk(t, 3, 1000)
	plant(place(emptyID), nil)
	zeroID, zeroed := mkChunk(t, 4, 1000)
	plant(place(zeroID), make([]byte, len(zeroed)))
	plant(filepath.Join(dir, goodID.String()[:2], tempPrefix+"abc-123"), good[:100])
	plant(filepath.Join(dir, "00", "not-a-chunk"), good)
	plant(filepath.Join(dir, "00", strings.ToUpper(goodID.String())), good)
	plant(filepath.Join(dir, "00", goodID.String()[:63]), good)
	wrongPrefix := "ff"
	if goodID.String()[:2] == "ff" {
		wrongPrefix = "fe"
	}
	plant(filepath.Join(dir, wrongPrefix, goodID.String()), good)
	dirID, _ := mkChunk(t, 5, 10)
	plant(filepath.Join(place(dirID), "inside"), good)
	// Outside the layout the cache owns: left alone.
	foreign := filepath.Join(dir, "README")
	write(foreign, []byte("not ours"))

	c = open(t, dir, 1<<20)
	if s := c.Stats(); s.Entries != 1 || s.Bytes != int64(len(good)) {
		t.Fatalf("after Open: %+v, want only the one valid entry", s)
	}
	mustGet(t, c, goodID, good)
	for _, id := range []chunk.ID{truncID, emptyID, zeroID, dirID} {
		if c.Has(id) {
			t.Errorf("%s indexed", id)
		}
	}
	for _, p := range gone {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed (%v)", p, err)
		}
	}
	if _, err := os.Stat(place(dirID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory under a chunk name not removed (%v)", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("file outside the cache layout removed: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open("", 0, WithTouchInterval(-time.Second))
	if err == nil {
		t.Fatal("Open accepted an empty dir, zero size and negative interval")
	}
	for _, want := range []string{"empty directory", "max bytes 0", "touch interval -1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}

	dir := t.TempDir()
	c := open(t, dir, 1<<20)
	if _, err := Open(dir, 1<<20); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of a directory in use: %v", err)
	}
	c.Close()
	c2, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	c2.Close()

	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Open(file, 1<<20); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}

// TestGetFileGoneIsMiss: a file deleted behind the cache's back is a miss,
// and the entry is dropped, not served or reported forever.
func TestGetFileGoneIsMiss(t *testing.T) {
	c := open(t, t.TempDir(), 1<<20)
	id, stored := mkChunk(t, 1, 1000)
	mustPut(t, c, id, stored)
	os.Remove(c.path(id))
	if _, err := c.Get(id); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if s := c.Stats(); c.Has(id) || s.Bytes != 0 || s.Misses != 1 || s.Hits != 0 {
		t.Fatalf("entry of a deleted file still indexed: %+v", s)
	}
}

// TestConcurrent runs readers, writers and removers over overlapping ids in
// a cache that holds about a third of them, so that eviction races with
// everything. Every Get must return exactly what was Put for its id, and at
// the end the index and the directory must agree.
func TestConcurrent(t *testing.T) {
	const (
		nIDs     = 24
		workers  = 8
		opsEach  = 400
		maxBytes = 8 * (4096 + chunk.HeaderSize)
	)
	ids := make([]chunk.ID, nIDs)
	stored := make([][]byte, nIDs)
	for i := range ids {
		ids[i], stored[i] = mkChunk(t, uint64(i), 4096)
	}
	c := open(t, t.TempDir(), maxBytes, WithTouchInterval(0))

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range opsEach {
				i := r.IntN(nIDs)
				switch op := r.IntN(10); {
				case op < 5:
					got, err := c.Get(ids[i])
					if errors.Is(err, storage.ErrNotFound) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, stored[i]) {
						errs <- fmt.Errorf("torn or wrong read of entry %d: %d bytes", i, len(got))
						return
					}
				case op < 9:
					// Each writer passes its own copy and scribbles on it
					// afterwards, as a caller reusing its buffer would.
					buf := bytes.Clone(stored[i])
					if err := c.Put(ids[i], buf); err != nil {
						errs <- err
						return
					}
					clear(buf)
				default:
					if err := c.Remove(ids[i]); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	s := c.Stats()
	if s.Bytes > maxBytes {
		t.Errorf("cache holds %d bytes, over its maximum %d", s.Bytes, maxBytes)
	}
	if s.Hits+s.Misses == 0 || s.Evictions == 0 {
		t.Errorf("the test did not exercise hits and evictions: %+v", s)
	}
	var files, total int64
	err := filepath.WalkDir(c.Dir(), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == lockName {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return fmt.Errorf("temporary file %s left behind", p)
		}
		id, err := chunk.ParseID(d.Name())
		if err != nil {
			return err
		}
		if !c.Has(id) {
			return fmt.Errorf("file %s not in the index", p)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		total += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != s.Entries || total != s.Bytes {
		t.Errorf("directory holds %d files of %d bytes, index %d entries of %d bytes", files, total, s.Entries, s.Bytes)
	}
	for i, id := range ids {
		if c.Has(id) {
			mustGet(t, c, id, stored[i])
		}
	}
}
