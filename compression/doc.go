// Package compression holds the chunk codecs (zstd, lz4, none), their
// one-byte id registry and level rules, and the compression policy that
// decides, by precedence, which codec a snapshot uses.
//
// Vocabulary:
//
//   - codec: an algorithm at a level, able to Encode and Decode whole
//     chunks in memory (Codec). New(alg, level) returns the shared codec for
//     a setting; ForID(id) the codec that decodes what an id names. Codecs
//     pool their encoders and decoders and are safe for concurrent use.
//   - id: the byte stored in each chunk header naming the codec that wrote
//     it (ID): 0 none, 1 zstd, 2 lz4. Ids are never reused.
//   - raw length: the decompressed length, carried by the chunk header.
//     Decode is told it and never produces more; any other outcome is
//     ErrCorrupt. Verifying the content (SHA-256 of the raw bytes) is the
//     chunk layer's job, which is why the codecs write no checksums.
//   - policy: what an operator asks for ({enabled, algorithm, level}) at
//     one level of precedence: a request, an instance, the server default
//     (Policy). Validate reports every problem with its field and range as
//     a *ValidationError.
//   - setting: the concrete choice Resolve makes from the three policies
//     (Setting): the first policy that is set wins, enabled: false wins at
//     its level, nothing set means none.
//
// # Levels
//
// zstd takes levels 1-19 (default 1), lz4 0-9 (default 0), none only 0. The
// libraries have fewer real settings than that; each level maps as follows.
//
// zstd, through zstd.EncoderLevelFromZstd (klauspost/compress):
//
//	level  1-2    SpeedFastest            about zstd -1   (4 MiB window)
//	level  3-5    SpeedDefault            about zstd -3   (8 MiB window)
//	level  6-9    SpeedBetterCompression  about zstd -7/-8
//	level 10-19   SpeedBestCompression    about zstd -11; the library's best
//
// so levels within one row produce identical output; the level asked for is
// still what is recorded.
//
// lz4 (pierrec/lz4/v4, block format):
//
//	level 0      lz4.Compressor, the fast compressor (like lz4 -1)
//	level 1-9    lz4.CompressorHC at lz4.Level1..Level9, a search depth of
//	             2^(7+level): 256 at level 1 up to 65536 at level 9
//
// # Payload formats
//
// zstd: one standard zstd frame without content checksum (`zstd -d` reads it).
// lz4: a form byte, then either one LZ4 block (0x01) or, when LZ4 did not
// shrink the input, the raw bytes (0x00); see codec_lz4.go. none: the raw
// bytes.
//
// It imports only the standard library and the codec libraries.
package compression
