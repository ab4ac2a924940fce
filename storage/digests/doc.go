// Package digests keeps a host-local record of a file's chunk ids, so that
// re-uploading a file that mostly did not change does not hash it again
// (docs/format.md, "Chunk digests"; docs/benchmarks.md, issue 3).
//
// Vocabulary:
//
//   - key: the host's secret (32 random bytes in a 0600 file the host
//     daemon creates once in its data directory, LoadOrCreateKey). It never
//     leaves the host and is never in a guest.
//   - keyed digest: HighwayHash-256 of a chunk's raw bytes under a subkey of
//     the key (Key.Digest), about ten times cheaper than the chunk's SHA-256
//     id with AVX2.
//   - record (the "chunk digests" sidecar): for one local file, its size,
//     its chunk size and per chunk either "hole" or (SHA-256 id, keyed
//     digest), the whole record authenticated with HMAC-SHA256 under
//     another subkey. It lives beside the file as .<name>.digests
//     (PathFor) and is written after an upload commits and after a
//     download restores the file.
//
// The next upload of the file computes each chunk's keyed digest and, when
// it equals the recorded one at that index, takes the recorded id instead of
// hashing (chunk.Options.Recall, Record.Recall). Any difference takes the
// normal path: the chunk is hashed.
//
// # Why this is sound
//
// A recorded id is only taken for bytes whose keyed digest equals the one
// recorded beside it, and the pair was computed from one buffer of bytes.
// Taking a wrong id would therefore need two different chunk contents with
// the same keyed digest. The guest controls the content of its memory,
// but it never sees the key nor any keyed digest (they stay in the host's
// data directory; all a guest could observe is whether an upload was fast,
// which tells it nothing it did not know). HighwayHash is a keyed
// pseudo-random function designed for exactly this use (hash-flooding
// resistance, like SipHash, with a 256-bit output); against an adversary
// without the key, a collision at one index has probability about 2^-128
// per attempt, and each attempt costs the guest a standby. Keyed BLAKE3 or
// HMAC-SHA256 would be the conservative MACs, at 2–3× and ≥ 1× the cost of
// the SHA-256 this avoids; HighwayHash is what makes the re-upload ≥ 10×
// faster (BenchmarkDigest, docs/benchmarks.md).
//
// The record itself is not guest data, but the host's disk may corrupt it,
// a crash may tear it, an operator may copy it from another host or edit
// it, and an id in it is not covered by its keyed digest. So the whole
// record is authenticated: a record that is truncated, edited, of another
// format version, made under another key (a foreign host, a regenerated
// key) or whose MAC fails is rejected with ErrInvalid and treated as absent.
// A record that passes describes a file of its size and chunk size; Load
// rejects it for a file of another size or another chunk size.
//
// A record is correct by construction however stale it is: it describes
// contents by keyed digest, not a file by name or time. A record left from
// before a crash, from before the guest ran again, or beside a file that was
// replaced matches only the chunks whose bytes are still the same, and
// those bytes have the recorded id. That is why it is written without
// fsync: a record lost or torn by a crash is absent or fails its MAC.
package digests
