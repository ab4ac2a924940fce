package manager

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/digests"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost"
)

// TestLazyDigestsRecord: the record saved after a lazy VM's standby holds
// exactly the chunks filled at their chunk offsets (a fill at an offset
// that is not a chunk's, or of the wrong length, is not recorded); a new
// file of another size gets no record; without a table, nothing is saved.
func TestLazyDigestsRecord(t *testing.T) {
	key, err := digests.NewKey(bytes.Repeat([]byte{9}, digests.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{digestKey: key, log: slog.New(slog.DiscardHandler)}
	const cs = chunk.MinSize
	run, dir := t.TempDir(), t.TempDir()
	backing := filepath.Join(run, lazyfs.ChildBackingFile)
	size := int64(3*cs + 100) // four chunks, the last one short
	m.startLazyDigests(run, size, cs)

	full := bytes.Repeat([]byte{1}, cs)
	last := bytes.Repeat([]byte{2}, 100)
	m.chunkFilled(backing, []int64{0, 2 * cs}, chunk.Sum(full), full)
	m.chunkFilled(backing, []int64{3 * cs}, chunk.Sum(last), last)
	m.chunkFilled(backing, []int64{cs + 1}, chunk.Sum(full), full)                         // not a chunk offset
	m.chunkFilled(backing, []int64{3 * cs}, chunk.Sum(full), full)                         // too long for the last chunk
	m.chunkFilled(filepath.Join(t.TempDir(), "other"), []int64{cs}, chunk.Sum(full), full) // another file

	mem := filepath.Join(dir, vmhost.MemoryFile)
	if err := os.WriteFile(mem, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	m.saveLazyDigests(run, dir)
	rec, err := key.Load(digests.PathFor(mem), size, cs)
	if err != nil {
		t.Fatalf("record after the standby: %v", err)
	}
	want := []digests.Entry{
		{ID: chunk.Sum(full), Digest: key.Digest(full)},
		{Hole: true},
		{ID: chunk.Sum(full), Digest: key.Digest(full)},
		{ID: chunk.Sum(last), Digest: key.Digest(last)},
	}
	for i, e := range rec.Chunks {
		if e != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, e, want[i])
		}
	}
	if id, ok := rec.Recall(1, key.Digest(full)); ok {
		t.Errorf("a chunk never filled recalls %s", id)
	}

	// The table went with the save; a second standby saves nothing.
	os.Remove(digests.PathFor(mem))
	m.saveLazyDigests(run, dir)
	if _, err := os.Stat(digests.PathFor(mem)); !os.IsNotExist(err) {
		t.Fatalf("record saved without a table: %v", err)
	}
	// A new file of another size: no record.
	m.startLazyDigests(run, size, cs)
	m.chunkFilled(backing, []int64{0}, chunk.Sum(full), full)
	if err := os.WriteFile(mem, make([]byte, size+cs), 0o600); err != nil {
		t.Fatal(err)
	}
	m.saveLazyDigests(run, dir)
	if _, err := os.Stat(digests.PathFor(mem)); !os.IsNotExist(err) {
		t.Fatalf("record saved for a file of another size: %v", err)
	}
}
