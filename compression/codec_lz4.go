package compression

import (
	"fmt"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// lz4 payload format: one form byte, then the body.
//
//	0x01  lz4Block: the body is one LZ4 block (not an LZ4 frame)
//	0x00  lz4Stored: the body is the raw bytes, which lz4 did not shrink
//
// The block format, not the frame format: the chunk header already carries
// the raw length and the chunk id (SHA-256 of the raw bytes) verifies the
// content, so the frame's own header, block sizes and checksums would only
// cost bytes and time.
//
// An LZ4 block can express any input as literals, but is then a little larger
// than the input. Encode gives the compressor an output buffer one byte
// shorter than the input; when the block does not fit (incompressible data,
// inputs under 2 bytes) the payload is the stored form, at most one byte
// longer than the input. The form byte, rather than a rule on lengths, keeps
// every payload self-describing: a payload written by another codec (a zstd
// frame starts with 0x28, a none payload has no form byte and is one byte
// short) is rejected instead of being taken for raw bytes.
//
// Level mapping (pierrec/lz4/v4):
//
//	0    lz4.Compressor (the fast LZ4 block compressor, like `lz4 -1`)
//	1-9  lz4.CompressorHC with Level1..Level9 (search depth 2^(7+n):
//	     256 at level 1 .. 65536 at level 9)
type lz4Codec struct {
	level int
	depth lz4.CompressionLevel
	// Compressors hold hash tables (64 KiB for Compressor, more for
	// CompressorHC on inputs over 64 KiB) worth reusing across 4 MiB chunks,
	// and are not safe for concurrent use: one per caller, from a pool.
	pool sync.Pool
}

var _ Codec = (*lz4Codec)(nil)

// blockCompressor is what *lz4.Compressor and *lz4.CompressorHC share.
type blockCompressor interface {
	CompressBlock(src, dst []byte) (int, error)
}

var lz4HCLevels = [...]lz4.CompressionLevel{
	lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4, lz4.Level5,
	lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9,
}

func newLZ4Codec(level int) *lz4Codec {
	c := &lz4Codec{level: level}
	if level == 0 {
		c.pool.New = func() any { return new(lz4.Compressor) }
	} else {
		c.depth = lz4HCLevels[level-1]
		c.pool.New = func() any { return &lz4.CompressorHC{Level: c.depth} }
	}
	return c
}

func (*lz4Codec) ID() ID               { return IDLZ4 }
func (*lz4Codec) Algorithm() Algorithm { return LZ4 }
func (c *lz4Codec) Level() int         { return c.level }

// Payload form bytes (see the format note above).
const (
	lz4Stored byte = 0x00
	lz4Block  byte = 0x01
)

func (c *lz4Codec) Encode(dst, src []byte) ([]byte, error) {
	if len(src) < 2 {
		return append(append(dst, lz4Stored), src...), nil
	}
	dst, out := grow(dst, 1+len(src)-1)
	comp := c.pool.Get().(blockCompressor)
	n, err := comp.CompressBlock(src, out[1:])
	c.pool.Put(comp)
	if err != nil || n <= 0 || n >= len(src) {
		// Did not shrink: store. An error here only ever means "does
		// not fit in len(src)-1 bytes".
		return append(append(dst, lz4Stored), src...), nil
	}
	out[0] = lz4Block
	return dst[:len(dst)+1+n], nil
}

func (c *lz4Codec) Decode(dst, src []byte, rawLen int) ([]byte, error) {
	if err := checkRawLen(rawLen); err != nil {
		return dst, err
	}
	if len(src) == 0 {
		return dst, fmt.Errorf("lz4: %w: empty payload", ErrCorrupt)
	}
	form, body := src[0], src[1:]
	switch form {
	case lz4Stored:
		if len(body) != rawLen {
			return dst, fmt.Errorf("lz4: %w: stored payload of %d bytes, want %d", ErrCorrupt, len(body), rawLen)
		}
		return append(dst, body...), nil
	case lz4Block:
		if len(body) >= rawLen {
			// Encode stores rather than write such a block.
			return dst, fmt.Errorf("lz4: %w: block of %d bytes for raw length %d", ErrCorrupt, len(body), rawLen)
		}
	default:
		return dst, fmt.Errorf("lz4: %w: unknown payload form 0x%02x", ErrCorrupt, form)
	}
	// The decoder writes only within out, so rawLen bounds the output.
	dst, out := grow(dst, rawLen)
	n, err := lz4.UncompressBlock(body, out)
	if err != nil {
		return dst, fmt.Errorf("lz4: %w: %v", ErrCorrupt, err)
	}
	if n != rawLen {
		return dst, fmt.Errorf("lz4: %w: decoded %d bytes, want %d", ErrCorrupt, n, rawLen)
	}
	return dst[:len(dst)+n], nil
}
