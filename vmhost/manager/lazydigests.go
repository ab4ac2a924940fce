package manager

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/digests"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost"
)

// A lazy VM's standby writes a new memory file (lazy.go), which has no
// chunk digests of its own. The daemon fills every chunk of the lazy
// memory file (the chunk socket, lazychild.go) with bytes it verified
// against their id, so it computes each one's keyed digest there and keeps
// the (id, digest) pairs per lazy restore; after the standby they become
// the new memory file's record (digests.Record), and its upload recalls
// the ids of the chunks the guest did not change instead of hashing them.
//
// Sound as every record is (storage/digests): an entry pairs a keyed
// digest with the id of the very bytes it was computed from, and recall
// takes the id only for a chunk of the new file with that keyed digest,
// i.e. the same bytes. A chunk never filled (a hole, or one the server was
// not asked for) is a hole entry, which recalls nothing.
//
// The pairs live in memory only: a lazy VM re-attached by a restarted
// manager (recoverLazy) has none, and its standby writes no record (its
// upload hashes every chunk, as before).

// lazyDigests is one lazy restore's filled chunks, as a record of the
// lazy memory file (entries of chunks not filled are holes).
type lazyDigests struct {
	mu  sync.Mutex
	rec *digests.Record
}

// startLazyDigests starts the table of the lazy restore in runtime
// directory run, for a memory file of size bytes cut into chunkSize
// chunks (nothing when chunk digests are off).
func (m *Manager) startLazyDigests(run string, size int64, chunkSize int) {
	if m.digestKey == nil {
		return
	}
	m.lazyDigestsMu.Lock()
	defer m.lazyDigestsMu.Unlock()
	if m.lazyDigests == nil {
		m.lazyDigests = map[string]*lazyDigests{}
	}
	m.lazyDigests[filepath.Join(run, lazyfs.ChildBackingFile)] = &lazyDigests{rec: digests.NewRecord(size, chunkSize)}
}

// takeLazyDigests removes and returns the table of the lazy restore in
// run (nil if none).
func (m *Manager) takeLazyDigests(run string) *lazyDigests {
	m.lazyDigestsMu.Lock()
	defer m.lazyDigestsMu.Unlock()
	key := filepath.Join(run, lazyfs.ChildBackingFile)
	t := m.lazyDigests[key]
	delete(m.lazyDigests, key)
	return t
}

// chunkFilled is the chunk socket's lazyfs.FilledFunc: raw, verified
// against id, is being written at offs of the backing file path.
func (m *Manager) chunkFilled(path string, offs []int64, id chunk.ID, raw []byte) {
	m.lazyDigestsMu.Lock()
	t := m.lazyDigests[path]
	m.lazyDigestsMu.Unlock()
	if t == nil {
		return
	}
	d := m.digestKey.Digest(raw) // outside the lock: fills run side by side
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rec == nil {
		return // saved (or dropped) meanwhile
	}
	cs := int64(t.rec.ChunkSize)
	for _, off := range offs {
		i := off / cs
		if off < 0 || off%cs != 0 || i >= int64(len(t.rec.Chunks)) || int64(len(raw)) != min(cs, t.rec.Size-off) {
			continue // not chunk i of this file: never recorded
		}
		t.rec.Chunks[i] = digests.Entry{ID: id, Digest: d}
	}
}

// saveLazyDigests writes the record of the memory file a lazy VM's
// standby wrote into dir, from the chunks filled during its restore in
// run; nothing if there are none (a re-attached VM) or the new file is
// not of the lazy file's size.
func (m *Manager) saveLazyDigests(run, dir string) {
	t := m.takeLazyDigests(run)
	if t == nil {
		return
	}
	t.mu.Lock()
	rec := t.rec
	t.rec = nil
	t.mu.Unlock()
	mem := filepath.Join(dir, vmhost.MemoryFile)
	st, err := os.Stat(mem)
	if err != nil || st.Size() != rec.Size {
		m.log.Warn("no chunk digests for the memory file of a lazy VM's standby; its upload hashes every chunk",
			"file", mem, "err", err, "want_size", rec.Size)
		return
	}
	filled := 0
	for _, e := range rec.Chunks {
		if !e.Hole {
			filled++
		}
	}
	if err := m.digestKey.Save(digests.PathFor(mem), rec); err != nil {
		m.log.Warn("save chunk digests of a lazy VM's standby; its upload hashes every chunk", "file", mem, "err", err)
		return
	}
	m.log.Debug("chunk digests of a lazy VM's standby saved", "file", mem, "chunks", len(rec.Chunks), "filled", filled)
}
