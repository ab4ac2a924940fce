package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// TestWriteSparse: chunk.WriteSparse restores every byte and leaves each all-zero
// page unwritten (a hole), whatever the pattern of zero and data pages and
// however the chunk ends.
func TestWriteSparse(t *testing.T) {
	const pg = chunk.SparsePage
	data := func(n int) []byte { return bytes.Repeat([]byte{0xa5}, n) }
	zero := func(n int) []byte { return make([]byte, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name  string
		raw   []byte
		holes []int // page indexes that must stay holes
	}{
		{"all data", data(4 * pg), nil},
		{"all zero", zero(4 * pg), []int{0, 1, 2, 3}},
		{"alternating", cat(data(pg), zero(pg), data(pg), zero(pg)), []int{1, 3}},
		{"zero run inside", cat(data(pg), zero(2*pg), data(pg)), []int{1, 2}},
		{"one byte in a zero page", cat(zero(pg), zero(100), []byte{1}, zero(pg-101)), []int{0}},
		{"short last page with data", cat(zero(pg), data(100)), []int{0}},
		{"short last page all zero", cat(data(pg), zero(100)), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const at = 3 * pg // the chunk sits at an offset, as in a file
			f, err := os.Create(filepath.Join(t.TempDir(), "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(at + int64(len(tc.raw)) + pg); err != nil {
				t.Fatal(err)
			}
			if err := chunk.WriteSparse(f, tc.raw, at); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tc.raw))
			if _, err := f.ReadAt(got, at); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.raw) {
				t.Fatal("read back differs")
			}
			for _, p := range tc.holes {
				off := int64(at + p*pg)
				next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
				if errors.Is(err, syscall.ENXIO) { // no data at or after off
					continue
				}
				if err != nil {
					t.Skipf("SEEK_DATA unsupported here: %v", err)
				}
				if next == off {
					t.Errorf("page %d was written; want a hole", p)
				}
			}
		})
	}
}

// TestDownloadNoSync: without the fsync the files are as complete, under
// their names, with nothing else left in the directory.
func TestDownloadNoSync(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, newMem())
	src := t.TempDir()
	data := testFile(6*testChunk+100, 3, 2)
	m, err := r.Upload(ctx, info("nosync", zstd1()), []FileSource{{Name: "memory", Path: writeFile(t, src, "memory", data)}}, UploadOptions{ChunkSize: testChunk})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := r.Download(ctx, m, out, DownloadOptions{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(out, "memory"), data, m.Files[0])
	if names := dirEntries(t, out); !slices.Equal(names, []string{"memory"}) {
		t.Fatalf("dir holds %v", names)
	}
}

// TestDownloadExclude: excluded files are not written (a lazy restore
// serves the memory file itself); the rest are, whole.
func TestDownloadExclude(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, newMem())
	src := t.TempDir()
	mem := testFile(4*testChunk+100, 3, 2)
	dev := testFile(testChunk/2, 1, 0)
	m, err := r.Upload(ctx, info("exclude", zstd1()), []FileSource{
		{Name: "memory", Path: writeFile(t, src, "memory", mem)},
		{Name: "device-state", Path: writeFile(t, src, "device-state", dev)},
	}, UploadOptions{ChunkSize: testChunk})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	st, err := r.Download(ctx, m, out, DownloadOptions{Exclude: []string{"memory", "not-there"}})
	if err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, out); !slices.Equal(names, []string{"device-state"}) {
		t.Fatalf("dir holds %v, want only device-state", names)
	}
	checkFile(t, filepath.Join(out, "device-state"), dev, m.Files[1])
	if st.Files != 1 {
		t.Fatalf("stats %+v: want 1 file", st)
	}
	if len(m.Files) != 2 {
		t.Fatalf("Download changed the caller's manifest: %d files", len(m.Files))
	}
}

// TestDownloadFillsCacheInBackground: with the real host cache and
// BackgroundCacheFill, a cold download offers every chunk it fetched
// (storage/cache.Cache.Offer), and
// a second download right after it — a fork, before the background writer
// has necessarily finished — fetches nothing from the store. Once
// flushed, every chunk is an entry on disk, and a fresh Cache on the same
// directory (a restarted host) serves them all.
func TestDownloadFillsCacheInBackground(t *testing.T) {
	st := newCounting(newMem())
	r := newRepo(t, st)
	b := testFile(12*testChunk, 21, 3, 7)
	_, _, distinct := refCounts(b)
	m := upload(t, newRepo(t, st.Store), "snap", b, UploadOptions{})
	dir := t.TempDir()
	c, err := cache.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gets := st.gets.Load()

	first, err := r.Download(context.Background(), m, t.TempDir(), DownloadOptions{Cache: c, BackgroundCacheFill: true})
	if err != nil {
		t.Fatal(err)
	}
	if first.ChunksFromStore != distinct || st.gets.Load()-gets != int64(distinct) {
		t.Fatalf("cold download: %+v, %d store gets; want %d from the store", first, st.gets.Load()-gets, distinct)
	}
	out := t.TempDir()
	second, err := r.Download(context.Background(), m, out, DownloadOptions{Cache: c, BackgroundCacheFill: true})
	if err != nil {
		t.Fatal(err)
	}
	if second.ChunksFromCache != distinct || second.ChunksFromStore != 0 || st.gets.Load()-gets != int64(distinct) {
		t.Fatalf("second download: %+v, %d store gets in all; want every chunk from the cache", second, st.gets.Load()-gets)
	}
	checkFile(t, filepath.Join(out, "memory"), b, m.Files[0])

	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Entries != int64(distinct) || s.Queued != 0 || s.FillsDropped != 0 {
		t.Fatalf("cache after flush: %+v, want %d entries", s, distinct)
	}
	c.Close()
	c2, err := cache.Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	third, err := r.Download(context.Background(), m, t.TempDir(), DownloadOptions{Cache: c2, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if third.ChunksFromCache != distinct || st.gets.Load()-gets != int64(distinct) {
		t.Fatalf("download after reopening the cache: %+v", third)
	}
}
