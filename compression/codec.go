package compression

import (
	"fmt"
	"strings"
)

// ID is the one-byte codec identifier written into every stored chunk header.
// IDs come from this single registry and are never reused: an ID that is
// retired stays reserved so that old chunks can never be misread.
type ID byte

const (
	IDNone ID = 0 // payload stored as is
	IDZstd ID = 1 // zstd frame (klauspost/compress/zstd)
	IDLZ4  ID = 2 // lz4 frame (pierrec/lz4/v4)
)

// Algorithm is the operator-facing name of a codec. Names are matched
// case-insensitively by ParseAlgorithm; the canonical form is lower case.
type Algorithm string

const (
	None Algorithm = "none"
	Zstd Algorithm = "zstd"
	LZ4  Algorithm = "lz4"
)

// ParseAlgorithm returns the canonical algorithm for a case-insensitive name.
func ParseAlgorithm(name string) (Algorithm, error) {
	switch a := Algorithm(strings.ToLower(strings.TrimSpace(name))); a {
	case None, Zstd, LZ4:
		return a, nil
	}
	return "", fmt.Errorf("unknown compression algorithm %q (want zstd, lz4 or none)", name)
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
	Encode(dst, src []byte) ([]byte, error)
	// Decode appends the decompressed form of src to dst and returns it.
	// rawLen is the exact decompressed length the caller expects; Decode
	// fails rather than produce more than rawLen bytes, so a hostile payload
	// cannot make it allocate without bound.
	Decode(dst, src []byte, rawLen int) ([]byte, error)
}
