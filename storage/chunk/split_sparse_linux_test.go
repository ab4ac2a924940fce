package chunk

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/compression"
)

// TestSplitSparseFileSkipsHoles: a chunk wholly inside a hole of a sparse
// file (untouched guest memory) is a hole without being read — the kernel
// would otherwise fill the page cache with zero pages for it — and its
// Raw is zeros even in a buffer that held data before. A chunk whose zeros
// were written, and one that is half hole, are read and come out as from
// any reader.
func TestSplitSparseFileSkipsHoles(t *testing.T) {
	const cs = 1 << 20
	const n = 8
	path := filepath.Join(t.TempDir(), "memory")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(n * cs); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, n*cs)
	fill := func(off, size int) {
		p := want[off : off+size]
		for i := range p {
			p[i] = byte(i*7 + off)
		}
		if _, err := f.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	fill(0, cs)               // chunk 0: data
	fill(2*cs+cs/2, cs/2)     // chunk 2: half hole, half data
	fill(5*cs, cs)            // chunk 5: data
	zeros := make([]byte, cs) // chunk 6: zeros written, not a hole
	if _, err := f.WriteAt(zeros, 6*cs); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	// Start from a cold page cache for the file, so residency afterwards
	// says what Split read.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}

	codec, err := compression.New(compression.Zstd, 1)
	if err != nil {
		t.Fatal(err)
	}
	holes := map[int64]bool{}
	err = Split(context.Background(), f, n*cs, Options{ChunkSize: cs, Workers: 1, Buffers: 1, Codec: codec}, func(_ context.Context, c *Chunk) error {
		defer c.Release()
		if !bytes.Equal(c.Raw, want[c.Offset:c.Offset+int64(c.Len)]) {
			t.Errorf("chunk %d: raw bytes differ from the file", c.Index)
		}
		holes[c.Index] = c.Hole
		if !c.Hole && c.ID != Sum(want[c.Offset:c.Offset+int64(c.Len)]) {
			t.Errorf("chunk %d: wrong id", c.Index)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, hole := range []bool{false, true, false, true, true, false, true, true} {
		if holes[int64(i)] != hole {
			t.Errorf("chunk %d: hole %v, want %v", i, holes[int64(i)], hole)
		}
	}

	// The holes were not read: none of their pages is in the page cache.
	m, err := unix.Mmap(int(f.Fd()), 0, n*cs, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, n*cs/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	per := cs / os.Getpagesize()
	for _, i := range []int{1, 3, 4, 7} {
		resident := 0
		for _, v := range vec[i*per : (i+1)*per] {
			resident += int(v & 1)
		}
		if resident > 0 {
			t.Errorf("chunk %d lies in a hole, but %d of its pages are in the page cache: it was read", i, resident)
		}
	}
}
