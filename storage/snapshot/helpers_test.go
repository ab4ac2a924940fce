package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/mem"
)

var _ ChunkCache = (*cache.Cache)(nil)

const testChunk = chunk.MinSize // 1 MiB keeps the tests quick

// testConfig keeps lock timings short so that lock tests run in seconds.
func testConfig() Config {
	return Config{
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		LockRefresh: 100 * time.Millisecond,
		LockStale:   2 * time.Second,
		LockPoll:    50 * time.Millisecond,
	}
}

func newRepo(t testing.TB, s storage.Store) *Repo {
	t.Helper()
	r, err := New(s, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// countingStore counts the chunk operations that reach the store below.
type countingStore struct {
	storage.Store
	creates, created, gets atomic.Int64
	mu                     sync.Mutex
	perKey                 map[string]int // successful Creates and Gets of chunk keys
	afterCreate            func(n int64)  // called after every successful chunk Create
}

func newCounting(s storage.Store) *countingStore {
	return &countingStore{Store: s, perKey: make(map[string]int)}
}

func (c *countingStore) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	if !strings.HasPrefix(key, "chunks/") {
		return c.Store.Create(ctx, key, r, size)
	}
	c.creates.Add(1)
	err := c.Store.Create(ctx, key, r, size)
	if err == nil {
		n := c.created.Add(1)
		c.mu.Lock()
		c.perKey["create "+key]++
		c.mu.Unlock()
		if c.afterCreate != nil {
			c.afterCreate(n)
		}
	}
	return err
}

func (c *countingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, "chunks/") {
		c.gets.Add(1)
		c.mu.Lock()
		c.perKey["get "+key]++
		c.mu.Unlock()
	}
	return c.Store.Get(ctx, key, off, n)
}

// maxPerKey returns the highest count of op ("create", "get") on one key.
func (c *countingStore) maxPerKey(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := 0
	for k, n := range c.perKey {
		if strings.HasPrefix(k, op+" ") {
			m = max(m, n)
		}
	}
	return m
}

// mapCache is a ChunkCache fake next to the real storage/cache.
type mapCache struct {
	mu      sync.Mutex
	m       map[chunk.ID][]byte
	hits    int
	removed int
}

func newMapCache() *mapCache { return &mapCache{m: make(map[chunk.ID][]byte)} }

func (c *mapCache) Get(id chunk.ID) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[id]
	if !ok {
		return nil, fmt.Errorf("cache: %w", storage.ErrNotFound)
	}
	c.hits++
	return bytes.Clone(b), nil
}

func (c *mapCache) Put(id chunk.ID, stored []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok {
		c.m[id] = bytes.Clone(stored)
	}
	return nil
}

func (c *mapCache) Remove(id chunk.ID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
	c.removed++
	return nil
}

func (c *mapCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// testFile is guest-memory-like bytes of n bytes with whole zero chunks
// planted at chunk indexes holes (so the manifest has holes) and chunk 3
// repeated at chunk 5 (so one id appears twice).
func testFile(n int, seed uint64, holes ...int) []byte {
	b := make([]byte, n)
	memtest.Fill(b, seed, 0.6)
	for _, i := range holes {
		if (i+1)*testChunk <= n {
			clear(b[i*testChunk : (i+1)*testChunk])
		}
	}
	if 6*testChunk <= n {
		copy(b[5*testChunk:6*testChunk], b[3*testChunk:4*testChunk])
	}
	return b
}

// refCounts says what a file of bytes b holds in testChunk chunks: holes,
// non-hole chunks and distinct non-hole chunks.
func refCounts(b []byte) (holes, chunks, distinct int) {
	seen := make(map[chunk.ID]bool)
	for off := 0; off < len(b); off += testChunk {
		c := b[off:min(off+testChunk, len(b))]
		if chunk.IsZero(c) {
			holes++
			continue
		}
		chunks++
		seen[chunk.Sum(c)] = true
	}
	return holes, chunks, len(seen)
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func zstd1() compression.Setting { return compression.Setting{Algorithm: compression.Zstd, Level: 1} }

func info(id string, s compression.Setting) Info {
	return Info{ID: id, SourceInstance: "inst-1", Kind: "standby", VM: []byte(`{"memory_mib":64}`),
		Hypervisor: "qemu 7.2.0", ImageDigest: "sha256:abc", Compression: s}
}

// upload uploads one file holding b as snapshot id.
func upload(t testing.TB, r *Repo, id string, b []byte, opts UploadOptions) *Manifest {
	t.Helper()
	p := writeFile(t, t.TempDir(), "memory", b)
	opts.ChunkSize = testChunk
	m, err := r.Upload(context.Background(), info(id, zstd1()), []FileSource{{Name: "memory", Path: p}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkFile compares a restored file with the original bytes, and checks
// that the hole chunks of m's file are holes in it (SEEK_DATA skips them).
func checkFile(t testing.TB, path string, want []byte, f File) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: restored bytes differ from the original (%d vs %d bytes)", path, len(got), len(want))
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	const seekData = 3 // SEEK_DATA (Linux)
	for _, c := range f.Chunks {
		if !c.Hole {
			continue
		}
		off := int64(c.Index) * int64(f.ChunkSize)
		next, err := fh.Seek(off, seekData)
		if err == nil && next < off+int64(c.RawLen) {
			t.Fatalf("%s: hole chunk %d at %d has data at %d: not sparse", path, c.Index, off, next)
		}
	}
}

// corruptObject flips a byte in the middle of a stored object.
func corruptObject(t testing.TB, s storage.Store, key string) {
	t.Helper()
	ctx := context.Background()
	rc, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := s.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// keys lists the keys under prefix.
func keys(t testing.TB, s storage.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(context.Background(), prefix, func(oi storage.ObjectInfo) error {
		out = append(out, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// dirEntries returns the names in dir.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func newMem() *mem.Store { return mem.New() }

var errStop = errors.New("stop")
