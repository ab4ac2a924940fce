// Package storage moves files to and from an object store as chunks.
//
// Vocabulary:
//
//   - store: an S3-like object store (interfaces Getter, Putter, Creator,
//     Stater, Lister, Deleter, together Store). Backends live in
//     subpackages (s3, fs, mem); so do the wrappers stacked around them at
//     wiring time (retry, metrics). A backend never wraps itself.
//   - key: an object's name, validated by ValidateKey before it reaches a
//     backend, so no key can escape a directory or a bucket prefix.
//   - chunk: a fixed-size piece of a file, named by the SHA-256 of its raw
//     bytes and stored once under chunks/<2 hex>/<id> (package chunk).
//   - hole: a chunk that is all zeros; it is recorded in the manifest and
//     never stored, sent or written.
//
// storage imports compression and knows nothing about VMs.
package storage
