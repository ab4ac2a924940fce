package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage"
)

// testCodecs covers every codec and every level class: each zstd strategy
// that klauspost/compress implements, lz4's fast and HC compressors.
func testCodecs(t testing.TB) map[string]compression.Codec {
	t.Helper()
	cs := map[string]compression.Codec{"nil": nil}
	for _, s := range []struct {
		alg   compression.Algorithm
		level int
	}{
		{compression.None, 0},
		{compression.Zstd, 1}, {compression.Zstd, 3}, {compression.Zstd, 7}, {compression.Zstd, 19},
		{compression.LZ4, 0}, {compression.LZ4, 1}, {compression.LZ4, 9},
	} {
		c, err := compression.New(s.alg, s.level)
		if err != nil {
			t.Fatalf("compression.New(%s, %d): %v", s.alg, s.level, err)
		}
		cs[fmt.Sprintf("%s-%d", s.alg, s.level)] = c
	}
	return cs
}

// testInputs are the data classes of the issue: zeros, random, text and a
// guest-memory-like mix, plus the edge sizes.
func testInputs() map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	var text strings.Builder
	for text.Len() < 1<<20 {
		fmt.Fprintf(&text, "line %d: the quick brown fox jumps over the lazy dog\n", text.Len())
	}
	mix := make([]byte, DefaultSize)
	memtest.Fill(mix, 3, 0.6)
	return map[string][]byte{
		"empty":   {},
		"one":     {42},
		"zeros":   make([]byte, DefaultSize),
		"random":  random,
		"text":    []byte(text.String()),
		"memtest": mix,
		"max":     bytes.Repeat([]byte("hangar"), MaxSize/6),
	}
}

func TestRoundTrip(t *testing.T) {
	inputs := testInputs()
	for cname, c := range testCodecs(t) {
		for iname, raw := range inputs {
			if iname == "max" && !slices.Contains([]string{"nil", "zstd-1", "lz4-0"}, cname) {
				continue // 16 MiB through every slow level adds minutes under -race, nothing more
			}
			t.Run(cname+"/"+iname, func(t *testing.T) {
				prefix := []byte("prefix")
				stored, err := Encode(prefix, raw, c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(stored[:len(prefix)], prefix) {
					t.Fatal("Encode changed dst's existing bytes")
				}
				stored = stored[len(prefix):]
				h, err := ParseHeader(stored)
				if err != nil {
					t.Fatal(err)
				}
				if h.Version != Version || h.RawLen != len(raw) {
					t.Fatalf("header %+v, raw length %d", h, len(raw))
				}
				payload := len(stored) - HeaderSize
				switch {
				case h.Codec == compression.IDNone:
					if payload != len(raw) {
						t.Fatalf("none payload %d bytes, raw %d", payload, len(raw))
					}
					if c != nil && c.ID() != compression.IDNone && iname != "random" && iname != "empty" && iname != "one" {
						t.Fatalf("%s fell back to none on %s", cname, iname)
					}
				case c == nil || h.Codec != c.ID():
					t.Fatalf("header codec %s, asked %v", h.Codec, c)
				case payload >= len(raw):
					t.Fatalf("compressed payload %d not smaller than raw %d", payload, len(raw))
				}
				if len(stored) > len(raw)+HeaderSize {
					t.Fatalf("stored %d bytes for %d raw", len(stored), len(raw))
				}
				out, err := Decode([]byte("x"), stored, Sum(raw))
				if err != nil {
					t.Fatal(err)
				}
				if out[0] != 'x' || !bytes.Equal(out[1:], raw) {
					t.Fatal("decoded bytes differ")
				}
			})
		}
	}
}

func TestEncodeRejectsOversize(t *testing.T) {
	if _, err := Encode(nil, make([]byte, MaxSize+1), nil); err == nil {
		t.Fatal("Encode accepted more than MaxSize")
	}
}

// TestDecodeForcedCodec rewrites the codec id of a compressed chunk: the
// payload must be rejected, never returned.
func TestDecodeForcedCodec(t *testing.T) {
	raw := testInputs()["memtest"][:1<<20]
	id := Sum(raw)
	codecs := testCodecs(t)
	for _, from := range []string{"zstd-1", "zstd-19", "lz4-0", "lz4-9"} {
		stored, err := Encode(nil, raw, codecs[from])
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range []compression.ID{compression.IDNone, compression.IDZstd, compression.IDLZ4} {
			if to == compression.ID(stored[5]) {
				continue
			}
			t.Run(fmt.Sprintf("%s-as-%s", from, to), func(t *testing.T) {
				forced := bytes.Clone(stored)
				forced[5] = byte(to)
				out, err := Decode(nil, forced, id)
				if err == nil {
					t.Fatalf("decoded %d bytes through the wrong codec", len(out))
				}
				if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), id.String()) {
					t.Fatalf("error %v: want ErrCorrupt naming the chunk", err)
				}
			})
		}
	}
}

func TestDecodeCorruption(t *testing.T) {
	raw := testInputs()["memtest"]
	id := Sum(raw)
	zstd1, _ := compression.New(compression.Zstd, 1)
	compressed, err := Encode(nil, raw, zstd1)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Encode(nil, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	other := raw[:len(raw)-1]
	for _, tc := range []struct {
		name   string
		stored []byte
		want   ID
		err    error
	}{
		{"empty", nil, id, ErrTruncated},
		{"header cut", compressed[:HeaderSize-1], id, ErrTruncated},
		{"magic", edit(compressed, func(b []byte) []byte { b[0] = 'X'; return b }), id, ErrBadMagic},
		{"version 0", edit(compressed, func(b []byte) []byte { b[4] = 0; return b }), id, ErrUnsupportedVersion},
		{"version 2", edit(compressed, func(b []byte) []byte { b[4] = 2; return b }), id, ErrUnsupportedVersion},
		{"flags", edit(compressed, func(b []byte) []byte { b[7] = 1; return b }), id, ErrUnsupportedVersion},
		{"codec 3", edit(compressed, func(b []byte) []byte { b[5] = 3; return b }), id, ErrUnknownCodec},
		{"codec 255", edit(compressed, func(b []byte) []byte { b[5] = 255; return b }), id, compression.ErrUnknownCodec},
		{"raw length huge", edit(compressed, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 1<<31); return b }), id, ErrTooLarge},
		{"raw length max+1", edit(compressed, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], MaxSize+1); return b }), id, ErrTooLarge},
		{"none payload short", plain[:len(plain)-1], id, ErrLengthMismatch},
		{"none payload long", append(bytes.Clone(plain), 0), id, ErrLengthMismatch},
		{"none raw length", edit(plain, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], uint32(len(raw)+1)); return b }), id, ErrLengthMismatch},
		{"compressed not shorter", edit(compressed, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], uint32(len(b)-HeaderSize)); return b }), id, ErrLengthMismatch},
		{"zstd raw length +1", edit(compressed, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], uint32(len(raw)+1)); return b }), id, ErrBadPayload},
		{"zstd raw length -1", edit(compressed, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], uint32(len(raw)-1)); return b }), id, ErrBadPayload},
		{"zstd payload cut", compressed[:len(compressed)-10], id, ErrBadPayload},
		{"zstd payload flipped", edit(compressed, func(b []byte) []byte { b[HeaderSize] ^= 0xff; return b }), id, ErrBadPayload},
		{"none content flipped", edit(plain, func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), id, ErrIDMismatch},
		{"zstd other id", compressed, Sum(other), ErrIDMismatch},
		{"none other id", plain, Sum(other), ErrIDMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := Decode(dst, tc.stored, tc.want)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("err = %v does not match storage.ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.want.String()) {
				t.Fatalf("err = %v does not name the chunk", err)
			}
			if string(out) != "keep" {
				t.Fatalf("returned %d bytes on error, want dst", len(out))
			}
		})
	}
}

// TestDecodeErrorsDistinct: no named error matches another.
func TestDecodeErrorsDistinct(t *testing.T) {
	all := []error{ErrTruncated, ErrBadMagic, ErrUnsupportedVersion, ErrUnknownCodec, ErrTooLarge, ErrLengthMismatch, ErrBadPayload, ErrIDMismatch}
	for i, a := range all {
		if !errors.Is(a, storage.ErrCorrupt) {
			t.Errorf("%v does not match storage.ErrCorrupt", a)
		}
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
}

// TestDecodeTruncatedEverywhere cuts stored chunks at every length short of
// their full size: each must fail cleanly with a corrupt error.
func TestDecodeTruncatedEverywhere(t *testing.T) {
	raw := make([]byte, 8<<10)
	memtest.FillMix(raw, 9, 0.3, memtest.Mix{Text: 1, Struct: 1})
	id := Sum(raw)
	for name, c := range testCodecs(t) {
		stored, err := Encode(nil, raw, c)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil && c.ID() != compression.ID(stored[5]) {
			t.Fatalf("%s did not compress the input; the test would not cut a compressed payload", name)
		}
		for n := 0; n < len(stored); n++ {
			if _, err := Decode(nil, stored[:n], id); !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("%s cut at %d of %d: err = %v, want ErrCorrupt", name, n, len(stored), err)
			}
		}
	}
}

// BenchmarkEncode and BenchmarkDecode measure the stored form per codec on
// 4 MiB guest-memory-like chunks (no zero chunk: a worst case for speed).
func BenchmarkEncode(b *testing.B) {
	raw := benchChunk()
	for _, name := range benchCodecNames {
		c := testCodecs(b)[name]
		b.Run(name, func(b *testing.B) {
			dst := make([]byte, 0, 2*len(raw))
			// Warm up: the first call builds the codec's pooled encoder.
			stored, err := Encode(dst[:0], raw, c)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if stored, err = Encode(dst[:0], raw, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(stored))/float64(len(raw)), "ratio")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := benchChunk()
	id := Sum(raw)
	for _, name := range benchCodecNames {
		c := testCodecs(b)[name]
		b.Run(name, func(b *testing.B) {
			stored, err := Encode(nil, raw, c)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, len(raw))
			if _, err := Decode(dst[:0], stored, id); err != nil { // warm up the decoder
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := Decode(dst[:0], stored, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var benchCodecNames = []string{"none-0", "zstd-1", "zstd-3", "zstd-7", "zstd-19", "lz4-0", "lz4-1", "lz4-9"}

// benchChunk is a 4 MiB chunk of memtest bytes with 60% zero pages, the
// scattered ones among data pages as in a real guest.
func benchChunk() []byte {
	raw := make([]byte, DefaultSize)
	memtest.Fill(raw, 11, 0.6)
	if IsZero(raw) {
		panic("bench chunk is a hole")
	}
	return raw
}
