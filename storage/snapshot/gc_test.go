package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage"
)

// chunkSet returns the chunk keys a manifest references.
func chunkSet(m *Manifest) map[string]bool {
	s := make(map[string]bool)
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			if !c.Hole {
				s[c.ChunkID().Key()] = true
			}
		}
	}
	return s
}

// TestGC: unreferenced chunks older than the grace period go, young ones
// and every referenced one stay, and every remaining snapshot verifies and
// downloads.
func TestGC(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	r := newRepo(t, st)
	a := testFile(8*testChunk, 20)
	b := bytes.Clone(a)
	for _, i := range []int{0, 2, 6} {
		b[i*testChunk+1] ^= 0xff
	}
	ma := upload(t, r, "a", a, UploadOptions{})
	mb := upload(t, r, "b", b, UploadOptions{})
	old := upload(t, r, "old", testFile(3*testChunk, 21), UploadOptions{})
	for _, id := range []string{"a", "old"} {
		if err := r.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	const grace = 1500 * time.Millisecond
	time.Sleep(grace + 500*time.Millisecond) // a's and old's chunks are now past the grace period...
	young := upload(t, r, "young", testFile(2*testChunk, 22), UploadOptions{})
	if err := r.Delete(ctx, "young"); err != nil { // ...young's are not
		t.Fatal(err)
	}

	refB, onlyA := chunkSet(mb), 0
	for k := range chunkSet(ma) {
		if !refB[k] {
			onlyA++
		}
	}
	before := len(keys(t, st, "chunks/"))
	want := onlyA + len(chunkSet(old))

	dry, err := r.GC(ctx, GCOptions{Grace: grace, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Deleted != want || len(keys(t, st, "chunks/")) != before {
		t.Fatalf("dry run: %+v, want %d to delete and nothing deleted", dry, want)
	}
	stats, err := r.GC(ctx, GCOptions{Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Snapshots != 1 || stats.Referenced != len(refB) || stats.Deleted != want ||
		stats.KeptYoung != len(chunkSet(young)) || stats.Missing != 0 || stats.BytesFreed <= 0 {
		t.Fatalf("stats %+v; want %d deleted, %d young, %d referenced", stats, want, len(chunkSet(young)), len(refB))
	}
	left := keys(t, st, "chunks/")
	if len(left) != before-want {
		t.Fatalf("%d chunks left, want %d", len(left), before-want)
	}
	for k := range refB {
		if !slices.Contains(left, k) {
			t.Fatalf("referenced chunk %s deleted", k)
		}
	}
	if l := keys(t, st, "locks/"); l != nil {
		t.Fatalf("locks left: %v", l)
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Snapshots != 1 {
		t.Fatalf("verify after gc: %+v, %v", rep, err)
	}
	out := t.TempDir()
	if _, err := r.Download(ctx, mb, out, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(out, "memory"), b, mb.Files[0])
}

// TestIndexDroppedAfterGC: a Repo that uploaded chunks GC later deleted
// (by another Repo, as on another host) must not trust its index for them.
func TestIndexDroppedAfterGC(t *testing.T) {
	ctx := context.Background()
	st := newCounting(newMem())
	r := newRepo(t, st)
	b := testFile(4*testChunk, 23)
	upload(t, r, "a", b, UploadOptions{})
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if s, err := newRepo(t, st).GC(ctx, GCOptions{Grace: -1}); err != nil || s.Deleted == 0 {
		t.Fatalf("gc: %+v, %v", s, err)
	}
	st.creates.Store(0)
	m := upload(t, r, "a2", b, UploadOptions{})
	_, _, distinct := refCounts(b)
	if st.creates.Load() != int64(distinct) {
		t.Fatalf("upload after GC created %d chunks, want all %d again", st.creates.Load(), distinct)
	}
	rep, err := r.Verify(ctx, VerifyOptions{Snapshots: []string{m.ID}})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// TestGCRefusesWhileUploading: a fresh upload lock makes GC back off with
// ErrBusy, deleting nothing; a stale one is removed and GC proceeds.
func TestGCRefusesWhileUploading(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	cfg := testConfig()
	cfg.LockRefresh, cfg.LockStale = 50*time.Millisecond, 300*time.Millisecond
	r, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	upload(t, r, "a", testFile(3*testChunk, 24), UploadOptions{})
	if err := r.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	n := len(keys(t, st, "chunks/"))

	l, err := r.lockUpload(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * cfg.LockStale / 2) // refreshed meanwhile: still fresh
	_, err = r.GC(ctx, GCOptions{Grace: -1})
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "upload-busy-") {
		t.Fatalf("gc beside an upload: %v", err)
	}
	if len(keys(t, st, "chunks/")) != n || len(keys(t, st, "locks/gc-")) != 0 {
		t.Fatal("gc deleted chunks or left its lock while refusing")
	}
	// The uploader dies without removing its lock: it goes stale.
	close(l.stop)
	l.stopped.Wait()
	time.Sleep(2 * cfg.LockStale)
	s, err := r.GC(ctx, GCOptions{Grace: -1})
	if err != nil || s.Deleted != n {
		t.Fatalf("gc after the lock went stale: %+v, %v", s, err)
	}
	if l := keys(t, st, "locks/"); l != nil {
		t.Fatalf("stale lock not removed: %v", l)
	}
}

// TestUploadWaitsForGC: an upload that finds a fresh GC lock waits until it
// is gone before it stores anything.
func TestUploadWaitsForGC(t *testing.T) {
	ctx := context.Background()
	st := newCounting(newMem())
	r := newRepo(t, st)
	gc, err := r.lockGC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	p := writeFile(t, t.TempDir(), "memory", testFile(2*testChunk, 25))
	go func() {
		_, err := r.Upload(ctx, info("w", zstd1()), []FileSource{{Name: "memory", Path: p}}, UploadOptions{ChunkSize: testChunk})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("upload finished while gc held its lock: %v", err)
	default:
	}
	if st.creates.Load() != 0 {
		t.Fatal("upload stored chunks while gc held its lock")
	}
	gc.release(ctx)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestGCAbortsOnBadManifest: never delete when unsure.
func TestGCAbortsOnBadManifest(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	r := newRepo(t, st)
	upload(t, r, "a", testFile(2*testChunk, 26), UploadOptions{})
	if err := r.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	bad := []byte(`{"schema":1,"id":"b"`)
	if err := st.Put(ctx, ManifestKey("b"), bytes.NewReader(bad), int64(len(bad))); err != nil {
		t.Fatal(err)
	}
	n := len(keys(t, st, "chunks/"))
	if _, err := r.GC(ctx, GCOptions{Grace: -1}); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if len(keys(t, st, "chunks/")) != n {
		t.Fatal("gc deleted chunks although a manifest did not parse")
	}
}

// TestVerifyReports: a deleted and a corrupted chunk are reported with every
// place that references them; a bad manifest is reported too.
func TestVerifyReports(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	r := newRepo(t, st)
	b := testFile(6*testChunk, 27)
	m1 := upload(t, r, "one", b, UploadOptions{})
	upload(t, r, "two", b, UploadOptions{})
	gone, bad := m1.Files[0].Chunks[0], m1.Files[0].Chunks[2]
	if err := st.Delete(ctx, gone.ChunkID().Key()); err != nil {
		t.Fatal(err)
	}
	corruptObject(t, st, bad.ChunkID().Key())
	junk := []byte("{}")
	if err := st.Put(ctx, ManifestKey("junk"), bytes.NewReader(junk), 2); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, VerifyOptions{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Missing) != 1 || len(rep.Corrupt) != 1 || len(rep.Manifests) != 1 || rep.Snapshots != 2 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Missing[0].ID != gone.ID || rep.Corrupt[0].ID != bad.ID || rep.Manifests[0].Snapshot != "junk" {
		t.Fatalf("report names the wrong chunks: %+v", rep)
	}
	wantRefs := []Ref{{"one", "memory", 2}, {"two", "memory", 2}}
	if !slices.Equal(rep.Corrupt[0].Refs, wantRefs) {
		t.Fatalf("corrupt refs %+v, want %+v", rep.Corrupt[0].Refs, wantRefs)
	}
}

// lockRefusingStore fails every write of an upload lock.
type lockRefusingStore struct{ *countingStore }

var errLockRefused = errors.New("lock write refused")

func (s lockRefusingStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	if strings.HasPrefix(key, uploadLockPrefix) {
		return errLockRefused
	}
	return s.countingStore.Put(ctx, key, r, size)
}

// TestUploadFailsWithoutLock: the chunker starts before the upload lock is
// held (Upload overlaps the two); when the lock cannot be written the
// upload fails with that error and stores nothing.
func TestUploadFailsWithoutLock(t *testing.T) {
	st := lockRefusingStore{newCounting(newMem())}
	r := newRepo(t, st)
	p := writeFile(t, t.TempDir(), "memory", testFile(16*testChunk, 28))
	_, err := r.Upload(context.Background(), info("nolock", zstd1()), []FileSource{{Name: "memory", Path: p}}, UploadOptions{ChunkSize: testChunk})
	if !errors.Is(err, errLockRefused) {
		t.Fatalf("err = %v, want the lock's error", err)
	}
	if n := st.creates.Load(); n != 0 {
		t.Fatalf("%d chunk creates without the upload lock", n)
	}
	if got := keys(t, st, ""); len(got) != 0 {
		t.Fatalf("store holds %v after a failed upload", got)
	}
}
