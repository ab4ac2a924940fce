// Package compression holds the chunk codecs (zstd, lz4, none), their
// one-byte id registry and level rules, and the compression policy that
// decides, by precedence, which codec a snapshot uses.
//
// Vocabulary:
//
//   - codec: an algorithm at a level, able to Encode and Decode whole
//     chunks in memory (Codec). Codecs pool their encoders and decoders and
//     are safe for concurrent use.
//   - id: the byte stored in each chunk header naming the codec that wrote
//     it (ID). Ids are never reused.
//   - policy: what an operator asks for ({enabled, algorithm, level}) at
//     one level of precedence: a request, an instance, the server default
//     (Policy). Resolve picks the first that is set.
//
// It imports only the standard library and the codec libraries.
package compression
