package digests

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hangar-vm/hangar/storage/chunk"
)

func testKey(t testing.TB, seed byte) *Key {
	t.Helper()
	k, err := NewKey(bytes.Repeat([]byte{seed}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testRecord describes a file of 3 chunks of chunk.MinSize and a short
// last one: chunk, hole, chunk, chunk.
func testRecord(k *Key) *Record {
	cs := chunk.MinSize
	r := NewRecord(int64(3*cs+100), cs)
	for i, s := range []string{"a", "", "b", "c"} {
		if s == "" {
			continue
		}
		raw := bytes.Repeat([]byte(s), cs)
		if i == 3 {
			raw = raw[:100]
		}
		r.Chunks[i] = Entry{ID: chunk.Sum(raw), Digest: k.Digest(raw)}
	}
	return r
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "digest.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != KeySize || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %d bytes, mode %v; want %d, 0600", st.Size(), st.Mode().Perm(), KeySize)
	}
	k2, err := LoadOrCreateKey(path) // created once: the same key again
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("some chunk")
	if k1.Digest(raw) != k2.Digest(raw) {
		t.Fatal("a second load made another key")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only the key", len(ents))
	}
	// Two hosts' keys differ.
	other, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "digest.key"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Digest(raw) == k1.Digest(raw) {
		t.Fatal("two fresh keys give one digest")
	}
	// Printing never shows it.
	for _, s := range []string{fmt.Sprint(k1), fmt.Sprintf("%v %s %x %#v", k1, k1, k1, k1)} {
		if !strings.Contains(s, "redacted") || strings.Contains(s, fmt.Sprintf("%x", k1.digest[:4])) {
			t.Fatalf("key printed as %q", s)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "key", k1)
	if !strings.Contains(buf.String(), "redacted") {
		t.Fatalf("key logged as %q", buf.String())
	}
}

func TestLoadOrCreateKeyRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "digest.key")
	keys := make([]*Key, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadOrCreateKey(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k == nil || k.id != keys[0].id {
			t.Fatal("racing creators ended with different keys")
		}
	}
}

func TestLoadKeyRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
		mode os.FileMode
		want string
	}{
		{"short", make([]byte, 31), 0o600, "31 bytes"},
		{"long", make([]byte, 64), 0o600, "want 32"},
		{"empty", nil, 0o600, "0 bytes"},
		{"world-readable", make([]byte, 32), 0o644, "lets others read"},
		{"group-readable", make([]byte, 32), 0o640, "lets others read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode)
			_, err := LoadOrCreateKey(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want one naming %s and saying %q", err, path, tc.want)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, tc.data) {
				t.Fatal("a refused key file was changed")
			}
		})
	}
	if _, err := LoadOrCreateKey(filepath.Join(dir, "missing-dir", "k")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("key in a missing directory: err = %v", err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	want := testRecord(k)
	b, err := k.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != encodedSize(4) {
		t.Fatalf("encoded %d bytes, want %d", len(b), encodedSize(4))
	}
	got, err := k.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("round trip:\n got %v\nwant %v", got, want)
	}
	// An empty file has no chunks.
	b, err = k.Marshal(NewRecord(0, chunk.DefaultSize))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := k.Unmarshal(b); err != nil || len(r.Chunks) != 0 {
		t.Fatalf("empty record: %v, %v", r, err)
	}
}

func TestMarshalRefusesBadRecords(t *testing.T) {
	k := testKey(t, 1)
	for _, r := range []*Record{
		{Size: -1, ChunkSize: chunk.DefaultSize},
		{Size: 10, ChunkSize: 3},
		{Size: 10, ChunkSize: chunk.DefaultSize},                          // 0 entries for 1 chunk
		{Size: 10, ChunkSize: chunk.DefaultSize, Chunks: []Entry{{}, {}}}, // 2 for 1
	} {
		if _, err := k.Marshal(r); err == nil {
			t.Errorf("Marshal(%+v) accepted", r)
		}
	}
}

func TestRecall(t *testing.T) {
	k := testKey(t, 1)
	r := testRecord(k)
	raw := bytes.Repeat([]byte("b"), chunk.MinSize)
	if id, ok := r.Recall(2, k.Digest(raw)); !ok || id != sha256.Sum256(raw) {
		t.Fatalf("Recall(2, digest of its bytes) = %v, %v", id, ok)
	}
	changed := bytes.Clone(raw)
	changed[12345] ^= 1
	for _, tc := range []struct {
		name  string
		index int64
		d     chunk.Digest
	}{
		{"one byte changed", 2, k.Digest(changed)},
		{"another chunk's bytes (swapped)", 0, k.Digest(raw)},
		{"a hole's index", 1, k.Digest(raw)},
		{"past the end", 4, k.Digest(raw)},
		{"negative", -1, k.Digest(raw)},
		{"digest under another key", 2, testKey(t, 2).Digest(raw)},
		{"the unkeyed SHA-256 as digest", 2, chunk.Digest(sha256.Sum256(raw))},
	} {
		if id, ok := r.Recall(tc.index, tc.d); ok {
			t.Errorf("%s: recalled %s", tc.name, id)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	k := testKey(t, 1)
	good, err := k.Marshal(testRecord(k))
	if err != nil {
		t.Fatal(err)
	}
	reject := func(name string, b []byte) {
		t.Helper()
		if r, err := k.Unmarshal(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Unmarshal = %v, %v; want ErrInvalid", name, r, err)
		}
	}
	// Every single-bit change anywhere, header, entries or MAC.
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			reject(fmt.Sprintf("bit %d of byte %d flipped", bit, i), b)
		}
	}
	for n := range len(good) {
		reject(fmt.Sprintf("truncated to %d", n), good[:n])
	}
	reject("a byte appended", append(bytes.Clone(good), 0))
	reject("an entry appended", append(bytes.Clone(good[:len(good)-macSize]), good[headerSize:headerSize+entrySize]...))
	// Two entries swapped (with the count unchanged): the MAC covers order.
	b := bytes.Clone(good)
	e0, e2 := headerSize, headerSize+2*entrySize
	tmp := bytes.Clone(b[e0 : e0+entrySize])
	copy(b[e0:], b[e2:e2+entrySize])
	copy(b[e2:], tmp)
	reject("entries swapped", b)
	// Made under another key: rejected by key id, and by MAC even with
	// this key's id written in.
	other := testKey(t, 2)
	foreign, err := other.Marshal(testRecord(other))
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Unmarshal(foreign)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "another key") {
		t.Errorf("foreign record: %v", err)
	}
	copy(foreign[8:16], k.id[:])
	_, err = k.Unmarshal(foreign)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "MAC") {
		t.Errorf("foreign record with this key's id: %v", err)
	}
	// A record re-signed after an edit is what only the key's holder can
	// make: it is accepted, which is why the key stays on the host.
	b = bytes.Clone(good[:len(good)-macSize])
	b[headerSize+1] ^= 1
	if _, err := k.Unmarshal(k.sign(b)); err != nil {
		t.Errorf("a record signed with the key: %v", err)
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, 1)
	r := testRecord(k)
	file := filepath.Join(dir, "memory")
	path := PathFor(file)
	if path != filepath.Join(dir, ".memory.digests") {
		t.Fatalf("PathFor = %s", path)
	}
	if _, err := k.Load(path, r.Size, r.ChunkSize); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent record: %v, want fs.ErrNotExist", err)
	}
	if err := k.Save(path, r); err != nil {
		t.Fatal(err)
	}
	got, err := k.Load(path, r.Size, r.ChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(r) {
		t.Fatal("Load differs from what was saved")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("dir holds %d entries after Save, want 1", len(ents))
	}
	for _, tc := range []struct {
		name      string
		size      int64
		chunkSize int
	}{
		{"file extended", r.Size + 1, r.ChunkSize},
		{"file truncated", r.Size - 1, r.ChunkSize},
		{"file truncated by a chunk", r.Size - int64(r.ChunkSize), r.ChunkSize},
		{"file extended by a chunk", r.Size + int64(r.ChunkSize), r.ChunkSize},
		{"another chunk size", r.Size, 2 * r.ChunkSize},
		{"an invalid chunk size", r.Size, 3},
	} {
		if _, err := k.Load(path, tc.size, tc.chunkSize); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Load = %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, err := testKey(t, 2).Load(path, r.Size, r.ChunkSize); !errors.Is(err, ErrInvalid) {
		t.Errorf("another host's key: Load = %v, want ErrInvalid", err)
	}
	// A torn write: the first half of the record.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)/2], 0o600)
	if _, err := k.Load(path, r.Size, r.ChunkSize); !errors.Is(err, ErrInvalid) {
		t.Errorf("torn record: Load = %v, want ErrInvalid", err)
	}
	// A huge file in its place is not read whole.
	os.WriteFile(path, make([]byte, 10<<20), 0o600)
	if _, err := k.Load(path, r.Size, r.ChunkSize); !errors.Is(err, ErrInvalid) {
		t.Errorf("huge file: Load = %v, want ErrInvalid", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	k, _ := NewKey(bytes.Repeat([]byte{1}, KeySize))
	good, _ := k.Marshal(testRecord(k))
	f.Add(good)
	f.Add(good[:headerSize+macSize])
	f.Add([]byte("HGCD"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := k.Unmarshal(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Only what the key signed passes, and it encodes back the same.
		again, err := k.Marshal(r)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a record that does not re-encode to itself: %v", err)
		}
	})
}

// BenchmarkDigest compares the keyed digest with the SHA-256 id it stands
// in for, per 4 MiB chunk of memory-like bytes.
func BenchmarkDigest(b *testing.B) {
	raw := make([]byte, chunk.DefaultSize)
	for i := range raw {
		raw[i] = byte(i*7 + i>>13)
	}
	k := testKey(b, 1)
	b.Run("highwayhash-256", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			k.Digest(raw)
		}
	})
	b.Run("sha-256", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			chunk.Sum(raw)
		}
	})
	b.Run("iszero", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		z := make([]byte, len(raw))
		for b.Loop() {
			chunk.IsZero(z)
		}
	})
}
