package compression

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary payloads and raw lengths to every codec: Decode
// must never panic, must either fail with ErrCorrupt leaving dst as it was
// or produce exactly rawLen bytes after dst; and Encode then Decode of the
// same bytes must give them back.
func FuzzDecode(f *testing.F) {
	for _, s := range []Setting{{None, 0}, {Zstd, 1}, {Zstd, 19}, {LZ4, 0}, {LZ4, 9}} {
		c, _ := s.Codec()
		for _, src := range [][]byte{nil, {1}, textBytes(300), make([]byte, 5000), memBytes(8192, 1), randomBytes(64, 2)} {
			enc, _ := c.Encode(nil, src)
			f.Add(byte(c.ID()), enc, len(src))
			f.Add(byte(c.ID()), enc, len(src)+1)
			if len(enc) > 4 {
				f.Add(byte(c.ID()), enc[:len(enc)-3], len(src))
			}
		}
	}
	// Hand-written hostile payloads.
	f.Add(byte(IDZstd), []byte{0x28, 0xb5, 0x2f, 0xfd}, 10)                                     // magic only
	f.Add(byte(IDZstd), []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe4, 0, 0, 0, 0, 0, 0, 0, 0x40}, 1<<20) // huge declared size
	f.Add(byte(IDZstd), []byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4}, 0)              // skippable frame
	f.Add(byte(IDLZ4), []byte{lz4Block, 0xf0, 0xff, 0xff, 0xff, 0x00}, 1<<20)                   // literal run past input
	f.Add(byte(IDLZ4), []byte{lz4Block, 0x1f, 'a', 0xff, 0xff}, 100)                            // offset past start
	f.Add(byte(IDLZ4), []byte{lz4Stored, 'a', 'b'}, 2)
	f.Add(byte(IDLZ4), []byte{7, 'a'}, 1)
	f.Add(byte(IDNone), []byte("abc"), -1)

	f.Fuzz(func(t *testing.T, id byte, payload []byte, rawLen int) {
		c, err := ForID(ID(id % 3))
		if err != nil {
			t.Fatal(err)
		}
		// Raw lengths come from a chunk header the chunk layer bounds to
		// 16 MiB; keep them small here so the fuzzer spends its time on
		// payloads, not allocations. Negative lengths stay negative.
		rawLen %= 1<<20 + 1
		dst := []byte("pre")
		out, err := c.Decode(dst, payload, rawLen)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v: Decode error %v does not wrap ErrCorrupt", c.ID(), err)
			}
			if string(out) != "pre" {
				t.Fatalf("%v: failed Decode returned %d bytes, want dst", c.ID(), len(out))
			}
		} else if len(out) != 3+rawLen || string(out[:3]) != "pre" {
			t.Fatalf("%v: Decode gave %d bytes after dst, want rawLen %d", c.ID(), len(out)-3, rawLen)
		}

		enc, err := c.Encode(nil, payload)
		if err != nil {
			t.Fatalf("%v: Encode: %v", c.ID(), err)
		}
		back, err := c.Decode(nil, enc, len(payload))
		if err != nil || !bytes.Equal(back, payload) {
			t.Fatalf("%v: round trip of %d bytes: err %v", c.ID(), len(payload), err)
		}
	})
}

// FuzzPolicy feeds arbitrary JSON to the policy: Validate never panics, its
// problems always name a compression field, and a policy that validates
// always resolves, at every level of precedence, to a working codec.
func FuzzPolicy(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `{"enabled":false}`, `{"enabled":true}`,
		`{"algorithm":"zstd","level":19}`, `{"algorithm":"ZSTD"}`, `{"algorithm":" Lz4 ","level":9}`,
		`{"algorithm":"zstd","level":0}`, `{"algorithm":"lz4","level":-1}`, `{"level":3}`,
		`{"algorithm":"gzip","level":5}`, `{"enabled":true,"algorithm":"none","level":5}`,
		`{"enabled":false,"algorithm":"lz4","level":10}`, `{"algorithm":"none","level":0}`,
		`{"level":9223372036854775807,"algorithm":"zstd"}`, `{"algorithm":""}`,
	} {
		f.Add([]byte(s))
	}
	src := textBytes(2000)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Policy
		if json.Unmarshal(data, &p) != nil {
			return
		}
		err := p.Validate()
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Validate error %v is not a *ValidationError with problems", err)
			}
			for _, prob := range ve.Problems {
				if !strings.HasPrefix(prob.Field, "compression.") || prob.Message == "" {
					t.Fatalf("problem %q does not name its field", prob)
				}
			}
			if _, rerr := Resolve(nil, nil, &p); !errors.Is(rerr, ErrInvalidPolicy) {
				t.Fatalf("Resolve accepted a policy Validate rejects: %v", rerr)
			}
			return
		}
		want, err := Resolve(&p, nil, nil)
		if err != nil {
			t.Fatalf("valid policy %+v does not resolve: %v", p, err)
		}
		for _, got := range []func() (Setting, error){
			func() (Setting, error) { return Resolve(nil, &p, nil) },
			func() (Setting, error) { return Resolve(nil, nil, &p) },
		} {
			if s, err := got(); err != nil || s != want {
				t.Fatalf("policy %+v resolves to %s at one level and %s (%v) at another", p, want, s, err)
			}
		}
		if !p.IsSet() && want != (Setting{None, 0}) {
			t.Fatalf("unset policy %+v resolved to %s", p, want)
		}
		c, err := want.Codec()
		if err != nil {
			t.Fatalf("setting %s from valid policy %+v has no codec: %v", want, p, err)
		}
		enc, _ := c.Encode(nil, src)
		if back, err := c.Decode(nil, enc, len(src)); err != nil || !bytes.Equal(back, src) {
			t.Fatalf("codec %s does not round-trip: %v", want, err)
		}
	})
}
