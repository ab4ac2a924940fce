// Package manager is the host's instance manager: it runs VMs through a
// vmhost.Hypervisor, parks them on local disk (standby), moves their
// snapshots to central storage with background upload jobs, and brings them
// back (restore) or copies them (fork) from local files or from central
// storage (downloaded, or with Config.RestoreLazy served lazily: lazy.go).
//
// # Vocabulary
//
//   - An instance is one VM as the operator sees it: an id, a name, a size,
//     a state. It survives standby, restore and daemon restarts.
//   - A snapshot is a VM's memory, device state and description (the files
//     vmhost.MemoryFile, DeviceStateFile, SnapshotInfoFile) under a
//     snapshot id. It lives locally (the raw files in <data>/s/<id>/),
//     centrally (a committed manifest in the bucket), or both. Its storage
//     state says which: local → uploading → central, or error.
//   - A named snapshot is taken while the instance goes on (Snapshot),
//     kept until deleted, and outlives its instance (snapshot.go).
//   - A rollback resumes a Standby or Stopped instance from one of its
//     own named snapshots; a Standby one only once its standby snapshot
//     is central, which the server then deletes (rollback.go).
//   - An upload job moves one standby or named snapshot from local files to central
//     storage. It is persisted (<data>/jobs/<snapshot id>.json), retried
//     with backoff while the store is unreachable, resumed after a restart,
//     and preempted (cancelled, then waited for) by a restore that needs
//     the local files back.
//
// # States (DESIGN §5)
//
//	Creating ─→ Running ⇄ Standby ─→ Deleted
//	               │  ↑
//	               ↓  │ (start: a fresh boot)
//	             Stopped
//
// plus Error, reached when a boot fails or a guest dies on its own. Every
// state except Creating may be deleted. Operations that are not legal in
// the current state fail with ErrInvalidState and change nothing.
//
// # One operation at a time
//
// Each instance has one operation slot. An operation that finds it taken
// fails at once with ErrBusy (the API maps it to 409 conflict) instead of
// queueing behind it: a caller (the server) that wants to wait retries, and
// an operation never runs against a state it did not see when it was
// asked. Forks only read their source's files, so any number of forks of
// one source share it; a restore or delete of that source waits for none of
// them and is refused while they run. Background upload jobs do not hold
// the slot: a restore preempts them.
//
// # Layout of the data directory
//
//	<data>/i/<instance id>/instance.json  instance metadata (atomic writes)
//	<data>/r/<8 hex>/                     a VM's runtime directory: sockets,
//	                                      logs, live memory (short path:
//	                                      unix sockets fit 107 bytes); a
//	                                      restore renames the snapshot (or
//	                                      download) directory to it
//	<data>/r/<8 hex>/lazy/memory          a lazy restore's memory file, a
//	                                      FUSE mount served by its own
//	                                      process (lazy.go, lazychild.go;
//	                                      lazyfs.{json,pid,log,vm,backing}
//	                                      beside it)
//	<data>/lazy.sock                      the chunk socket lazy servers
//	                                      fetch from
//	<data>/s/<snapshot id>/               a standby or named snapshot's
//	                                      raw files (a stopped one: only
//	                                      config.json)
//	<data>/n/<snapshot id>.json           a named snapshot's record: name,
//	                                      kind, storage, the source's vm
//	                                      record (it outlives the instance)
//	<data>/d/<8 hex>/                     a download in progress
//	<data>/jobs/<snapshot id>.json        an active or failed upload job
//	                                      (role standby or named)
//	<data>/digest.key                     the host's secret chunk digest
//	                                      key (0600, created once)
//	<dir>/.<file>.digests                 beside a memory (or other
//	                                      snapshot) file in r/, s/ or d/:
//	                                      its chunk digests (digests.go)
//
// Ids from outside (instance and snapshot ids) are validated against
// ^[a-z0-9][a-z0-9-]{0,62}$ before any path is built from them.
//
// # Crash safety
//
// Every metadata file is replaced atomically (vmhost.WriteFileAtomic). A
// manager opened on a data directory after the previous one was killed
// finds every instance and job: running guests are re-attached
// (Hypervisor.Attach), guests that died are marked Error, a standby that
// was interrupted after its files became durable is recognised, and
// unfinished uploads start again (chunks already stored are skipped by id).
//
// A restore or fork from central storage downloads without fsync
// (snapshot.DownloadOptions.NoSync): the memory file it writes becomes the
// guest's live RAM, whose copy on disk is never consistent while the guest
// runs, and the committed snapshot in the store stays the durable copy. A
// host crash kills the guest anyway; after it nothing reuses a downloaded
// memory file: an interrupted restore's runtime directory is removed and
// the instance falls back to its committed snapshot, a guest that had
// resumed reads Error. Files are still renamed into place only
// once whole, so a download is never seen half-written while the host
// runs. Skipping the fsync saves the wait for the disk to take the whole
// restored memory, a quarter second per half-used GiB on the benchmark
// machine (docs/benchmarks.md). Standby still fsyncs: that memory file is
// then the only copy.
//
// A lazily restored VM (Config.RestoreLazy, lazy.go, docs/lazy-restore.md)
// runs over a FUSE mount served by a process of its own (lazychild.go),
// which outlives the manager as QEMU does: Close and Detach leave both
// running (the server waits for the next manager's chunk socket when it
// needs a chunk), and Open re-attaches both. The instance records the
// committed snapshot it came from (Instance.LazyFrom): when Open finds the
// lazy server gone, it kills the VM if it still runs, detaches the stale
// mount and puts the instance back to Standby on that snapshot (its work
// since the restore is lost), unless its standby had finished, which is
// kept. A lazy server ends with its VM (stopped after it, or by itself
// when the VM's process is gone).
//
// Chunk digests (storage/digests, digests.go) need no crash handling. A
// record is MACed with the host key and checked against the file's size,
// and it describes chunk contents by keyed digest, not a file by name or
// time: a record left stale by a crash (the guest wrote on after it, a
// NoSync download lost pages, a rename was lost) matches only the chunks
// whose bytes are still the ones recorded, and a torn or lost record is
// rejected or absent. Either way the upload is correct; it is only slower
// for the chunks that no longer match. The key stays across restarts
// (same data directory), so a restarted daemon still uses the records. A
// lazily restored VM's standby writes a new memory file; its record is
// built from the chunks the manager filled into the lazy server's backing
// file (lazydigests.go), held in memory only: a VM re-attached after a
// restart parks without a record and its upload hashes every chunk.
package manager
