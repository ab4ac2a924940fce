package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost"
)

// Lazy restore (Config.RestoreLazy, docs/lazy-restore.md): a restore,
// fork or rollback from central storage downloads the small files (device
// state, snapshot info) as usual, serves the memory file from a lazyfs
// mount in the runtime directory (<run>/lazy/memory: chunks fetched on
// first read, host cache first, then the store; a background prefetch
// fills the rest) and resumes the VM with private memory (share=off) over
// it. The FUSE server runs in a process of its own (lazychild.go) from
// the restore until the VM is gone, fetching chunks through this
// manager's chunk socket:
//
//   - standby goes through the driver's private standby, which reads every
//     page (fetching what is still missing) into a new memory file in the
//     snapshot directory; it gets chunk digests from the chunks the
//     daemon filled (lazydigests.go); then the server is stopped (unmount,
//     backing file dropped) and the upload job runs as after any standby;
//   - stop, delete and a crash of the guest end the VM first, then stop
//     the server; Close and Detach leave both running;
//   - a manager that opens (recoverLazy) re-attaches a running VM whose
//     server lives; if the server is gone, the guest would fault on the
//     first page it had not read, so it is killed if it still runs and the
//     instance goes back to standby on the committed snapshot it was
//     restored from (its work since that restore is lost);
//   - when the server cannot mount (no /dev/fuse, not root) or the repo
//     cannot fetch single chunks, the restore downloads eagerly instead,
//     logged.
//
// Each restore or fork has its own mount and backing file; forks of one
// snapshot share chunk fetches in flight and the host cache (the Repo's),
// not the backing files.

// lazyMountDir is the lazy mount's directory inside a runtime directory.
const lazyMountDir = "lazy"

// Prefetch settings of the manager's lazy restores: the best arm of the
// spike's runs (docs/lazy-restore/run-d.txt, lazy+d1000+c2): the first
// second is left to the guest's demand fetches, then two workers fill the
// rest; and a demand fetch starts the next chunk beside it (a1 in
// docs/lazy-restore/run-mgr.txt: 16 demand fetches before the agent
// answers instead of 25, the median restore 0.29 s instead of 0.31 s;
// fetching three ahead was slower).
const (
	lazyPrefetchWorkers = 2
	lazyDemandAhead     = 1
	// lazyReadSize is the FUSE readahead and request size: the guest's
	// faults then arrive as 1 MiB reads instead of 128 KiB ones, and
	// fewer of them wait (docs/lazy-restore/spike.md, runs C-E).
	lazyReadSize = 1 << 20
	// lazyPatience is how long a lazy server process waits for the
	// daemon's chunk socket (a daemon restarting) before a chunk read
	// fails.
	lazyPatience = 10 * time.Minute
)

// Variables for tests: a test holds the prefetch back to have chunks
// still missing when the daemon goes away.
var (
	lazyPrefetchDelay = time.Second
	lazyNoPrefetch    = false
)

// chunkFetcher is implemented by repos that fetch one chunk at a time
// (snapshot.Repo): what a lazy restore needs.
type chunkFetcher interface {
	FetchChunk(ctx context.Context, id chunk.ID, cache snapshot.ChunkCache, offer bool) (snapshot.FetchedChunk, error)
}

// errLazyUnavailable: this host cannot serve a lazy memory file; the
// caller restores eagerly.
var errLazyUnavailable = errors.New("lazy restore unavailable")

// lazyStart starts the lazy server process of a restore; a variable so
// that a unit test can make mounting fail as it fails on a host without
// FUSE.
var lazyStart = startLazyChild

// fetcher adapts the manager's repo and cache to lazyfs.Fetcher.
type fetcher struct {
	f     chunkFetcher
	cache snapshot.ChunkCache
}

func (f fetcher) FetchChunk(ctx context.Context, id chunk.ID) (snapshot.FetchedChunk, error) {
	return f.f.FetchChunk(ctx, id, f.cache, true)
}

// fromCentralLazy is fromCentral with the memory file served lazily. It
// returns an error wrapping errLazyUnavailable, with nothing left on disk
// and the instance as it was, when the mount cannot be made.
func (m *Manager) fromCentralLazy(ctx context.Context, e *entry, man *snapshot.Manifest) (_ vmhost.VM, _ string, err error) {
	if m.chunks == nil {
		return nil, "", fmt.Errorf("%w: the repo does not fetch single chunks (or the chunk socket could not listen)", errLazyUnavailable)
	}
	var mem *snapshot.File
	for i := range man.Files {
		if man.Files[i].Name == vmhost.MemoryFile {
			mem = &man.Files[i]
		}
	}
	if mem == nil {
		return nil, "", fmt.Errorf("snapshot %s: %w: no %s file", man.ID, vmhost.ErrSnapshotMismatch, vmhost.MemoryFile)
	}
	start := time.Now()
	run := m.dirs.newRunDir()
	// Recorded before anything is mounted: a manager that dies from here
	// on knows the runtime directory holds a lazy mount (recoverLazy).
	ref := centralRef(man)
	if err := m.update(e, func(in *Instance) { in.RunDir, in.LazyFrom = run, ref }); err != nil {
		return nil, "", err
	}
	var child *lazyChild
	defer func() {
		if err == nil {
			return
		}
		if child != nil {
			m.stopLazyChild(child)
		}
		m.takeLazyDigests(run)
		removeAll(run)
		m.update(e, func(in *Instance) { in.RunDir, in.LazyFrom = "", nil })
	}()
	// Before the server starts: it fills from its first read on.
	m.startLazyDigests(run, mem.Size, mem.ChunkSize)
	mnt := filepath.Join(run, lazyMountDir)
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return nil, "", fmt.Errorf("lazy restore: %w", err)
	}
	cfg := lazyfs.ChildConfig{
		Dir: run, Mount: mnt, File: *mem, Socket: m.chunkSocket(), Patience: lazyPatience,
		FileName: vmhost.MemoryFile, NoPrefetch: lazyNoPrefetch, PrefetchDelay: lazyPrefetchDelay, PrefetchWorkers: lazyPrefetchWorkers,
		DemandAhead: lazyDemandAhead, MaxReadAhead: lazyReadSize, MaxWrite: lazyReadSize,
	}
	// The lazy server starts (a process, a mount: tens of milliseconds)
	// while the small files download beside it.
	type started struct {
		c   *lazyChild
		err error
	}
	startc := make(chan started, 1)
	go func() {
		c, err := lazyStart(ctx, cfg)
		startc <- started{c, err}
	}()
	st, derr := m.repo.Download(ctx, man, run, snapshot.DownloadOptions{Cache: m.cache, NoSync: true, Exclude: []string{vmhost.MemoryFile}})
	sc := <-startc
	child = sc.c // stopped by the deferred cleanup on any error below
	if derr != nil {
		return nil, "", fmt.Errorf("download snapshot %s: %w", man.ID, derr)
	}
	if sc.err != nil {
		return nil, "", fmt.Errorf("%w: %w", errLazyUnavailable, sc.err)
	}
	m.met.prepared(sourceLazy, time.Since(start), st)
	m.log.Info("snapshot mounted lazily", "snapshot", man.ID, "small_files_from_store", st.ChunksFromStore,
		"server_pid", child.pid, "duration", time.Since(start))
	vm, err := m.resumeFrom(ctx, e, run, vmhost.RestoreSource{Dir: run, MemoryPath: filepath.Join(mnt, vmhost.MemoryFile), PrivateMemory: true})
	if err != nil {
		return nil, "", err
	}
	child.watchVM(vm.PID(), m.log)
	m.mu.Lock()
	e.lazy = child
	m.mu.Unlock()
	return vm, run, nil
}

// closeLazy closes e's lazy mount, if any, once its VM is gone (the
// caller has stopped, killed or parked it), and forgets it in the
// metadata. The caller holds e's slot, or e's VM has crashed.
func (m *Manager) closeLazy(e *entry) {
	m.mu.Lock()
	srv := e.lazy
	e.lazy = nil
	m.mu.Unlock()
	if srv == nil {
		return
	}
	m.stopLazyChild(srv)
	m.takeLazyDigests(srv.dir) // if the caller did not save them (saveLazyDigests)
	m.log.Info("lazy mount closed", "instance", e.id, "server_pid", srv.pid)
	if err := m.update(e, func(in *Instance) { in.LazyFrom = nil }); err != nil {
		m.log.Warn("record lazy mount closed", "instance", e.id, "err", err)
	}
}

// recoverLazy handles, at Open, an instance whose VM ran (or was being
// restored) over a lazy mount of a previous manager. A running VM whose
// lazy server process still runs is re-attached with it, as an eager VM
// is (it goes on where it was; the server fetches what is missing from
// this manager's chunk socket). A standby that had finished is kept.
// Otherwise (the server gone: the guest would fault on the first page it
// had not read) the VM, if it still runs, is killed and the instance goes
// back to standby on the committed snapshot it was restored from. It
// reports false when the instance was left for the ordinary recovery
// (states other than Running and Standby: only the mount and its server
// are removed).
func (m *Manager) recoverLazy(ctx context.Context, e *entry) bool {
	in := &e.meta
	log := m.log.With("instance", in.ID, "state", in.State)
	if in.State != StateRunning && in.State != StateStandby {
		m.killStray(ctx, in.RunDir)
		lazyfs.DetachStale(filepath.Join(in.RunDir, lazyMountDir))
		m.update(e, func(in *Instance) { in.LazyFrom = nil })
		return false
	}
	if in.State == StateRunning && in.Pending != "" && snapshotComplete(m.dirs.snapshotDir(in.Pending)) {
		// The private standby finished (the VMM quit) before we died: the
		// ordinary recovery records it; the mount and its server go.
		if c, ok := findLazyChild(in.RunDir); ok {
			m.stopLazyChild(c)
		}
		lazyfs.DetachStale(filepath.Join(in.RunDir, lazyMountDir))
		m.update(e, func(in *Instance) { in.LazyFrom = nil })
		return false
	}
	if c, ok := findLazyChild(in.RunDir); ok && in.State == StateRunning {
		vm, err := m.attach(ctx, in.RunDir)
		if err == nil {
			if in.Pending != "" {
				removeAll(m.dirs.snapshotDir(in.Pending)) // a standby that did not finish
			}
			m.update(e, func(in *Instance) { in.Pending, in.PendingName, in.AgentSocket = "", "", vm.Paths().AgentSocket })
			c.watchVM(vm.PID(), m.log)
			m.mu.Lock()
			e.lazy = c
			m.mu.Unlock()
			m.setVM(e, vm)
			log.Info("lazily restored guest re-attached with its lazy server", "pid", vm.PID(), "server_pid", c.pid)
			return true
		}
		log.Warn("lazy server alive but its guest is not", "err", err)
	}
	m.killStray(ctx, in.RunDir)
	if err := lazyfs.DetachStale(filepath.Join(in.RunDir, lazyMountDir)); err != nil {
		log.Warn("detach stale lazy mount", "err", err)
	}
	if in.Pending != "" {
		removeAll(m.dirs.snapshotDir(in.Pending))
	}
	removeAll(in.RunDir)
	from := in.LazyFrom
	if in.State == StateStandby {
		// An interrupted lazy restore: the committed snapshot is untouched.
		m.update(e, func(in *Instance) { in.RunDir, in.AgentSocket, in.LazyFrom = "", "", nil })
		log.Warn("a lazy restore was interrupted by the restart; the instance stays on standby", "snapshot", refID(in.Snapshot))
		return true
	}
	err := m.update(e, func(in *Instance) {
		in.State, in.Error, in.RunDir, in.AgentSocket, in.Pending, in.PendingName, in.RestoredFrom = StateStandby, "", "", "", "", "", ""
		in.Snapshot, in.LazyFrom = from, nil
	})
	if err != nil {
		log.Error("put lazily restored instance back on standby", "err", err)
		return true
	}
	log.Warn("lazily restored guest lost its lazy server: killed, back on standby on its committed snapshot (its work since the restore is lost)",
		"snapshot", from.ID)
	return true
}
