package chunk

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage"
)

// FuzzDecode feeds arbitrary bytes and ids to Decode. It must never panic;
// it either fails with a corrupt error and hands back dst, or returns
// exactly the header's raw length of bytes hashing to the id asked for.
// The committed corpus (testdata/fuzz/FuzzDecode) holds valid chunks of
// every codec with their ids, so mutations start from real payloads.
func FuzzDecode(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed.stored, seed.id[:])
	}
	f.Fuzz(func(t *testing.T, stored, want []byte) {
		var id ID
		copy(id[:], want)
		dst := []byte("dst")
		out, err := Decode(dst, stored, id)
		if err != nil {
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("error %v does not match storage.ErrCorrupt", err)
			}
			if string(out) != "dst" {
				t.Fatalf("returned %q on error, want dst", out)
			}
			return
		}
		h, err := ParseHeader(stored)
		if err != nil {
			t.Fatalf("Decode accepted what ParseHeader rejects: %v", err)
		}
		raw := out[len(dst):]
		if string(out[:len(dst)]) != "dst" || len(raw) != h.RawLen || Sum(raw) != id {
			t.Fatalf("Decode returned %d bytes not matching header %+v and id %s", len(raw), h, id)
		}
		// What decodes re-encodes to something that decodes to the same.
		c, err := compression.ForID(h.Codec)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Encode(nil, raw, c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(nil, again, id)
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("re-encoded chunk does not round trip: %v", err)
		}
	})
}

type fuzzSeed struct {
	stored []byte
	id     ID
}

// fuzzSeeds are small valid chunks of every codec, and a few broken ones.
func fuzzSeeds(t testing.TB) []fuzzSeed {
	var seeds []fuzzSeed
	text := bytes.Repeat([]byte("hangar parks VMs "), 40)
	mem := make([]byte, 2*memtest.PageSize)
	memtest.FillMix(mem, 1, 0.3, memtest.Mix{Text: 1, Struct: 1})
	for _, raw := range [][]byte{{}, {0}, []byte("x"), text, mem, make([]byte, 300)} {
		for _, alg := range []compression.Algorithm{compression.None, compression.Zstd, compression.LZ4} {
			c, err := compression.New(alg, compression.DefaultLevel(alg))
			if err != nil {
				t.Fatal(err)
			}
			stored, err := Encode(nil, raw, c)
			if err != nil {
				t.Fatal(err)
			}
			seeds = append(seeds, fuzzSeed{stored, Sum(raw)})
		}
	}
	seeds = append(seeds,
		fuzzSeed{[]byte("HGCK"), ID{}},
		fuzzSeed{[]byte("HGCK\x01\x01\x00\x00\xff\xff\xff\xff"), ID{}},
		fuzzSeed{[]byte("HGCK\x01\x02\x00\x00\x10\x00\x00\x00\x00"), ID{}},
	)
	return seeds
}
