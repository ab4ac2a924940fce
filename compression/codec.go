package compression

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ID is the one-byte codec identifier written into every stored chunk header.
// IDs come from this single registry and are never reused: an ID that is
// retired stays reserved so that old chunks can never be misread.
type ID byte

const (
	IDNone ID = 0 // payload stored as is
	IDZstd ID = 1 // one or more zstd frames (klauspost/compress/zstd)
	IDLZ4  ID = 2 // form byte + one lz4 block, or + the raw bytes lz4 did not shrink (codec_lz4.go)
)

// String returns the algorithm name of a known id, or "id(N)".
func (id ID) String() string {
	switch id {
	case IDNone:
		return string(None)
	case IDZstd:
		return string(Zstd)
	case IDLZ4:
		return string(LZ4)
	}
	return fmt.Sprintf("id(%d)", byte(id))
}

// Algorithm is the operator-facing name of a codec. Names are matched
// case-insensitively by ParseAlgorithm; the canonical form is lower case.
type Algorithm string

const (
	None Algorithm = "none"
	Zstd Algorithm = "zstd"
	LZ4  Algorithm = "lz4"
)

// Errors returned by this package; match them with errors.Is.
var (
	// ErrUnknownCodec: a codec id (read from a stored chunk) is not in the
	// registry.
	ErrUnknownCodec = errors.New("unknown codec id")
	// ErrUnknownAlgorithm: an algorithm name is none of zstd, lz4, none.
	ErrUnknownAlgorithm = errors.New("unknown compression algorithm")
	// ErrInvalidLevel: a level outside the algorithm's range (LevelRange).
	ErrInvalidLevel = errors.New("invalid compression level")
	// ErrCorrupt: a payload does not decode, or decodes to a length other
	// than the raw length the caller expects.
	ErrCorrupt = errors.New("corrupt compressed payload")
)

// ParseAlgorithm returns the canonical algorithm for a case-insensitive name.
func ParseAlgorithm(name string) (Algorithm, error) {
	switch a := Algorithm(strings.ToLower(strings.TrimSpace(name))); a {
	case None, Zstd, LZ4:
		return a, nil
	}
	return "", fmt.Errorf("%w %q (want zstd, lz4 or none)", ErrUnknownAlgorithm, name)
}

// ID returns the header id of the algorithm's codec; ok is false for an
// algorithm that is not canonical (use ParseAlgorithm first).
func (a Algorithm) ID() (id ID, ok bool) {
	switch a {
	case None:
		return IDNone, true
	case Zstd:
		return IDZstd, true
	case LZ4:
		return IDLZ4, true
	}
	return 0, false
}

// Codec compresses and decompresses whole chunks held in memory.
//
// Implementations are safe for concurrent use by many goroutines; they keep
// their encoders and decoders in pools, so a call allocates little beyond the
// output it appends to.
type Codec interface {
	// ID is the header id stored with every chunk this codec encodes.
	ID() ID
	// Algorithm and Level describe the setting this codec was built for.
	Algorithm() Algorithm
	Level() int
	// Encode appends the compressed form of src to dst and returns it.
	// It succeeds on any input, incompressible data included.
	Encode(dst, src []byte) ([]byte, error)
	// Decode appends the decompressed form of src to dst and returns it.
	// rawLen is the exact decompressed length the caller expects; Decode
	// fails rather than produce more than rawLen bytes, so a hostile payload
	// cannot make it allocate without bound. A payload that is not valid for
	// the codec, or that decodes to any length other than rawLen, yields an
	// error wrapping ErrCorrupt; Decode never panics on hostile bytes. On
	// error the returned slice is dst (bytes past len(dst) may have been
	// written).
	Decode(dst, src []byte, rawLen int) ([]byte, error)
}

// Level ranges and defaults (DESIGN §4). The mapping of each level onto the
// libraries' own levels is in codec_zstd.go, codec_lz4.go and doc.go.
const (
	ZstdMinLevel     = 1
	ZstdMaxLevel     = 19
	ZstdDefaultLevel = 1
	LZ4MinLevel      = 0
	LZ4MaxLevel      = 9
	LZ4DefaultLevel  = 0
)

// LevelRange returns the inclusive range of levels alg accepts. None accepts
// only 0. An unknown algorithm returns (0, -1): an empty range.
func LevelRange(alg Algorithm) (min, max int) {
	switch alg {
	case Zstd:
		return ZstdMinLevel, ZstdMaxLevel
	case LZ4:
		return LZ4MinLevel, LZ4MaxLevel
	case None:
		return 0, 0
	}
	return 0, -1
}

// DefaultLevel returns the level used when an operator names alg without a
// level: 1 for zstd (the fastest, which is what standby wants), 0 for lz4,
// 0 for none (and for an unknown algorithm).
func DefaultLevel(alg Algorithm) int {
	switch alg {
	case Zstd:
		return ZstdDefaultLevel
	case LZ4:
		return LZ4DefaultLevel
	}
	return 0
}

// Codecs are built once per (algorithm, level) and shared, so that every
// caller asking for zstd:3 draws from the same encoder pool. Building a codec
// allocates no encoder; pools fill on first use.
var (
	noneCodecs = []*noneCodec{{}}
	zstdCodecs = makeCodecs(ZstdMinLevel, ZstdMaxLevel, newZstdCodec)
	lz4Codecs  = makeCodecs(LZ4MinLevel, LZ4MaxLevel, newLZ4Codec)
)

func makeCodecs[C any](lo, hi int, mk func(int) C) []C {
	cs := make([]C, 0, hi-lo+1)
	for l := lo; l <= hi; l++ {
		cs = append(cs, mk(l))
	}
	return cs
}

// New returns the codec for alg at level. alg must be canonical (as returned
// by ParseAlgorithm); a level outside LevelRange(alg) is an error wrapping
// ErrInvalidLevel that names the algorithm and the allowed range. The codec
// returned is shared and safe for concurrent use.
func New(alg Algorithm, level int) (Codec, error) {
	lo, hi := LevelRange(alg)
	if hi < lo {
		return nil, fmt.Errorf("%w %q (want zstd, lz4 or none)", ErrUnknownAlgorithm, string(alg))
	}
	if level < lo || level > hi {
		if alg == None {
			return nil, fmt.Errorf("%w: none takes no level (got %d)", ErrInvalidLevel, level)
		}
		return nil, fmt.Errorf("%w: %d is out of range for %s (%d-%d)", ErrInvalidLevel, level, alg, lo, hi)
	}
	switch alg {
	case Zstd:
		return zstdCodecs[level-lo], nil
	case LZ4:
		return lz4Codecs[level-lo], nil
	}
	return noneCodecs[0], nil
}

// ForID returns a codec able to decode payloads written under id at any
// level (decoding does not depend on the level). Its Level is the
// algorithm's default, so encoding with it is well defined too. An id not in
// the registry is an error wrapping ErrUnknownCodec.
func ForID(id ID) (Codec, error) {
	switch id {
	case IDNone:
		return noneCodecs[0], nil
	case IDZstd:
		return zstdCodecs[ZstdDefaultLevel-ZstdMinLevel], nil
	case IDLZ4:
		return lz4Codecs[LZ4DefaultLevel-LZ4MinLevel], nil
	}
	return nil, fmt.Errorf("%w %d", ErrUnknownCodec, byte(id))
}

// checkRawLen rejects a negative expected length before any codec uses it.
func checkRawLen(rawLen int) error {
	if rawLen < 0 {
		return fmt.Errorf("%w: negative raw length %d", ErrCorrupt, rawLen)
	}
	return nil
}

// grow returns dst with room for n more bytes and the n-byte window after
// len(dst), without changing len(dst).
func grow(dst []byte, n int) ([]byte, []byte) {
	dst = slices.Grow(dst, n)
	return dst, dst[len(dst) : len(dst)+n]
}
