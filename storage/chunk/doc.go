// Package chunk is hangar's chunk format and parallel chunker (DESIGN §3).
//
// A snapshot file is cut into fixed-size chunks (DefaultSize 4 MiB; any power
// of two from 1 to 16 MiB, see ValidateSize). A chunk whose bytes are all zero
// is a hole: it is recorded in the manifest and never stored. Every other
// chunk is identified by the SHA-256 of its raw bytes (ID) and stored once,
// under ID.Key() = "chunks/<first 2 hex digits>/<64 hex digits>", as a
// self-describing object:
//
//	offset  size  field
//	0       4     magic "HGCK" (0x48 0x47 0x43 0x4b)
//	4       1     format version, 1
//	5       1     codec id (compression.ID: 0 none, 1 zstd, 2 lz4; never reused)
//	6       2     reserved flags, little-endian, 0 in version 1
//	8       4     raw length, uint32 little-endian, at most MaxSize (16 MiB)
//	12      n     payload: the raw bytes (codec none), else the codec's
//	              compressed form, always shorter than the raw length
//
// The payload runs to the end of the object; its length is the object's size
// minus HeaderSize. Encode falls back to codec none when compression would
// not shrink a chunk, so a stored chunk is never more than 12 bytes larger
// than its raw bytes. Because the id is of the raw bytes, equal raw bytes are
// stored once whatever codec each writer asked for; the codec actually used
// is in the header (and in the manifest). The header has no checksum of its
// own: Decode verifies the decoded bytes' length and SHA-256 against the id
// asked for, which covers header and payload alike.
//
// Decoding is for untrusted bytes: it never panics, rejects a raw length over
// MaxSize before allocating, and each way of being wrong is its own error
// (ErrTruncated, ErrBadMagic, ErrUnsupportedVersion, ErrUnknownCodec,
// ErrTooLarge, ErrLengthMismatch, ErrBadPayload, ErrIDMismatch), each
// matching storage.ErrCorrupt and naming the chunk.
//
// Split (for an io.ReaderAt such as an *os.File) and SplitReader (for a
// stream) run the chunking pipeline: a producer hands out chunks, a fixed
// number of workers read, detect holes, hash and compress them, and the
// caller's function receives every chunk in index order. Memory is a fixed
// set of buffers (Options.Buffers) that chunks hold until the consumer
// releases them, which is also how a slow uploader slows the reader down.
// With Options.Digest and Options.Recall a caller that keeps a keyed record
// of a file's chunks (storage/digests) lets unchanged chunks take their
// recorded id instead of being hashed again.
// The same spec is in docs/format.md.
package chunk
