// Package snapshot is hangar's content-addressed chunk store and snapshot
// catalog on top of a storage.Store: manifests, the upload and download
// pipelines, garbage collection and verification (DESIGN §3, §5). It knows
// files and chunks, not VMs.
//
// Vocabulary:
//
//   - snapshot: a set of named files (memory, device-state, ...) stored as
//     fixed-size chunks, described by a manifest; committed when its
//     manifest exists, absent otherwise.
//   - manifest: snapshots/<id>/manifest.json, written last with a
//     conditional create (the commit point), versioned (SchemaVersion) and
//     validated strictly on every read (ParseManifest).
//   - chunk: chunks/<2 hex>/<sha-256 hex>, the self-describing stored form of
//     storage/chunk; stored once however many snapshots use it. A hole (an
//     all-zero chunk) is only a mark in the manifest.
//   - index: the Repo's in-memory set of chunk ids known to be stored,
//     filled by uploads and by LoadIndex (one listing), so that an upload
//     skips stored chunks without a request per chunk.
//   - lock: locks/upload-<snapshot>-<rand>.json and locks/gc-<rand>.json,
//     objects that running uploads and GCs keep fresh, so that GC never runs
//     beside an upload (restic's lock protocol, simplified).
//   - epoch: gc/epoch.json, rewritten by every GC that deletes, so that a
//     Repo whose index predates a GC drops it rather than trust ids that
//     may have been deleted.
//   - host cache: a ChunkCache of stored chunks on this host, consulted
//     before the store by downloads and filled by uploads and downloads.
//
// Repo is the entry point: Upload (files to a committed manifest), Download
// (a manifest to sparse local files), Manifest, List, Delete, GC and
// Verify. Every chunk read is verified against its id before use; a
// mismatch is storage.ErrCorrupt naming the chunk. The key layout and
// manifest schema are specified in docs/format.md.
package snapshot
