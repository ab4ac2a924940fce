package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/digests"
)

func digestKey(t testing.TB, seed byte) *digests.Key {
	t.Helper()
	k, err := digests.NewKey(bytes.Repeat([]byte{seed}, digests.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// uploadPath uploads the file at path as snapshot id and returns its
// manifest and the last progress reported.
func uploadPath(t testing.TB, r *Repo, id, path string, opts UploadOptions) (*Manifest, Progress) {
	t.Helper()
	if opts.ChunkSize == 0 {
		opts.ChunkSize = testChunk
	}
	var last Progress
	opts.Progress = func(p Progress) { last = p }
	m, err := r.Upload(context.Background(), info(id, zstd1()), []FileSource{{Name: "memory", Path: path}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, last
}

// checkIDs checks that m records, for every chunk of content, exactly what
// hashing it says: a hole where it is all zeros, else the SHA-256 of its
// bytes. This is the property the digests must never break.
func checkIDs(t testing.TB, m *Manifest, content []byte) {
	t.Helper()
	f := m.Files[0]
	if f.Size != int64(len(content)) {
		t.Fatalf("manifest size %d, file %d", f.Size, len(content))
	}
	for _, c := range f.Chunks {
		off := int64(c.Index) * int64(f.ChunkSize)
		raw := content[off : off+int64(c.RawLen)]
		if chunk.IsZero(raw) != c.Hole {
			t.Fatalf("chunk %d: hole %v, bytes all zero %v", c.Index, c.Hole, chunk.IsZero(raw))
		}
		if !c.Hole && c.ID != chunk.Sum(raw).String() {
			t.Fatalf("chunk %d recorded with id %s, its bytes hash to %s", c.Index, c.ID, chunk.Sum(raw))
		}
	}
}

// nonZeroBytes is the raw bytes of content's non-hole chunks of size cs.
func nonZeroBytes(content []byte, cs int) int64 {
	var n int64
	for off := 0; off < len(content); off += cs {
		if c := content[off:min(off+cs, len(content))]; !chunk.IsZero(c) {
			n += int64(len(c))
		}
	}
	return n
}

// TestUploadDigests: a re-upload with the host key takes the ids of
// unchanged chunks from the file's record, and after every kind of change
// (bytes, order, size, holes, the record itself) still records for every
// chunk the id of its current bytes.
func TestUploadDigests(t *testing.T) {
	st := newCounting(newMem())
	r := newRepo(t, st)
	key := digestKey(t, 1)
	dir := t.TempDir()
	const n = 12
	content := testFile(n*testChunk+testChunk/3, 7, 1, 8) // holes at 1 and 8, a short last chunk
	path := writeFile(t, dir, "memory", content)
	opts := UploadOptions{Workers: 2, DigestKey: key}

	m, p := uploadPath(t, r, "s0", path, opts)
	checkIDs(t, m, content)
	if p.Unchanged != 0 {
		t.Fatalf("first upload: %d bytes unchanged, want 0 (no record yet)", p.Unchanged)
	}
	if _, err := os.Stat(digests.PathFor(path)); err != nil {
		t.Fatalf("no record after the upload: %v", err)
	}
	m, p = uploadPath(t, r, "s1", path, opts)
	checkIDs(t, m, content)
	if want := nonZeroBytes(content, testChunk); p.Unchanged != want || p.Deduplicated != want {
		t.Fatalf("unchanged re-upload: unchanged %d, deduplicated %d, want %d each", p.Unchanged, p.Deduplicated, want)
	}

	seq := 2
	step := func(name string, change func() (wantUnchanged int64)) {
		t.Helper()
		want := change()
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		id := "s" + string(rune('a'+seq))
		seq++
		m, p := uploadPath(t, r, id, path, opts)
		checkIDs(t, m, content)
		if p.Unchanged != want {
			t.Errorf("%s: %d bytes unchanged, want %d", name, p.Unchanged, want)
		}
		// And the snapshot restores to the file's bytes.
		out := t.TempDir()
		if _, err := r.Download(context.Background(), m, out, DownloadOptions{}); err != nil {
			t.Fatal(err)
		}
		checkFile(t, filepath.Join(out, "memory"), content, m.Files[0])
	}
	all := func() int64 { return nonZeroBytes(content, testChunk) }

	step("one byte changed in chunk 3, size kept", func() int64 {
		content[3*testChunk+12345] ^= 0x01
		return all() - testChunk
	})
	step("chunks 2 and 6 swapped", func() int64 {
		c2 := bytes.Clone(content[2*testChunk : 3*testChunk])
		copy(content[2*testChunk:], content[6*testChunk:7*testChunk])
		copy(content[6*testChunk:], c2)
		return all() - 2*testChunk
	})
	step("chunk 4 zeroed", func() int64 {
		clear(content[4*testChunk : 5*testChunk])
		return all()
	})
	step("hole 8 filled", func() int64 {
		copy(content[8*testChunk:9*testChunk], testFile(testChunk, 99))
		return all() - testChunk
	})
	step("last byte changed (short last chunk)", func() int64 {
		content[len(content)-1] ^= 0xff
		return all() - testChunk/3
	})
	step("file truncated by a byte", func() int64 {
		content = content[:len(content)-1]
		return 0 // another size: the record is rejected
	})
	step("file extended by a chunk", func() int64 {
		content = append(content, testFile(testChunk, 5)...)
		return 0
	})
	step("unchanged again", all)

	rec, err := os.ReadFile(digests.PathFor(path))
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := os.WriteFile(digests.PathFor(path), rec, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	step("record tampered (a byte of an id)", func() int64 {
		b := bytes.Clone(rec)
		b[32+1+5] ^= 0x10 // header, then entry 0's kind, then its id
		os.WriteFile(digests.PathFor(path), b, 0o600)
		return 0
	})
	restore()
	step("record truncated", func() int64 {
		os.WriteFile(digests.PathFor(path), rec[:len(rec)-1], 0o600)
		return 0
	})
	restore()
	step("record from another host's key", func() int64 {
		other := digestKey(t, 2)
		r := digests.NewRecord(int64(len(content)), testChunk)
		for i := range r.Chunks {
			raw := content[i*testChunk : min((i+1)*testChunk, len(content))]
			if !chunk.IsZero(raw) {
				r.Chunks[i] = digests.Entry{ID: chunk.Sum(raw), Digest: other.Digest(raw)}
			}
		}
		if err := other.Save(digests.PathFor(path), r); err != nil {
			t.Fatal(err)
		}
		return 0
	})
	restore()
	step("record of another file of the same size (this key)", func() int64 {
		// Correct by construction: only chunks whose bytes equal the
		// other file's at the same index are recalled, with their id.
		other := bytes.Clone(content)
		other[0] ^= 1
		other[5*testChunk] ^= 1
		p := writeFile(t, t.TempDir(), "memory", other)
		uploadPath(t, r, "other", p, opts)
		b, err := os.ReadFile(digests.PathFor(p))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(digests.PathFor(path), b, 0o600)
		return all() - 2*testChunk
	})
	step("record gone", func() int64 {
		os.Remove(digests.PathFor(path))
		return 0
	})

	// A record for another chunk size is not used.
	m, p = uploadPath(t, r, "big-chunks", path, UploadOptions{Workers: 2, DigestKey: key, ChunkSize: 2 * testChunk})
	checkIDs(t, m, content)
	if p.Unchanged != 0 {
		t.Fatalf("record for %d-byte chunks used for %d-byte chunks: %d bytes unchanged", testChunk, 2*testChunk, p.Unchanged)
	}
}

// TestDownloadWritesDigests: a restored file gets its record, so the
// first upload after a restore hashes and sends only what changed.
func TestDownloadWritesDigests(t *testing.T) {
	st := newCounting(newMem())
	r := newRepo(t, st)
	key := digestKey(t, 1)
	content := testFile(10*testChunk+4096, 11, 2, 7)
	m := upload(t, r, "first", content, UploadOptions{Workers: 2}) // no key: no record at the source

	dir := t.TempDir()
	if _, err := r.Download(context.Background(), m, dir, DownloadOptions{DigestKey: key, NoSync: true}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "memory")
	checkFile(t, path, content, m.Files[0])
	if got := dirEntries(t, dir); len(got) != 2 || got[0] != ".memory.digests" || got[1] != "memory" {
		t.Fatalf("download dir holds %v, want the file and its record", got)
	}

	// The guest changes a byte; the standby uploads with the same key.
	content[4*testChunk+99] ^= 0x42
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	st.creates.Store(0)
	m2, p := uploadPath(t, r, "second", path, UploadOptions{Workers: 2, DigestKey: key})
	checkIDs(t, m2, content)
	if want := nonZeroBytes(content, testChunk) - testChunk; p.Unchanged != want {
		t.Fatalf("upload after restore: %d bytes unchanged, want %d", p.Unchanged, want)
	}
	if c := st.creates.Load(); c != 1 {
		t.Fatalf("upload after restore tried %d chunk creates, want 1", c)
	}

	// Without the key a download writes no record.
	dir2 := t.TempDir()
	if _, err := r.Download(context.Background(), m2, dir2, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := dirEntries(t, dir2); len(got) != 1 {
		t.Fatalf("download without a key left %v", got)
	}
}
