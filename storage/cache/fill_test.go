package cache

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// gate holds the background writer before each fill until the test
// releases it, so that "queued, not on disk yet" is a state tests can
// look at.
type gate struct {
	held chan chunk.ID
	go_  chan struct{}
}

func newGate() *gate { return &gate{held: make(chan chunk.ID, 16), go_: make(chan struct{})} }

func (g *gate) option() Option {
	return func(o *options) {
		o.beforeFill = func(id chunk.ID) {
			g.held <- id
			<-g.go_
		}
	}
}

func (g *gate) release() { close(g.go_) }

func onDisk(c *Cache, id chunk.ID) bool {
	_, err := os.Stat(c.path(id))
	return err == nil
}

func flush(t *testing.T, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOfferServesQueuedChunks: an offered chunk is a hit from the moment
// Offer returns, while the writer has not put it on disk yet; after Flush
// it is an ordinary entry, and the queue is empty.
func TestOfferServesQueuedChunks(t *testing.T) {
	g := newGate()
	c := open(t, t.TempDir(), 1<<20, g.option())
	id, stored := mkChunk(t, 1, 4096)
	mine := append([]byte(nil), stored...)
	if !c.Offer(id, mine) {
		t.Fatal("Offer declined a chunk into an empty queue")
	}
	clear(mine) // the caller may reuse its buffer at once
	<-g.held    // the writer has taken it and waits
	if onDisk(c, id) {
		t.Fatal("queued chunk on disk before the writer was released")
	}
	if !c.Has(id) {
		t.Fatal("Has: queued chunk not reported")
	}
	mustGet(t, c, id, stored)
	if s := c.Stats(); s.Queued != 1 || s.QueuedBytes != int64(len(stored)) || s.Entries != 0 || s.Hits != 1 {
		t.Fatalf("stats while queued: %+v", s)
	}
	g.release()
	flush(t, c)
	if !onDisk(c, id) {
		t.Fatal("chunk not on disk after Flush")
	}
	if s := c.Stats(); s.Queued != 0 || s.QueuedBytes != 0 || s.Entries != 1 || s.Bytes != int64(len(stored)) {
		t.Fatalf("stats after Flush: %+v", s)
	}
	mustGet(t, c, id, stored)
}

// TestOfferBounded: Offer never holds more than the fill queue bound; what
// does not fit is dropped and counted, and an already cached chunk is
// accepted whatever the queue holds.
func TestOfferBounded(t *testing.T) {
	g := newGate()
	idA, a := mkChunk(t, 1, 4096)
	idB, b := mkChunk(t, 2, 4096)
	idC, cc := mkChunk(t, 3, 4096)
	c := open(t, t.TempDir(), 1<<20, g.option(), WithFillQueue(int64(len(a)+len(b))))
	if !c.Offer(idA, a) || !c.Offer(idB, b) {
		t.Fatal("Offer declined chunks that fit the queue")
	}
	if c.Offer(idC, cc) {
		t.Fatal("Offer accepted a chunk beyond the queue bound")
	}
	if !c.Offer(idA, a) {
		t.Fatal("Offer of a queued chunk again: declined")
	}
	if s := c.Stats(); s.FillsDropped != 1 || s.Queued != 2 {
		t.Fatalf("stats: %+v, want 1 dropped and 2 queued", s)
	}
	if _, err := c.Get(idC); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get of a dropped fill: %v, want ErrNotFound", err)
	}
	g.release()
	flush(t, c)
	if !onDisk(c, idA) || !onDisk(c, idB) || onDisk(c, idC) {
		t.Fatalf("on disk: a %v b %v c %v, want a and b only", onDisk(c, idA), onDisk(c, idB), onDisk(c, idC))
	}

	z := open(t, t.TempDir(), 1<<20, WithFillQueue(0))
	mustPut(t, z, idA, a)
	if !z.Offer(idA, a) {
		t.Fatal("queue bound 0: Offer of a cached chunk declined")
	}
	if z.Offer(idB, b) {
		t.Fatal("queue bound 0: Offer of a new chunk accepted")
	}
	if s := z.Stats(); s.FillsDropped != 1 {
		t.Fatalf("queue bound 0: %d dropped, want 1", s.FillsDropped)
	}
}

// TestOfferDeclines: bytes that cannot be a stored chunk and chunks larger
// than the cache are declined without counting as dropped fills.
func TestOfferDeclines(t *testing.T) {
	id, stored := mkChunk(t, 1, 4096)
	c := open(t, t.TempDir(), int64(len(stored)-1))
	if c.Offer(id, stored) {
		t.Fatal("Offer accepted a chunk larger than the cache")
	}
	if c.Offer(id, []byte("not a chunk")) {
		t.Fatal("Offer accepted bytes that are not a chunk")
	}
	if s := c.Stats(); s.FillsDropped != 0 || s.Queued != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestRemoveQueued: Remove of a chunk still queued, or being written by
// the background writer, leaves it cached nowhere once the writer is done.
func TestRemoveQueued(t *testing.T) {
	g := newGate()
	c := open(t, t.TempDir(), 1<<20, g.option())
	idA, a := mkChunk(t, 1, 4096)
	idB, b := mkChunk(t, 2, 4096)
	c.Offer(idA, a)
	c.Offer(idB, b)
	if got := <-g.held; got != idA {
		t.Fatalf("writer took %s first, want %s (FIFO)", got, idA)
	}
	// A is being written (the writer holds it), B waits in the queue.
	if err := c.Remove(idA); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(idB); err != nil {
		t.Fatal(err)
	}
	for _, id := range []chunk.ID{idA, idB} {
		if c.Has(id) {
			t.Fatalf("Has(%s) after Remove", id)
		}
	}
	g.release()
	flush(t, c)
	for _, id := range []chunk.ID{idA, idB} {
		if c.Has(id) || onDisk(c, id) {
			t.Fatalf("%s cached after Remove and Flush", id)
		}
	}
	if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 || s.Queued != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestCloseWritesQueued: Close puts every queued chunk on disk first, so a
// clean shutdown keeps what was offered; a closed cache declines offers.
func TestCloseWritesQueued(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var ids []chunk.ID
	var chunks [][]byte
	for i := range 8 {
		id, stored := mkChunk(t, uint64(i), 8192)
		if !c.Offer(id, stored) {
			t.Fatalf("Offer %d declined", i)
		}
		ids, chunks = append(ids, id), append(chunks, stored)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if c.Offer(ids[0], chunks[0]) {
		t.Fatal("a closed cache accepted an offer")
	}
	r := open(t, dir, 1<<20)
	for i, id := range ids {
		mustGet(t, r, id, chunks[i])
	}
}

// TestFlushCancelled: Flush gives up when its context does, with the
// cause.
func TestFlushCancelled(t *testing.T) {
	g := newGate()
	c := open(t, t.TempDir(), 1<<20, g.option())
	id, stored := mkChunk(t, 1, 4096)
	c.Offer(id, stored)
	<-g.held
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush with a cancelled context: %v, want context.Canceled", err)
	}
	g.release()
	flush(t, c)
}

// TestOfferConcurrent: Offer, Get, Remove and Put from many goroutines
// (run with -race); every Get returns whole, correct bytes or a miss.
func TestOfferConcurrent(t *testing.T) {
	c := open(t, t.TempDir(), 64<<10, WithFillQueue(32<<10))
	type ch struct {
		id     chunk.ID
		stored []byte
	}
	var all []ch
	for i := range 24 {
		id, stored := mkChunk(t, uint64(i), 4096)
		all = append(all, ch{id, stored})
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				x := all[(i*7+w)%len(all)]
				switch i % 4 {
				case 0, 1:
					c.Offer(x.id, x.stored)
				case 2:
					if got, err := c.Get(x.id); err == nil && string(got) != string(x.stored) {
						t.Errorf("Get %s: wrong bytes", x.id)
					} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
						t.Errorf("Get %s: %v", x.id, err)
					}
				case 3:
					if w == 0 {
						c.Remove(x.id)
					} else if err := c.Put(x.id, x.stored); err != nil {
						t.Errorf("Put %s: %v", x.id, err)
					}
				}
			}
		})
	}
	wg.Wait()
	flush(t, c)
	s := c.Stats()
	if s.Bytes > s.MaxBytes || s.Queued != 0 || s.QueuedBytes != 0 || s.FillErrors != 0 {
		t.Fatalf("stats after the storm: %+v", s)
	}
}

func TestOpenRejectsNegativeFillQueue(t *testing.T) {
	if _, err := Open(t.TempDir(), 1<<20, WithFillQueue(-1)); err == nil {
		t.Fatal("Open accepted a negative fill queue bound")
	}
}
