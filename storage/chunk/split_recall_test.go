package chunk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hangar-vm/hangar/compression"
)

// testDigest stands in for a keyed digest: what matters to Split is only
// that it is computed from the raw bytes and handed to Recall.
func testDigest(raw []byte) Digest {
	return Digest(sha256.Sum256(append([]byte("key"), raw...)))
}

func TestSplitDigestAndRecall(t *testing.T) {
	data := testData(8 * testChunk)
	ref := reference(data, testChunk)
	// Recall answers for chunks 0 and 3 only, with a made-up id for 3, so
	// that a delivered made-up id proves the chunk was not hashed. (Split
	// trusts Recall: soundness is the caller's, see storage/digests.)
	fake := ID{0xfa, 0xce}
	var mu sync.Mutex
	asked := map[int64]Digest{}
	opts := Options{
		ChunkSize: testChunk,
		Digest:    testDigest,
		Recall: func(i int64, d Digest) (ID, bool) {
			mu.Lock()
			asked[i] = d
			mu.Unlock()
			switch i {
			case 0:
				return ref[0].id, true
			case 3:
				return fake, true
			}
			return ID{}, false
		},
		Known: func(id ID) bool { return id == fake },
	}
	opts.Codec, _ = compression.New(compression.Zstd, 1)
	err := Split(context.Background(), bytes.NewReader(data), int64(len(data)), opts, func(_ context.Context, c *Chunk) error {
		defer c.Release()
		r := ref[c.Index]
		if c.Hole {
			if c.Digest != (Digest{}) || c.Recalled {
				return fmt.Errorf("hole %d has a digest or was recalled", c.Index)
			}
			return nil
		}
		if c.Digest != testDigest(data[r.off:r.off+int64(r.n)]) {
			return fmt.Errorf("chunk %d: Digest is not the digest of its bytes", c.Index)
		}
		switch c.Index {
		case 0:
			if !c.Recalled || c.ID != r.id || c.Stored == nil {
				return fmt.Errorf("chunk 0: recalled %v id %s stored %d", c.Recalled, c.ID, len(c.Stored))
			}
		case 3:
			if !c.Recalled || c.ID != fake || !c.Known {
				return fmt.Errorf("chunk 3: recalled %v id %s known %v, want the recalled id, known", c.Recalled, c.ID, c.Known)
			}
		default:
			if c.Recalled || c.ID != r.id {
				return fmt.Errorf("chunk %d: recalled %v id %s, want hashed %s", c.Index, c.Recalled, c.ID, r.id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range ref {
		if d, ok := asked[int64(i)]; ok == r.hole || (ok && d != testDigest(data[r.off:r.off+int64(r.n)])) {
			t.Errorf("chunk %d (hole %v): Recall asked %v with the right digest %v", i, r.hole, ok, d == testDigest(data[r.off:r.off+int64(r.n)]))
		}
	}
}

func TestSplitRecallNeedsDigest(t *testing.T) {
	opts := Options{Recall: func(int64, Digest) (ID, bool) { return ID{}, false }}
	err := opts.Validate()
	if err == nil || !strings.Contains(err.Error(), "Recall") {
		t.Fatalf("Validate() = %v, want a problem with Recall", err)
	}
	err = Split(context.Background(), bytes.NewReader(nil), 0, opts, func(context.Context, *Chunk) error { return nil })
	if err == nil {
		t.Fatal("Split ran with Recall and no Digest")
	}
}
