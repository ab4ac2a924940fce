package snapshot

import (
	"sync"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// codecUnknown marks an index entry whose codec the repo has not seen (the
// chunk was found by a listing or a refused conditional create).
const codecUnknown = 0xff

// entry is what the index knows about a stored chunk.
type entry struct {
	storedLen int32
	codec     uint8 // a compression.ID, or codecUnknown
}

// codecName is the manifest's codec field for e: the algorithm, or "" when
// unknown.
func (e entry) codecName() string {
	if e.codec == codecUnknown {
		return ""
	}
	return compression.ID(e.codec).String()
}

// index is the set of chunk ids known to be stored, with their stored
// length. It is only ever a cache of the store's truth, valid for one GC
// epoch: a GC may delete chunks the index still lists, so whenever the
// store's epoch differs from the one the index was filled under, the index
// is dropped (see checkEpoch).
type index struct {
	mu         sync.RWMutex
	m          map[chunk.ID]entry
	epoch      string
	epochKnown bool
	loaded     bool // filled by LoadIndex since the last reset
}

func newIndex() *index { return &index{m: make(map[chunk.ID]entry)} }

func (x *index) get(id chunk.ID) (entry, bool) {
	x.mu.RLock()
	e, ok := x.m[id]
	x.mu.RUnlock()
	return e, ok
}

func (x *index) has(id chunk.ID) bool {
	_, ok := x.get(id)
	return ok
}

func (x *index) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.m)
}

// add records id as stored. A known codec is never replaced by an unknown
// one.
func (x *index) add(id chunk.ID, e entry) {
	x.mu.Lock()
	if old, ok := x.m[id]; !ok || e.codec != codecUnknown || old.codec == codecUnknown {
		x.m[id] = e
	}
	x.mu.Unlock()
}

// load merges a listing made under epoch into the index; entries from an
// older epoch are dropped first.
func (x *index) load(epoch string, found map[chunk.ID]entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.epochKnown && x.epoch != epoch {
		x.m = make(map[chunk.ID]entry, len(found))
	}
	x.epoch, x.epochKnown, x.loaded = epoch, true, true
	for id, e := range found {
		if old, ok := x.m[id]; !ok || old.codec == codecUnknown {
			x.m[id] = e
		}
	}
}

// checkEpoch compares the store's current GC epoch with the index's. An
// index filled under another epoch is dropped (reset), and the caller is
// told whether it had been loaded by a listing, so it can load it again.
func (x *index) checkEpoch(epoch string) (reset, wasLoaded bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.epochKnown {
		// Nothing was added under an unknown epoch (uploads check first).
		x.epoch, x.epochKnown = epoch, true
		return false, false
	}
	if x.epoch == epoch {
		return false, false
	}
	wasLoaded = x.loaded
	x.m = make(map[chunk.ID]entry)
	x.epoch, x.loaded = epoch, false
	return true, wasLoaded
}

// reset forgets everything, the epoch included.
func (x *index) reset() {
	x.mu.Lock()
	x.m = make(map[chunk.ID]entry)
	x.epoch, x.epochKnown, x.loaded = "", false, false
	x.mu.Unlock()
}
