package lazyfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/chunk"
	storefs "github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// testFile is 10 chunks of 1 MiB: 0 and 1 random, 2 a hole, 3 a copy of 0,
// 4 half zero pages, 5 a hole, 6-9 random (9 short): 7 distinct chunks.
func testFile(t *testing.T) []byte {
	const cs = 1 << 20
	b := make([]byte, 9*cs+12345)
	rand.Read(b[:2*cs])
	// chunk 2: hole; chunk 3 = chunk 0; chunk 4: half zero pages.
	copy(b[3*cs:4*cs], b[:cs])
	for p := 4 * cs; p < 5*cs; p += 8192 {
		rand.Read(b[p : p+4096])
	}
	rand.Read(b[6*cs:])
	return b
}

func upload(t *testing.T, data []byte) (*snapshot.Repo, snapshot.File) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "memory")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := storefs.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := snapshot.New(st, snapshot.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := repo.Upload(context.Background(), snapshot.Info{ID: "s1", Compression: compression.Setting{Algorithm: compression.Zstd, Level: 1}},
		[]snapshot.FileSource{{Name: "memory", Path: src}}, snapshot.UploadOptions{ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return repo, m.Files[0]
}

// countingFetcher counts fetches per chunk id.
type countingFetcher struct {
	Fetcher
	mu sync.Mutex
	n  map[string]int
}

func (c *countingFetcher) FetchChunk(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error) {
	c.mu.Lock()
	c.n[id.String()]++
	c.mu.Unlock()
	return c.Fetcher.FetchChunk(ctx, id)
}

func TestLazyReadAndMmap(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	data := testFile(t)
	repo, file := upload(t, data)
	for _, prefetch := range []bool{false, true} {
		mnt := t.TempDir()
		cf := &countingFetcher{Fetcher: RepoFetcher{Repo: repo}, n: map[string]int{}}
		s, err := Mount(mnt, file, cf, Options{BackingDir: t.TempDir(), NoPrefetch: !prefetch})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(s.Path(), os.O_RDWR, 0)
		if err != nil {
			s.Close()
			t.Fatal(err)
		}
		// Concurrent reads of the same range, then a private mapping.
		var wg sync.WaitGroup
		got := make([][]byte, 4)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = make([]byte, len(data))
				f.ReadAt(got[i], 0)
			}()
		}
		wg.Wait()
		for i := range got {
			if !bytes.Equal(got[i], data) {
				t.Errorf("prefetch %v: reader %d read different bytes", prefetch, i)
			}
		}
		mem, err := syscall.Mmap(int(f.Fd()), 0, len(data), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mem, data) {
			t.Errorf("prefetch %v: mapping differs", prefetch)
		}
		mem[0] ^= 0xff // private: never reaches the file
		syscall.Munmap(mem)
		if _, err := f.WriteAt([]byte{1}, 0); err == nil {
			t.Errorf("write to the lazy file succeeded")
		}
		f.Close()
		if prefetch {
			<-s.PrefetchDone()
		}
		st := s.Stats()
		if st.Chunks != 7 || st.Fetched != 7 || st.Errors != 0 {
			t.Errorf("prefetch %v: stats %+v, want 7 distinct chunks fetched (2 holes, 1 repeat)", prefetch, st)
		}
		for id, n := range cf.n {
			if n != 1 {
				t.Errorf("chunk %s fetched %d times", id, n)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAbortLeavesStaleMount: Abort ends the server as its process's death
// would: reads of chunks not yet present fail, the mount stays (stale),
// and DetachStale removes it, after which the directory can be removed.
func TestAbortLeavesStaleMount(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	data := testFile(t)
	repo, file := upload(t, data)
	parent := t.TempDir()
	mnt := filepath.Join(parent, "lazy")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Mount(mnt, file, RepoFetcher{Repo: repo}, Options{BackingDir: parent, NoPrefetch: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(s.Path())
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:4096]) {
		s.Close()
		t.Fatalf("read before abort: %v", err)
	}
	if err := s.Abort(); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if _, err := f.ReadAt(buf, 6<<20); err == nil {
		t.Fatal("read of an unfetched chunk after abort succeeded")
	}
	if err := os.RemoveAll(parent + "/lazy"); err == nil {
		t.Fatal("removed a directory with a stale mount on it")
	}
	if err := DetachStale(mnt); err != nil {
		t.Fatalf("detach stale: %v", err)
	}
	if err := DetachStale(mnt); err != nil {
		t.Fatalf("detach of a directory with nothing mounted: %v", err)
	}
	if err := os.RemoveAll(mnt); err != nil {
		t.Fatalf("remove after detach: %v", err)
	}
}

// TestDemandAhead: a read that waits for chunk 0 also starts the next
// non-hole chunk (1), and nothing else is fetched without a prefetcher.
func TestDemandAhead(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	data := testFile(t)
	repo, file := upload(t, data)
	mnt := t.TempDir()
	s, err := Mount(mnt, file, RepoFetcher{Repo: repo}, Options{BackingDir: t.TempDir(), NoPrefetch: true, DemandAhead: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.Open(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:4096]) {
		t.Fatalf("read: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Fetched < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("chunk 1 not fetched ahead: %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := s.Stats()
	if st.DemandFetches != 1 || st.PrefetchFetchs != 1 || st.Fetched != 2 {
		t.Fatalf("stats %+v: want chunk 0 on demand and chunk 1 ahead, nothing more", st)
	}
	// Chunk 1 is served without another fetch.
	if _, err := f.ReadAt(buf, 1<<20); err != nil || !bytes.Equal(buf, data[1<<20:1<<20+4096]) {
		t.Fatalf("read of chunk 1: %v", err)
	}
	if st := s.Stats(); st.Fetched != 2 {
		t.Fatalf("reading the chunk fetched ahead fetched again: %+v", st)
	}
}

// TestMountErrorRemovesNamedBacking: a Mount that fails after creating
// its named backing file (Options.BackingPath) removes it again.
func TestMountErrorRemovesNamedBacking(t *testing.T) {
	dir := t.TempDir()
	backing := filepath.Join(dir, "lazyfs.backing")
	id := chunk.Sum([]byte("x"))
	file := snapshot.File{Name: "memory", Size: 8192, ChunkSize: 4096,
		Chunks: []snapshot.Chunk{{Index: 5, ID: id.String(), RawLen: 4096}}} // index out of range
	if _, err := Mount(filepath.Join(dir, "mnt"), file, nil, Options{BackingPath: backing}); err == nil {
		t.Fatal("mount of a file with a chunk index out of range succeeded")
	}
	if _, err := os.Stat(backing); !os.IsNotExist(err) {
		t.Fatalf("the named backing file is left after a failed mount (stat: %v)", err)
	}
}
