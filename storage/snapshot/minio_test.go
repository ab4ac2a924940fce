package snapshot

import (
	"testing"

	"github.com/hangar-vm/hangar/compression"
)

// The pipelines against a real MinIO server: round trip with every codec
// family, and a corrupt stored chunk.
func TestMinIORoundTrip(t *testing.T) {
	for _, s := range []compression.Setting{{Algorithm: compression.Zstd, Level: 1}, {Algorithm: compression.LZ4, Level: 0}} {
		t.Run(s.String(), func(t *testing.T) { roundTrip(t, minioStore(t), s) })
	}
}

func TestMinIOCorruptChunk(t *testing.T) { testCorruptChunk(t, minioStore(t)) }
