package compression

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstd payload format: one zstd frame (RFC 8878) as written by
// klauspost/compress EncodeAll, without the optional content checksum.
// Decode accepts any valid sequence of frames, with or without checksums.
//
// Level mapping: klauspost/compress implements four encoder strategies
// rather than zstd's 22 levels; zstd.EncoderLevelFromZstd picks the one whose
// ratio is closest to the reference level:
//
//	zstd level  1-2    SpeedFastest           (about zstd -1)
//	zstd level  3-5    SpeedDefault           (about zstd -3)
//	zstd level  6-9    SpeedBetterCompression (about zstd -7 or -8)
//	zstd level 10-19   SpeedBestCompression   (the library's best; about
//	                                           zstd -11, short of -19)
//
// Levels that land on the same strategy compress identically; the level an
// operator asked for is still what the manifest records.
//
// Encoder options, chosen for independent 4 MiB chunks:
//   - concurrency 1 per encoder: EncodeAll runs on the calling goroutine
//     anyway, and each extra unit of concurrency would hold a full set of
//     match tables per pooled encoder; parallelism comes from the chunk
//     pipeline's workers, each of which draws its own encoder from the pool.
//   - no content checksum (WithEncoderCRC(false)): every chunk is verified
//     against its id, the SHA-256 of the raw bytes, after decoding, which is
//     strictly stronger; the xxhash would cost a pass and 4 bytes per chunk.
//   - default window (8 MiB at these strategies, 4 MiB for SpeedFastest):
//     a 4 MiB chunk fits whole, so frames are single-segment and the decoder
//     needs no history buffer beyond its output.
//
// Pooling: encoders in a sync.Pool per level (kopia's compressor_zstd.go);
// BenchmarkZstdPooling compares it with one shared encoder
// whose EncodeAll bounds concurrency itself. One decoder, shared by all
// levels, uses the library's concurrency-safe DecodeAll with GOMAXPROCS
// internal block decoders: decoding does not depend on the level, and
// DecodeAll queues callers beyond GOMAXPROCS rather than allocating more.
type zstdCodec struct {
	level int
	pool  sync.Pool // of *zstd.Encoder
}

var _ Codec = (*zstdCodec)(nil)

// zstdMaxWindow bounds the window a frame may declare: far above the 8 MiB
// our encoder writes and the 16 MiB largest chunk, far below the library's
// 512 MiB default, so hostile frames cannot ask for big history buffers.
const zstdMaxWindow = 64 << 20

func newZstdCodec(level int) *zstdCodec {
	c := &zstdCodec{level: level}
	c.pool.New = func() any {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false),
		)
		if err != nil {
			// Only reachable with invalid options, which are constants here.
			panic(fmt.Sprintf("zstd: new encoder at level %d: %v", level, err))
		}
		return enc
	}
	return c
}

func (*zstdCodec) ID() ID               { return IDZstd }
func (*zstdCodec) Algorithm() Algorithm { return Zstd }
func (c *zstdCodec) Level() int         { return c.level }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	enc := c.pool.Get().(*zstd.Encoder)
	dst = enc.EncodeAll(src, dst)
	c.pool.Put(enc)
	return dst, nil
}

// zstdDecoder is built on first use and lives for the process.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		// DecodeAll then never writes past cap(dst): Decode hands it a
		// slice whose capacity ends exactly rawLen bytes on.
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
	)
})

func (c *zstdCodec) Decode(dst, src []byte, rawLen int) ([]byte, error) {
	if err := checkRawLen(rawLen); err != nil {
		return dst, err
	}
	dec, err := zstdDecoder()
	if err != nil {
		return dst, fmt.Errorf("zstd: new decoder: %w", err)
	}
	dst, _ = grow(dst, rawLen)
	n := len(dst)
	out, err := dec.DecodeAll(src, dst[:n:n+rawLen])
	if err != nil {
		return dst, fmt.Errorf("zstd: %w: %v", ErrCorrupt, err)
	}
	if len(out) != n+rawLen {
		return dst, fmt.Errorf("zstd: %w: decoded %d bytes, want %d", ErrCorrupt, len(out)-n, rawLen)
	}
	// out shares dst's array (the cap limit forbids growing it); return
	// dst itself so the caller keeps the full capacity it had.
	return dst[:n+rawLen], nil
}
