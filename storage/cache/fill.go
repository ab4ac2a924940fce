package cache

import (
	"context"
	"fmt"
	"sync"

	"github.com/hangar-vm/hangar/storage/chunk"
)

// DefaultFillQueueBytes bounds the chunks that Offer holds in memory while
// the background writer puts them on disk. 256 MiB holds the stored
// chunks of a half-used 1 GiB guest at zstd 1 several times over in the
// usual case, where the writer keeps up with a download; it only fills
// when the disk falls behind, and then Offer drops instead of growing.
const DefaultFillQueueBytes = 256 << 20

// fill is one chunk waiting in the fill queue. Its bytes are the Cache's
// own copy, in a buffer from fillBufs that goes back to the pool once the
// fill has left both the queue and pending; every read of them outside
// the writer (Get) happens under Cache.mu while the fill is pending.
type fill struct {
	id     chunk.ID
	stored []byte
	// removed: Remove dropped it while the writer was putting it; the
	// writer then drops the entry it put (guarded by Cache.mu).
	removed bool
}

// fillQueue is the state of Offer's background writer, guarded by
// Cache.mu.
type fillQueue struct {
	pending map[chunk.ID]*fill
	queue   []*fill // FIFO; entries removed meanwhile are skipped
	bytes   int64   // of the fills in pending
	running bool    // the writer goroutine is alive
	drained chan struct{}
	// closed: Close ran; Offer declines from then on.
	closed bool
}

// Offer caches stored, the stored form of chunk id, without writing it on
// the caller's path: it copies stored into a bounded in-memory queue and
// returns; one background goroutine Puts queued chunks in FIFO order. It
// is the cache fill of a restore, whose critical path is the memory file,
// not this copy (storage/snapshot uses Offer when the cache has it).
//
// A queued chunk is already cached as far as Get and Has are concerned: a
// fork that starts while its restore's fills are still queued reads them
// from memory, so the chunk is fetched from the store at most once. Stats
// counts queued chunks apart (Queued, QueuedBytes) until they are on disk.
//
// Offer never blocks on I/O. It returns false, keeping nothing, when the
// chunk cannot be kept: bytes that cannot be a stored chunk, a chunk larger
// than the cache, a Cache being closed, or a full queue (more than the
// fill queue bound, WithFillQueue, of bytes waiting) — the last one is
// counted in Stats.FillsDropped. A write that fails in the background is
// logged and counted in Stats.FillErrors; the chunk is then simply not
// cached. stored is not retained.
func (c *Cache) Offer(id chunk.ID, stored []byte) bool {
	if err := checkStored(int64(len(stored)), stored); err != nil {
		c.log.Debug("offered bytes are not a stored chunk, not cached", "chunk", id, "err", err)
		return false
	}
	size := int64(len(stored))
	if size > c.max {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	q := &c.fills
	switch {
	case q.closed:
		return false
	case c.index[id] != nil:
		c.lru.MoveToFront(c.index[id])
		return true
	case q.pending[id] != nil:
		return true
	case q.bytes+size > c.opt.fillQueueBytes:
		c.fillsDropped.Add(1)
		c.ins.fillDropped()
		return false
	}
	f := &fill{id: id, stored: append(getFillBuf(), stored...)}
	if q.pending == nil {
		q.pending = make(map[chunk.ID]*fill)
	}
	q.pending[id] = f
	q.queue = append(q.queue, f)
	q.bytes += size
	if !q.running {
		q.running = true
		q.drained = make(chan struct{})
		go c.fillLoop(q.drained)
	}
	return true
}

// fillLoop Puts queued chunks until the queue is empty, then closes
// drained and exits: no goroutine outlives the work it has.
func (c *Cache) fillLoop(drained chan struct{}) {
	q := &c.fills
	for {
		c.mu.Lock()
		var f *fill
		for len(q.queue) > 0 && f == nil {
			f, q.queue[0] = q.queue[0], nil
			q.queue = q.queue[1:]
			if q.pending[f.id] != f {
				putFillBuf(f.stored) // removed meanwhile; no reader left
				f = nil
			}
		}
		if f == nil {
			q.queue = nil // let the emptied backing array go
			q.running = false
			close(drained)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		if c.opt.beforeFill != nil {
			c.opt.beforeFill(f.id)
		}
		// Put indexes the chunk before the pending copy is dropped below,
		// so Get finds it in one or the other throughout.
		if err := c.Put(f.id, f.stored); err != nil {
			c.fillErrors.Add(1)
			c.log.Warn("background cache fill failed; chunk not cached", "chunk", f.id, "err", err)
		}
		c.mu.Lock()
		if q.pending[f.id] == f {
			delete(q.pending, f.id)
			q.bytes -= int64(len(f.stored))
		} else if f.removed {
			// Removed while being written: honour the Remove, which
			// returned before this Put indexed the chunk.
			if el := c.index[f.id]; el != nil {
				c.drop(el)
			}
		}
		c.mu.Unlock()
		putFillBuf(f.stored)
	}
}

// pendingLocked returns id's queued fill, if any. The caller holds mu.
func (c *Cache) pendingLocked(id chunk.ID) *fill {
	return c.fills.pending[id]
}

// unqueueLocked drops id's queued fill, if any. The caller holds mu.
func (c *Cache) unqueueLocked(id chunk.ID) {
	if f := c.fills.pending[id]; f != nil {
		f.removed = true
		delete(c.fills.pending, id)
		c.fills.bytes -= int64(len(f.stored))
	}
}

// Flush waits until every chunk offered before the call is on disk (or
// its write failed, see Offer), or until ctx is done. Chunks offered
// during the wait may extend it.
func (c *Cache) Flush(ctx context.Context) error {
	c.mu.Lock()
	running, drained := c.fills.running, c.fills.drained
	c.mu.Unlock()
	if !running {
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush chunk cache: %w", context.Cause(ctx))
	}
}

// fillBufs recycles the queue's chunk copies. A restore offers a few
// hundred MiB; allocating them afresh every time made Offer cost more CPU
// than the inline Put it replaces (new heap pages to fault in and zero,
// then to hand back to the OS), so the copies are reused like the
// download's own buffers.
var fillBufs sync.Pool

func getFillBuf() []byte {
	if p, ok := fillBufs.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

func putFillBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:0]
	fillBufs.Put(&b)
}
