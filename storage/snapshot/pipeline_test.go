package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/faulty"
	"github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/retry"
)

// TestRoundTrip: upload → download is byte-identical for every codec, holes
// stay sparse, totals add up, and the store holds each distinct chunk once.
func TestRoundTrip(t *testing.T) {
	settings := []compression.Setting{
		{Algorithm: compression.None},
		{Algorithm: compression.Zstd, Level: 1},
		{Algorithm: compression.Zstd, Level: 7},
		{Algorithm: compression.LZ4, Level: 0},
		{Algorithm: compression.LZ4, Level: 9},
	}
	for _, s := range settings {
		t.Run(s.String(), func(t *testing.T) {
			st, err := fs.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, st, s)
		})
	}
}

func roundTrip(t *testing.T, st storage.Store, s compression.Setting) {
	ctx := context.Background()
	r := newRepo(t, st)
	src := t.TempDir()
	mem := testFile(10*testChunk+12345, 1, 1, 7, 8)
	dev := testFile(300<<10, 2)
	files := []FileSource{
		{Name: "memory", Path: writeFile(t, src, "memory", mem)},
		{Name: "device-state", Path: writeFile(t, src, "device-state", dev)},
		{Name: "empty", Path: writeFile(t, src, "empty", nil)},
	}
	var last Progress
	var calls int
	m, err := r.Upload(ctx, info("snap-1", s), files, UploadOptions{ChunkSize: testChunk, Workers: 2, Uploaders: 3,
		Progress: func(p Progress) {
			calls++
			if p.ChunksDone < last.ChunksDone || p.Raw < last.Raw || p.Uploaded < last.Uploaded {
				t.Errorf("progress went back: %+v after %+v", p, last)
			}
			last = p
		}})
	if err != nil {
		t.Fatal(err)
	}
	tot := m.Totals
	h1, c1, d1 := refCounts(mem)
	h2, c2, d2 := refCounts(dev)
	if h1 < 3 || c1 < 6 || d1 != c1-1 {
		t.Fatalf("test data: %d holes, %d chunks, %d distinct", h1, c1, d1)
	}
	if tot.Raw != int64(len(mem)+len(dev)) || tot.Holes != h1+h2 || tot.Chunks != c1+c2 {
		t.Fatalf("totals %+v", tot)
	}
	if last.ChunksDone != last.ChunksTotal || last.ChunksTotal != int64(h1+h2+c1+c2) || last.Raw != tot.Raw || last.NonZero != tot.NonZero ||
		last.Compressed != tot.Compressed || last.Uploaded != tot.NewStored || calls != int(last.ChunksTotal) {
		t.Fatalf("last progress %+v after %d calls, totals %+v", last, calls, tot)
	}
	// Chunk 5 repeats chunk 3: each distinct chunk stored once.
	if n := len(keys(t, st, "chunks/")); n != d1+d2 {
		t.Fatalf("%d chunk objects stored, want %d", n, d1+d2)
	}
	if last.Deduplicated != testChunk {
		t.Fatalf("deduplicated %d bytes, want one chunk (%d)", last.Deduplicated, testChunk)
	}
	if s.Algorithm != compression.None && tot.Compressed >= tot.NonZero {
		t.Fatalf("%s did not compress: %+v", s, tot)
	}
	if keys(t, st, "locks/") != nil {
		t.Fatalf("locks left behind: %v", keys(t, st, "locks/"))
	}

	got, err := r.Manifest(ctx, "snap-1")
	if err != nil {
		t.Fatal(err)
	}
	if !sameContent(got, m) || got.Compression.Algorithm != string(s.Algorithm) || got.Hypervisor != "qemu 7.2.0" {
		t.Fatalf("stored manifest differs: %+v", got)
	}

	out := t.TempDir()
	stats, err := r.Download(ctx, got, out, DownloadOptions{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(out, "memory"), mem, got.Files[0])
	checkFile(t, filepath.Join(out, "device-state"), dev, got.Files[1])
	checkFile(t, filepath.Join(out, "empty"), nil, got.Files[2])
	if stats.ChunksFromStore != d1+d2 || stats.Reused != 1 || stats.Holes != h1+h2 || stats.BytesWritten != tot.NonZero {
		t.Fatalf("download stats %+v", stats)
	}
	if names := dirEntries(t, out); !slices.Equal(names, []string{"device-state", "empty", "memory"}) {
		t.Fatalf("dir holds %v", names)
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Chunks != d1+d2 || rep.Snapshots != 1 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// TestChangedChunks: a second upload of the file with 1% of its chunks
// changed stores exactly those chunks.
func TestChangedChunks(t *testing.T) {
	st := newCounting(newMem())
	r := newRepo(t, st)
	const n = 100
	b := testFile(n*testChunk, 3)
	upload(t, r, "first", b, UploadOptions{Workers: 2})
	first := st.created.Load()

	b[42*testChunk+7] ^= 0xff // 1 of 100 chunks changed
	st.creates.Store(0)
	m := upload(t, r, "second", b, UploadOptions{Workers: 2})
	if c := st.creates.Load(); c != 1 {
		t.Fatalf("second upload tried %d chunk creates, want 1", c)
	}
	if st.created.Load() != first+1 || m.Totals.NewStored != int64(m.Files[0].Chunks[42].StoredLen) {
		t.Fatalf("stored %d then %d chunks; new_stored %d", first, st.created.Load(), m.Totals.NewStored)
	}

	// A fresh Repo (a restarted host) learns the stored chunks from one
	// listing instead of asking per chunk.
	r2 := newRepo(t, st)
	if err := r2.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	b[77*testChunk] ^= 0xff
	st.creates.Store(0)
	upload(t, r2, "third", b, UploadOptions{Workers: 2})
	if c := st.creates.Load(); c != 1 {
		t.Fatalf("upload after LoadIndex tried %d chunk creates, want 1", c)
	}
}

// TestCancelledUploadResumes: an upload cancelled midway leaves no manifest
// and no lock; run again it completes, and no chunk is stored twice.
func TestCancelledUploadResumes(t *testing.T) {
	st := newCounting(newMem())
	b := testFile(20*testChunk, 4)
	p := writeFile(t, t.TempDir(), "memory", b)
	ctx, cancel := context.WithCancel(context.Background())
	st.afterCreate = func(n int64) {
		if n == 6 {
			cancel()
		}
	}
	r := newRepo(t, st)
	files := []FileSource{{Name: "memory", Path: p}}
	opts := UploadOptions{ChunkSize: testChunk, Workers: 2, Uploaders: 2}
	if _, err := r.Upload(ctx, info("snap", zstd1()), files, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload: err = %v", err)
	}
	st.afterCreate = nil
	if _, err := r.Manifest(context.Background(), "snap"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("manifest after cancel: %v", err)
	}
	if l := keys(t, st, "locks/"); l != nil {
		t.Fatalf("locks left: %v", l)
	}
	stored := st.created.Load()
	if stored < 6 || stored >= 19 {
		t.Fatalf("%d chunks stored before the cancel took effect", stored)
	}

	// Restarted as a new process would be: fresh Repo, LoadIndex.
	r2 := newRepo(t, st)
	if err := r2.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.creates.Store(0)
	m, err := r2.Upload(context.Background(), info("snap", zstd1()), files, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, _, distinct := refCounts(b)
	if got := st.creates.Load(); got != int64(distinct)-stored {
		t.Fatalf("resumed upload tried %d creates; %d of %d distinct chunks were already stored", got, stored, distinct)
	}
	if st.maxPerKey("create") != 1 {
		t.Fatal("a chunk was stored twice")
	}
	out := t.TempDir()
	if _, err := r2.Download(context.Background(), m, out, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(out, "memory"), b, m.Files[0])
}

// TestCrashBeforeCommit: the store fails the Nth chunk create (as a crash
// would stop the upload there): no manifest is visible, and a rerun — which
// finds the stored chunks by their refused creates, no index — commits.
func TestCrashBeforeCommit(t *testing.T) {
	ms := newMem()
	fst := faulty.New(ms)
	fst.FailNth(faulty.OpCreate, 4, nil)
	b := testFile(12*testChunk, 5, 2)
	p := writeFile(t, t.TempDir(), "memory", b)
	files := []FileSource{{Name: "memory", Path: p}}
	opts := UploadOptions{ChunkSize: testChunk, Workers: 2, Uploaders: 2}
	if _, err := newRepo(t, fst).Upload(context.Background(), info("snap", zstd1()), files, opts); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("err = %v, want the injected fault", err)
	}
	if _, err := newRepo(t, ms).Manifest(context.Background(), "snap"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("manifest visible after a failed upload: %v", err)
	}
	m, err := newRepo(t, ms).Upload(context.Background(), info("snap", zstd1()), files, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Totals.NewStored >= m.Totals.Compressed {
		t.Fatalf("rerun stored everything again: %+v", m.Totals)
	}
	out := t.TempDir()
	if _, err := newRepo(t, ms).Download(context.Background(), m, out, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(out, "memory"), b, m.Files[0])
}

// TestOutageWithRetry: the store goes away during the upload and comes back;
// with the retry wrapper the upload commits.
func TestOutageWithRetry(t *testing.T) {
	ms := newMem()
	fst := faulty.New(ms)
	cfg := retry.DefaultConfig()
	cfg.InitialBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	rs, err := retry.New(fst, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs := newCounting(rs)
	cs.afterCreate = func(n int64) {
		if n == 3 {
			fst.SetOutage(true)
			time.AfterFunc(150*time.Millisecond, func() { fst.SetOutage(false) })
		}
	}
	b := testFile(10*testChunk, 6)
	m := upload(t, newRepo(t, cs), "snap", b, UploadOptions{Workers: 2})
	out := t.TempDir()
	if _, err := newRepo(t, ms).Download(context.Background(), m, out, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(out, "memory"), b, m.Files[0])
}

// TestUploadIdempotent: uploading a committed snapshot again with the same
// content returns the committed manifest without storing anything; other
// content is ErrAlreadyExists.
func TestUploadIdempotent(t *testing.T) {
	st := newCounting(newMem())
	b := testFile(6*testChunk, 7)
	m1 := upload(t, newRepo(t, st), "snap", b, UploadOptions{})
	st.creates.Store(0)
	m2 := upload(t, newRepo(t, st), "snap", b, UploadOptions{})
	if !m2.Created.Equal(m1.Created) || !sameContent(m1, m2) || st.creates.Load() != 0 {
		t.Fatalf("retry made a new manifest or stored chunks (%d creates)", st.creates.Load())
	}
	b[0] ^= 1
	p := writeFile(t, t.TempDir(), "memory", b)
	_, err := newRepo(t, st).Upload(context.Background(), info("snap", zstd1()), []FileSource{{Name: "memory", Path: p}}, UploadOptions{ChunkSize: testChunk})
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("different content: err = %v", err)
	}
}

func TestUploadRejectsBadInput(t *testing.T) {
	r := newRepo(t, newMem())
	p := writeFile(t, t.TempDir(), "memory", []byte("x"))
	ok := []FileSource{{Name: "memory", Path: p}}
	for _, tc := range []struct {
		name  string
		info  Info
		files []FileSource
		opts  UploadOptions
		want  string
	}{
		{"bad id", info("../x", zstd1()), ok, UploadOptions{}, "snapshot id"},
		{"no files", info("s", zstd1()), nil, UploadOptions{}, "no files"},
		{"bad name", info("s", zstd1()), []FileSource{{Name: "a/b", Path: p}}, UploadOptions{}, "a/b"},
		{"dup name", info("s", zstd1()), []FileSource{ok[0], ok[0]}, UploadOptions{}, "twice"},
		{"bad compression", info("s", compression.Setting{Algorithm: "gzip"}), ok, UploadOptions{}, "gzip"},
		{"bad chunk size", info("s", zstd1()), ok, UploadOptions{ChunkSize: 12345}, "ChunkSize"},
		{"missing file", info("s", zstd1()), []FileSource{{Name: "m", Path: "/nonexistent"}}, UploadOptions{}, "nonexistent"},
		{"directory", info("s", zstd1()), []FileSource{{Name: "m", Path: t.TempDir()}}, UploadOptions{}, "regular"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Upload(context.Background(), tc.info, tc.files, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
	if k := keys(t, r.store, ""); k != nil {
		t.Fatalf("bad input wrote %v", k)
	}
}

// TestCorruptChunkFailsDownload: a stored chunk whose bytes do not match its
// id fails the download with ErrCorrupt naming snapshot, file, chunk and id,
// and leaves nothing in the directory.
func TestCorruptChunkFailsDownload(t *testing.T) {
	testCorruptChunk(t, newMem())
}

func testCorruptChunk(t *testing.T, st storage.Store) {
	r := newRepo(t, st)
	b := testFile(8*testChunk, 8, 1)
	m := upload(t, r, "snap", b, UploadOptions{})
	bad := m.Files[0].Chunks[6]
	corruptObject(t, st, bad.ChunkID().Key())
	out := t.TempDir()
	writeFile(t, out, "unrelated", []byte("keep me"))
	_, err := r.Download(context.Background(), m, out, DownloadOptions{Concurrency: 2})
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	for _, want := range []string{"snap", "memory", "chunk 6", bad.ID} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	if names := dirEntries(t, out); !slices.Equal(names, []string{"unrelated"}) {
		t.Fatalf("download left %v", names)
	}
}

func TestMissingChunkFailsDownload(t *testing.T) {
	st := newMem()
	r := newRepo(t, st)
	m := upload(t, r, "snap", testFile(4*testChunk, 9), UploadOptions{})
	if err := st.Delete(context.Background(), m.Files[0].Chunks[2].ChunkID().Key()); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	_, err := r.Download(context.Background(), m, out, DownloadOptions{})
	if !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "chunk 2") {
		t.Fatalf("err = %v", err)
	}
	if names := dirEntries(t, out); names != nil {
		t.Fatalf("download left %v", names)
	}
}

func TestCancelledDownloadLeavesNothing(t *testing.T) {
	ms := newMem()
	fst := faulty.New(ms)
	r := newRepo(t, fst)
	m := upload(t, r, "snap", testFile(8*testChunk, 10), UploadOptions{})
	fst.AddFault(faulty.OpGet, faulty.Fault{Skip: 3, Times: -1, Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	out := t.TempDir()
	if _, err := r.Download(ctx, m, out, DownloadOptions{Concurrency: 2}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if names := dirEntries(t, out); names != nil {
		t.Fatalf("download left %v", names)
	}
}

// TestCorruptCacheEntryRefetched: a bad cached copy is dropped and the chunk
// comes from the store; the cache then holds a good copy.
func TestCorruptCacheEntryRefetched(t *testing.T) {
	st := newCounting(newMem())
	r := newRepo(t, st)
	c := newMapCache()
	b := testFile(6*testChunk, 11, 4)
	m := upload(t, r, "snap", b, UploadOptions{Cache: c})
	_, _, distinct := refCounts(b)
	if c.len() != distinct {
		t.Fatalf("upload cached %d chunks, want %d", c.len(), distinct)
	}
	id := m.Files[0].Chunks[0].ChunkID()
	c.m[id][len(c.m[id])/2] ^= 0xff
	out := t.TempDir()
	stats, err := r.Download(context.Background(), m, out, DownloadOptions{Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksFromStore != 1 || stats.ChunksFromCache != distinct-1 || c.removed != 1 || st.gets.Load() != 1 {
		t.Fatalf("stats %+v, removed %d, store gets %d", stats, c.removed, st.gets.Load())
	}
	checkFile(t, filepath.Join(out, "memory"), b, m.Files[0])
	if _, err := chunk.Decode(nil, c.m[id], id); err != nil {
		t.Fatalf("cache still holds a bad copy: %v", err)
	}
}

// TestConcurrentDownloadsFetchOnce: two downloads of one snapshot on one
// host (forks) fetch each chunk from the store once.
func TestConcurrentDownloadsFetchOnce(t *testing.T) {
	ms := newMem()
	b := testFile(16*testChunk, 12)
	_, _, distinct := refCounts(b)
	m := upload(t, newRepo(t, ms), "snap", b, UploadOptions{})
	// A slow store makes the two downloads overlap.
	fst := faulty.New(ms)
	fst.AddFault(faulty.OpGet, faulty.Fault{Times: -1, Delay: 20 * time.Millisecond})
	st := newCounting(fst)
	r := newRepo(t, st)
	c := newMapCache()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.Download(context.Background(), m, t.TempDir(), DownloadOptions{Cache: c, Concurrency: 4})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := st.maxPerKey("get"); n != 1 {
		t.Fatalf("a chunk was fetched %d times from the store", n)
	}
	if got := st.gets.Load(); got != int64(distinct) {
		t.Fatalf("%d store gets, want %d", got, distinct)
	}
}

// TestDownloadReplacesAndRejects: a download replaces an older file of the
// same name; a bad manifest or directory is refused before writing.
func TestDownloadRejects(t *testing.T) {
	r := newRepo(t, newMem())
	m := validManifest()
	m.Files[0].Name = "../escape"
	if _, err := r.Download(context.Background(), m, t.TempDir(), DownloadOptions{}); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("bad manifest: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := r.Download(context.Background(), validManifest(), f, DownloadOptions{}); err == nil {
		t.Fatal("downloaded into a file")
	}
}
