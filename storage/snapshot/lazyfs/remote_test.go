package lazyfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// mapFetcher serves chunks from a map (a unit-test stand-in for a Repo).
type mapFetcher map[chunk.ID][]byte

func (m mapFetcher) FetchChunk(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error) {
	b, ok := m[id]
	if !ok {
		return snapshot.FetchedChunk{}, errors.New("no such chunk")
	}
	return snapshot.FetchedChunk{Raw: b, Stored: len(b) / 2, FromCache: true}, nil
}

// TestSocketFetcherWaitsForServer: a fetch while no server listens
// waits; once a server comes, it gets the chunk. A chunk the server cannot
// fetch is a final error.
func TestSocketFetcherWaitsForServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	raw := bytes.Repeat([]byte("hangar"), 1000)
	id := chunk.Sum(raw)
	f := SocketFetcher{Path: path, Patience: time.Minute}

	got := make(chan error, 1)
	var fc snapshot.FetchedChunk
	go func() {
		var err error
		fc, err = f.FetchChunk(context.Background(), id)
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("fetch without a server returned: %v", err)
	default:
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := ServeChunks(ln, mapFetcher{id: raw}, nil, nil, nil)
	defer srv.Close()
	if err := <-got; err != nil {
		t.Fatalf("fetch once the server is up: %v", err)
	}
	if !bytes.Equal(fc.Raw, raw) || !fc.FromCache || fc.Stored != len(raw)/2 {
		t.Fatalf("fetched %d bytes (cache %v, stored %d), want the chunk", len(fc.Raw), fc.FromCache, fc.Stored)
	}
	if _, err := f.FetchChunk(context.Background(), chunk.Sum([]byte("missing"))); err == nil || !strings.Contains(err.Error(), "no such chunk") {
		t.Fatalf("fetch of a chunk the server cannot fetch: %v, want its error", err)
	}
}

// TestSocketFetcherPatience: without a server, a fetch gives up after
// its patience, and at once when its context ends.
func TestSocketFetcherPatience(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	f := SocketFetcher{Path: path, Patience: 300 * time.Millisecond}
	if _, err := f.FetchChunk(context.Background(), chunk.Sum([]byte("x"))); err == nil || !errors.Is(err, errNoAnswer) {
		t.Fatalf("fetch with no server: %v, want it to give up", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.Patience = time.Hour
	if _, err := f.FetchChunk(ctx, chunk.Sum([]byte("x"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch with a cancelled context: %v", err)
	}
}

// TestSocketFetcherFill: the server writes a chunk into the backing file
// it is allowed to fill, at every offset asked (zero pages left as
// holes); another path is refused.
func TestSocketFetcherFill(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.sock")
	raw := append(bytes.Repeat([]byte{7}, 4096), make([]byte, 4096)...)
	id := chunk.Sum(raw)
	backing := filepath.Join(dir, "backing")
	if err := os.WriteFile(backing, make([]byte, 4*len(raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var told []string // what the FilledFunc heard, before each answer
	srv := ServeChunks(ln, mapFetcher{id: raw}, nil, func(p string) bool { return p == backing },
		func(p string, offs []int64, got chunk.ID, b []byte) {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, fmt.Sprintf("%s %v %v %v", p, offs, got == id, bytes.Equal(b, raw)))
		})
	defer srv.Close()
	f := SocketFetcher{Path: path, Patience: time.Minute}
	got, err := f.FillChunk(context.Background(), id, backing, []int64{0, int64(2 * len(raw))})
	if err != nil || got.Raw != len(raw) || !got.FromCache {
		t.Fatalf("fill: %+v, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := fmt.Sprintf("%s [0 %d] true true", backing, 2*len(raw)); len(told) != 1 || told[0] != want {
		t.Fatalf("filled was told %q, want [%q]", told, want)
	}
	b, err := os.ReadFile(backing)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, raw...), make([]byte, len(raw))...), raw...)
	want = append(want, make([]byte, len(raw))...)
	if !bytes.Equal(b, want) {
		t.Fatal("the backing file does not hold the chunk at both offsets")
	}
	if _, err := f.FillChunk(context.Background(), id, filepath.Join(dir, "other"), []int64{0}); err == nil || !strings.Contains(err.Error(), "not a lazy backing file") {
		t.Fatalf("fill of a path the server may not write: %v, want a refusal", err)
	}
	if len(told) != 1 {
		t.Fatalf("filled was told of a refused fill: %q", told)
	}
}

// TestChunkServerFillRefusesSymlink: a backing file the server may fill
// that is a symlink is refused, and the file it points at (outside the
// runtime directories) is left as it was.
func TestChunkServerFillRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.sock")
	raw := bytes.Repeat([]byte{7}, 8192)
	id := chunk.Sum(raw)
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, make([]byte, len(raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	backing := filepath.Join(dir, "backing")
	if err := os.Symlink(outside, backing); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := ServeChunks(ln, mapFetcher{id: raw}, nil, func(p string) bool { return p == backing }, nil)
	defer srv.Close()
	f := SocketFetcher{Path: path, Patience: time.Minute}
	if _, err := f.FillChunk(context.Background(), id, backing, []int64{0}); err == nil {
		t.Fatal("fill through a symlink succeeded, want a refusal")
	}
	b, err := os.ReadFile(outside)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, len(raw))) {
		t.Fatal("the fill wrote through the symlink into a file outside the allowed path")
	}
}

// TestChunkServerFillOffsetOutsideFile: a fill at an offset where the
// chunk does not lie wholly inside the backing file (past its end,
// negative) is refused and writes nothing: the file keeps its size.
func TestChunkServerFillOffsetOutsideFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.sock")
	raw := bytes.Repeat([]byte{7}, 8192)
	id := chunk.Sum(raw)
	backing := filepath.Join(dir, "backing")
	size := int64(4 * len(raw))
	if err := os.WriteFile(backing, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := ServeChunks(ln, mapFetcher{id: raw}, nil, func(p string) bool { return p == backing }, nil)
	defer srv.Close()
	f := SocketFetcher{Path: path, Patience: time.Minute}
	for _, off := range []int64{size - int64(len(raw)) + 4096, 1 << 40, -4096} {
		if _, err := f.FillChunk(context.Background(), id, backing, []int64{0, off}); err == nil {
			t.Errorf("fill at offset %d of a %d-byte file succeeded, want a refusal", off, size)
		}
		st, err := os.Stat(backing)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != size {
			t.Fatalf("fill at offset %d grew the file to %d bytes", off, st.Size())
		}
	}
	b, err := os.ReadFile(backing)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, size)) {
		t.Fatal("a refused fill wrote into the file")
	}
	// The last chunk of the file fits exactly.
	if _, err := f.FillChunk(context.Background(), id, backing, []int64{size - int64(len(raw))}); err != nil {
		t.Fatalf("fill of the last chunk: %v", err)
	}
}
