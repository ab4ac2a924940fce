package compression

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/hangar-vm/hangar/internal/memtest"
)

// levelClasses returns, per algorithm, the min, default and max level (and
// the level where each library strategy starts, for zstd).
func levelClasses() []Setting {
	return []Setting{
		{None, 0},
		{Zstd, 1}, {Zstd, 3}, {Zstd, 6}, {Zstd, 10}, {Zstd, 19},
		{LZ4, 0}, {LZ4, 1}, {LZ4, 9},
	}
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func textBytes(n int) []byte {
	const para = "The host daemon pauses the guest, writes its memory to local disk and " +
		"streams it, chunk by chunk, to object storage; zero chunks are holes. "
	return []byte(strings.Repeat(para, n/len(para)+1)[:n])
}

func memBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	memtest.Fill(b, seed, 0.6)
	return b
}

type input struct {
	name string
	data []byte
}

func inputs() []input {
	return []input{
		{"empty", nil},
		{"one-byte", []byte{7}},
		{"zeros-4MiB", make([]byte, 4<<20)},
		{"random-256KiB", randomBytes(256<<10, 1)},
		{"random-100B", randomBytes(100, 2)},
		{"text-256KiB", textBytes(256 << 10)},
		{"memory-4MiB", memBytes(4<<20, 3)},
		{"memory-odd", memBytes(1<<20+12345, 4)},
	}
}

func TestNewLevels(t *testing.T) {
	tests := []struct {
		alg     Algorithm
		level   int
		wantErr error
	}{
		{Zstd, 0, ErrInvalidLevel}, {Zstd, 1, nil}, {Zstd, 19, nil}, {Zstd, 20, ErrInvalidLevel},
		{LZ4, -1, ErrInvalidLevel}, {LZ4, 0, nil}, {LZ4, 9, nil}, {LZ4, 10, ErrInvalidLevel},
		{None, 0, nil}, {None, 1, ErrInvalidLevel},
		{"ZSTD", 1, ErrUnknownAlgorithm}, // New takes canonical names only
		{"gzip", 1, ErrUnknownAlgorithm},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s:%d", tt.alg, tt.level), func(t *testing.T) {
			c, err := New(tt.alg, tt.level)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New(%q, %d) error = %v, want %v", tt.alg, tt.level, err, tt.wantErr)
			}
			if err != nil {
				if tt.wantErr == ErrInvalidLevel && !strings.Contains(err.Error(), string(tt.alg)) {
					t.Errorf("error %q does not name the algorithm", err)
				}
				return
			}
			if c.Algorithm() != tt.alg || c.Level() != tt.level {
				t.Errorf("codec is %s:%d, want %s:%d", c.Algorithm(), c.Level(), tt.alg, tt.level)
			}
			if id, _ := tt.alg.ID(); c.ID() != id {
				t.Errorf("ID() = %v, want %v", c.ID(), id)
			}
		})
	}
	if _, err := New(Zstd, 20); err == nil || !strings.Contains(err.Error(), "1-19") {
		t.Errorf("zstd:20 error %v does not give the range 1-19", err)
	}
}

func TestLevelRangeAndDefault(t *testing.T) {
	tests := []struct {
		alg            Algorithm
		lo, hi, deflvl int
	}{
		{Zstd, 1, 19, 1}, {LZ4, 0, 9, 0}, {None, 0, 0, 0},
	}
	for _, tt := range tests {
		lo, hi := LevelRange(tt.alg)
		if lo != tt.lo || hi != tt.hi || DefaultLevel(tt.alg) != tt.deflvl {
			t.Errorf("%s: range %d-%d default %d, want %d-%d default %d",
				tt.alg, lo, hi, DefaultLevel(tt.alg), tt.lo, tt.hi, tt.deflvl)
		}
	}
	if lo, hi := LevelRange("gzip"); hi >= lo {
		t.Errorf("unknown algorithm has range %d-%d, want empty", lo, hi)
	}
}

func TestForID(t *testing.T) {
	for _, id := range []ID{IDNone, IDZstd, IDLZ4} {
		c, err := ForID(id)
		if err != nil {
			t.Fatalf("ForID(%v): %v", id, err)
		}
		if c.ID() != id {
			t.Errorf("ForID(%v).ID() = %v", id, c.ID())
		}
	}
	for _, id := range []ID{3, 42, 255} {
		if _, err := ForID(id); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("ForID(%d) error = %v, want ErrUnknownCodec", id, err)
		}
	}
	// A payload written at any level decodes with ForID's codec.
	src := memBytes(1<<20, 9)
	for _, s := range levelClasses() {
		c := mustCodec(t, s)
		enc, _ := c.Encode(nil, src)
		d, _ := ForID(c.ID())
		got, err := d.Decode(nil, enc, len(src))
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("%s payload through ForID(%v): err %v, equal %v", s, c.ID(), err, bytes.Equal(got, src))
		}
	}
}

func mustCodec(t testing.TB, s Setting) Codec {
	t.Helper()
	c, err := s.Codec()
	if err != nil {
		t.Fatalf("codec %s: %v", s, err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	prefix := []byte("prefix-")
	for _, s := range levelClasses() {
		c := mustCodec(t, s)
		for _, in := range inputs() {
			t.Run(s.String()+"/"+in.name, func(t *testing.T) {
				// Encode and Decode append: a prefix in dst must survive.
				enc, err := c.Encode(bytes.Clone(prefix), in.data)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				if !bytes.HasPrefix(enc, prefix) {
					t.Fatal("Encode clobbered dst")
				}
				payload := enc[len(prefix):]
				got, err := c.Decode(bytes.Clone(prefix), payload, len(in.data))
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], in.data) {
					t.Fatal("round trip changed the bytes")
				}
				// Compressors must actually compress what compresses.
				if s.Algorithm != None && len(in.data) >= 256<<10 && !strings.HasPrefix(in.name, "random") &&
					len(payload) > len(in.data)/2 {
					t.Errorf("%s: %d -> %d bytes, expected at least 2x", in.name, len(in.data), len(payload))
				}
				// lz4 expands by at most its form byte; zstd by its frame overhead.
				if s.Algorithm == LZ4 && len(payload) > len(in.data)+1 {
					t.Errorf("lz4 expanded %d -> %d bytes", len(in.data), len(payload))
				}
				if s.Algorithm == Zstd && len(payload) > len(in.data)+len(in.data)/1000+32 {
					t.Errorf("zstd expanded %d -> %d bytes", len(in.data), len(payload))
				}
			})
		}
	}
}

func TestDecodeRejectsBadPayloads(t *testing.T) {
	src := memBytes(1<<20, 5)
	encoded := map[Algorithm][]byte{}
	for _, alg := range []Algorithm{None, Zstd, LZ4} {
		c, _ := New(alg, DefaultLevel(alg))
		encoded[alg], _ = c.Encode(nil, src)
	}
	garbage := randomBytes(4096, 77)
	type tc struct {
		name    string
		dec     Algorithm
		payload []byte
		rawLen  int
	}
	var tests []tc
	for _, from := range []Algorithm{None, Zstd, LZ4} {
		for _, to := range []Algorithm{Zstd, LZ4} {
			if from != to {
				tests = append(tests, tc{fmt.Sprintf("%s-through-%s", from, to), to, encoded[from], len(src)})
			}
		}
	}
	for _, alg := range []Algorithm{None, Zstd, LZ4} {
		p := encoded[alg]
		tests = append(tests,
			tc{string(alg) + "/truncated-half", alg, p[:len(p)/2], len(src)},
			tc{string(alg) + "/truncated-1", alg, p[:len(p)-1], len(src)},
			tc{string(alg) + "/rawLen-short", alg, p, len(src) - 1},
			tc{string(alg) + "/rawLen-long", alg, p, len(src) + 1},
			tc{string(alg) + "/rawLen-negative", alg, p, -1},
			tc{string(alg) + "/garbage", alg, garbage, len(src)},
			tc{string(alg) + "/empty", alg, nil, len(src)},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := New(tt.dec, DefaultLevel(tt.dec))
			dst := []byte("keep")
			got, err := c.Decode(dst, tt.payload, tt.rawLen)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode error = %v, want ErrCorrupt", err)
			}
			if string(got) != "keep" {
				t.Errorf("failed Decode returned %d bytes, want dst unchanged", len(got))
			}
		})
	}
}

// Incompressible input costs lz4 one byte (the stored form); compressible
// input becomes a block.
func TestLZ4Forms(t *testing.T) {
	c, _ := New(LZ4, 0)
	rnd := randomBytes(64<<10, 3)
	enc, _ := c.Encode(nil, rnd)
	if len(enc) != len(rnd)+1 || enc[0] != lz4Stored || !bytes.Equal(enc[1:], rnd) {
		t.Fatalf("incompressible input: payload is %d bytes, want the stored form (%d)", len(enc), len(rnd)+1)
	}
	zeros := make([]byte, 64<<10)
	enc, _ = c.Encode(nil, zeros)
	if enc[0] != lz4Block || len(enc) >= len(zeros) {
		t.Fatalf("zeros: payload is %d bytes with form %#x, want a block", len(enc), enc[0])
	}
}

func TestZstdDecodeStopsAtRawLen(t *testing.T) {
	c, _ := New(Zstd, 1)
	src := make([]byte, 8<<20) // 8 MiB of zeros: a tiny payload, a big output
	enc, _ := c.Encode(nil, src)
	got, err := c.Decode(make([]byte, 0, 16), enc, 4096)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode with rawLen 4096 of an 8 MiB frame: err %v", err)
	}
	if cap(got) > 4096+16 {
		t.Errorf("Decode grew dst to %d bytes for rawLen 4096", cap(got))
	}
}

func TestConcurrentRoundTrip(t *testing.T) {
	srcs := [][]byte{memBytes(1<<20, 11), textBytes(256 << 10), randomBytes(256<<10, 12), make([]byte, 1<<20)}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i, s := range levelClasses() {
				if s.Algorithm == Zstd && s.Level >= 10 {
					continue // slow under -race; covered by TestRoundTrip
				}
				c, _ := s.Codec()
				src := srcs[(g+i)%len(srcs)]
				var enc, dec []byte
				for range 3 {
					enc, _ = c.Encode(enc[:0], src)
					d, err := c.Decode(dec[:0], enc, len(src))
					if err != nil || !bytes.Equal(d, src) {
						errs <- fmt.Errorf("goroutine %d %s: err %v, equal %v", g, s, err, bytes.Equal(d, src))
						return
					}
					dec = d
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestIDAndAlgorithm(t *testing.T) {
	for _, alg := range []Algorithm{None, Zstd, LZ4} {
		id, ok := alg.ID()
		if !ok || id.String() != string(alg) {
			t.Errorf("%s: ID() = %v, %v", alg, id, ok)
		}
	}
	if _, ok := Algorithm("ZSTD").ID(); ok {
		t.Error("non-canonical name has an id")
	}
	if got := ID(9).String(); got != "id(9)" {
		t.Errorf("ID(9).String() = %q", got)
	}
	for _, name := range []string{"zstd", "ZSTD", " Lz4 ", "None"} {
		if _, err := ParseAlgorithm(name); err != nil {
			t.Errorf("ParseAlgorithm(%q): %v", name, err)
		}
	}
	if _, err := ParseAlgorithm("gzip"); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("ParseAlgorithm(gzip) error = %v", err)
	}
}
