package digests

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hangar-vm/hangar/storage/chunk"
)

// ErrInvalid is returned for a record that must not be trusted: truncated,
// edited, of another version, made under another key, or describing
// another file size or chunk size. The caller treats the record as absent.
var ErrInvalid = errors.New("invalid chunk digests")

// Entry is one chunk as a record describes it: a hole (all zeros), or its
// id and keyed digest, computed from the same bytes.
type Entry struct {
	Hole   bool
	ID     chunk.ID
	Digest chunk.Digest
}

// Record is a file's chunk digests: its size, its chunk size, and one
// Entry per chunk (ceil(Size / ChunkSize) of them).
type Record struct {
	Size      int64
	ChunkSize int
	Chunks    []Entry
}

// NewRecord returns a record for a file of size bytes cut into chunkSize
// chunks, every entry a hole until filled in.
func NewRecord(size int64, chunkSize int) *Record {
	n := int64(0)
	if chunkSize > 0 && size > 0 {
		n = (size + int64(chunkSize) - 1) / int64(chunkSize)
	}
	r := &Record{Size: size, ChunkSize: chunkSize, Chunks: make([]Entry, n)}
	for i := range r.Chunks {
		r.Chunks[i].Hole = true
	}
	return r
}

// Recall is chunk.Options.Recall for the file r describes: the recorded id
// of chunk index, if its recorded keyed digest is d. A hole entry recalls
// nothing (the chunker finds holes itself).
func (r *Record) Recall(index int64, d chunk.Digest) (chunk.ID, bool) {
	if index < 0 || index >= int64(len(r.Chunks)) {
		return chunk.ID{}, false
	}
	e := &r.Chunks[index]
	if e.Hole || e.Digest != d {
		return chunk.ID{}, false
	}
	return e.ID, true
}

func (r *Record) validate() error {
	var errs []error
	if r.Size < 0 {
		errs = append(errs, fmt.Errorf("negative size %d", r.Size))
	}
	if err := chunk.ValidateSize(r.ChunkSize); err != nil {
		errs = append(errs, fmt.Errorf("chunk size: %w", err))
	} else if want := NewRecord(r.Size, r.ChunkSize); len(r.Chunks) != len(want.Chunks) {
		errs = append(errs, fmt.Errorf("%d entries for %d chunks", len(r.Chunks), len(want.Chunks)))
	}
	return errors.Join(errs...)
}

// The encoding (docs/format.md, "Chunk digests"), all integers
// little-endian:
//
//	offset  size  field
//	0       4     magic "HGCD"
//	4       1     format version, 1
//	5       1     digest algorithm, 1 = HighwayHash-256
//	6       2     reserved, 0
//	8       8     key id (names the key; not secret)
//	16      8     file size
//	24      4     chunk size
//	28      4     chunk count, ceil(file size / chunk size)
//	32      65×n  entries: kind (0 hole, 1 chunk), SHA-256 id, keyed digest
//	              (id and digest all zeros for a hole)
//	end-32  32    HMAC-SHA256 of every byte before it, under the MAC subkey
const (
	magic      = "HGCD"
	version    = 1
	algHighway = 1
	headerSize = 32
	entrySize  = 1 + 32 + 32
	macSize    = sha256.Size
	kindHole   = 0
	kindChunk  = 1
)

// encodedSize is the length of the encoding of a record with n entries.
func encodedSize(n int64) int64 { return headerSize + entrySize*n + macSize }

// Marshal encodes r and authenticates it with the key.
func (k *Key) Marshal(r *Record) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("encode chunk digests: %w", err)
	}
	b := make([]byte, headerSize, encodedSize(int64(len(r.Chunks))))
	copy(b, magic)
	b[4], b[5] = version, algHighway
	copy(b[8:16], k.id[:])
	binary.LittleEndian.PutUint64(b[16:], uint64(r.Size))
	binary.LittleEndian.PutUint32(b[24:], uint32(r.ChunkSize))
	binary.LittleEndian.PutUint32(b[28:], uint32(len(r.Chunks)))
	for _, e := range r.Chunks {
		if e.Hole {
			b = append(b, kindHole)
			b = append(b, make([]byte, 64)...)
			continue
		}
		b = append(b, kindChunk)
		b = append(b, e.ID[:]...)
		b = append(b, e.Digest[:]...)
	}
	return k.sign(b), nil
}

func (k *Key) sign(b []byte) []byte {
	h := hmac.New(sha256.New, k.mac[:])
	h.Write(b)
	return h.Sum(b)
}

// Unmarshal decodes a record encoded by Marshal under this key. It trusts
// nothing before the MAC is checked; every way of being wrong wraps
// ErrInvalid and says which.
func (k *Key) Unmarshal(b []byte) (*Record, error) {
	bad := func(format string, a ...any) (*Record, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch {
	case len(b) < headerSize+macSize:
		return bad("truncated: %d bytes", len(b))
	case string(b[:4]) != magic:
		return bad("bad magic %q", b[:4])
	case b[4] != version:
		return bad("unsupported version %d", b[4])
	case b[5] != algHighway || b[6] != 0 || b[7] != 0:
		return bad("unknown digest algorithm %d or flags %#x", b[5], b[6:8])
	case !bytes.Equal(b[8:16], k.id[:]):
		return bad("made under another key (key id %x, this host's %x)", b[8:16], k.id[:])
	}
	body, mac := b[:len(b)-macSize], b[len(b)-macSize:]
	h := hmac.New(sha256.New, k.mac[:])
	h.Write(body)
	if !hmac.Equal(h.Sum(nil), mac) {
		return bad("MAC mismatch (edited, truncated or torn)")
	}
	// Authentic: from here on the fields were written by Marshal with this
	// key, and are checked only as a second line of defence.
	size := int64(binary.LittleEndian.Uint64(b[16:]))
	r := &Record{Size: size, ChunkSize: int(binary.LittleEndian.Uint32(b[24:]))}
	n := int64(binary.LittleEndian.Uint32(b[28:]))
	if int64(len(b)) != encodedSize(n) {
		return bad("%d bytes for %d entries", len(b), n)
	}
	r.Chunks = make([]Entry, n)
	for i := range r.Chunks {
		p := b[headerSize+int64(i)*entrySize:][:entrySize]
		e := &r.Chunks[i]
		switch p[0] {
		case kindHole:
			e.Hole = true
		case kindChunk:
			e.ID, e.Digest = chunk.ID(p[1:33]), chunk.Digest(p[33:65])
		default:
			return bad("entry %d: unknown kind %d", i, p[0])
		}
	}
	if err := r.validate(); err != nil {
		return bad("%v", err)
	}
	return r, nil
}

// PathFor is where the record of the file at path lives: beside it, as
// .<name>.digests. Moving a file without its record only costs the next
// upload its speed.
func PathFor(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".digests")
}

// Load reads the record at path for a file of size bytes cut into
// chunkSize chunks. A missing record is an error wrapping fs.ErrNotExist;
// one that fails authentication, or describes another size or chunk size,
// wraps ErrInvalid. Either way the caller hashes every chunk.
func (k *Key) Load(path string, size int64, chunkSize int) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("chunk digests: %w", err)
	}
	defer f.Close()
	// A record for this file has exactly this length; read one byte more
	// to tell a longer one, never a huge file.
	want := encodedSize(int64(len(NewRecord(size, chunkSize).Chunks)))
	b, err := io.ReadAll(io.LimitReader(f, want+1))
	if err != nil {
		return nil, fmt.Errorf("chunk digests %s: %w", path, err)
	}
	if int64(len(b)) > want {
		return nil, fmt.Errorf("chunk digests %s: %w: longer than a record for %d bytes in %d-byte chunks", path, ErrInvalid, size, chunkSize)
	}
	r, err := k.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("chunk digests %s: %w", path, err)
	}
	if r.Size != size || r.ChunkSize != chunkSize {
		return nil, fmt.Errorf("chunk digests %s: %w: they describe %d bytes in %d-byte chunks, the file has %d bytes in %d-byte chunks",
			path, ErrInvalid, r.Size, r.ChunkSize, size, chunkSize)
	}
	return r, nil
}

// Save writes r to path atomically (a temporary file in its directory,
// renamed over path), without fsync: a record lost or torn by a crash is
// absent or fails its MAC, and either way the next upload hashes.
func (k *Key) Save(path string, r *Record) error {
	b, err := k.Marshal(r)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save chunk digests: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save chunk digests %s: %w", path, err)
	}
	return nil
}
