package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
)

// Restore resumes an instance on standby. If this host holds the
// snapshot's raw files they are used, after cancelling a running upload
// job for them and waiting for it to stop (a preemption: the snapshot is
// then never committed, unless the upload finished first). Otherwise the
// snapshot must be committed centrally; it is downloaded (host cache
// first, then the store) into fresh files. On failure before the guest
// ran, the instance stays on standby with its snapshot intact.
func (m *Manager) Restore(ctx context.Context, id string) (Instance, error) {
	e, in, done, err := m.begin(id, "restore")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	if in.State != StateStandby || in.Snapshot == nil {
		return in, invalidState("restore", &in, StateStandby)
	}
	sid := in.Snapshot.ID
	var stopped *Job
	if in.Snapshot.Local {
		stopped = m.preempt(ctx, sid, "restore")
	}
	m.mu.Lock()
	s := *e.meta.Snapshot // the upload may have committed meanwhile
	m.mu.Unlock()
	switch {
	case s.Local:
		err = m.restoreLocal(ctx, e, s, stopped)
	case s.Storage == StorageCentral:
		err = m.restoreCentral(ctx, e, sid)
	default:
		err = fmt.Errorf("%w: snapshot %s is neither on this host nor committed centrally (storage %s)", ErrInvalidState, sid, s.Storage)
	}
	if err != nil {
		return m.current(e), fmt.Errorf("restore instance %s: %w", id, err)
	}
	m.log.Info("instance restored", "instance", id, "snapshot", sid, "from_local", s.Local)
	return m.current(e), nil
}

// preempt stops the upload job of snapshot sid, if any, for operation op
// and returns its last state (nil if there was none).
func (m *Manager) preempt(ctx context.Context, sid, op string) *Job {
	m.mu.Lock()
	jr := m.jobs[sid]
	var j *Job
	if jr != nil {
		c := *jr.job
		j = &c
	}
	m.mu.Unlock()
	if jr == nil || !m.stopJob(ctx, sid, errPreempted) {
		return nil
	}
	m.met.preempted(op)
	return j
}

// restoreLocal resumes e from its local snapshot files. The snapshot
// directory is renamed, in one step, to be the VM's runtime directory, and
// its memory file becomes the VM's RAM. The driver retires the snapshot's
// SnapshotInfoFile just before the guest resumes, so whoever looks at the
// directory later (a restarted manager) knows whether the memory is still
// the snapshot's.
func (m *Manager) restoreLocal(ctx context.Context, e *entry, s SnapshotRef, stopped *Job) error {
	start := time.Now()
	snapDir := m.dirs.snapshotDir(s.ID)
	run := m.dirs.newRunDir()
	// RunDir first: a manager that dies from here on finds the snapshot
	// in run and knows what to do with it (recoverStandby).
	if err := m.update(e, func(in *Instance) { in.RunDir = run }); err != nil {
		return err
	}
	giveBack := func() {
		if err := os.Rename(run, snapDir); err != nil {
			m.log.Error("put snapshot files back", "snapshot", s.ID, "err", err)
		}
		m.update(e, func(in *Instance) { in.RunDir = "" })
		if stopped != nil && s.Storage != StorageCentral {
			m.mu.Lock()
			stopped.State = JobQueued
			m.startJobLocked(stopped) // the snapshot is still parked: upload it after all
			m.mu.Unlock()
		}
	}
	if err := os.Rename(snapDir, run); err != nil {
		m.update(e, func(in *Instance) { in.RunDir = "" })
		return fmt.Errorf("move snapshot into the runtime directory: %w", err)
	}
	m.met.prepared(sourceLocal, time.Since(start), snapshot.DownloadStats{})
	vm, err := m.resume(ctx, e, run)
	if err != nil {
		if fileExists(filepath.Join(run, vmhost.SnapshotInfoFile)) {
			giveBack() // the guest never ran: the snapshot is intact
			return err
		}
		removeAll(run)
		if s.Storage == StorageCentral {
			// Local memory is spoilt, but the committed copy remains.
			m.update(e, func(in *Instance) { in.RunDir, in.Snapshot.Local = "", false })
			return err
		}
		m.failed(e, "guest resumed from the local snapshot but did not answer: "+err.Error())
		return err
	}
	err = m.update(e, func(in *Instance) {
		m.running(in, vm, run)
		in.RestoredFrom = s.ID
		if in.Snapshot.Storage == StorageCentral {
			in.Snapshot.Local = false // committed: it lives on centrally
		} else {
			in.Snapshot = nil // never committed, and its memory is live RAM now
		}
	})
	if err != nil {
		vm.Kill()
		return err
	}
	m.setVM(e, vm)
	if err := m.dirs.removeJob(s.ID); err != nil {
		m.log.Warn("remove job", "job", s.ID, "err", err)
	}
	return nil
}

// restoreCentral resumes e from its committed snapshot sid.
func (m *Manager) restoreCentral(ctx context.Context, e *entry, sid string) error {
	man, _, err := m.centralManifest(ctx, sid)
	if err != nil {
		return err
	}
	vm, run, err := m.fromCentral(ctx, e, man)
	if err != nil {
		return err // still on standby: the committed snapshot is untouched
	}
	if err := m.update(e, func(in *Instance) { m.running(in, vm, run); in.RestoredFrom = sid }); err != nil {
		vm.Kill()
		m.closeLazy(e)
		return err
	}
	m.setVM(e, vm)
	return nil
}

// running fills in the metadata of an instance whose VM now runs.
func (m *Manager) running(in *Instance, vm vmhost.VM, run string) {
	in.State, in.Error, in.RunDir, in.AgentSocket = StateRunning, "", run, vm.Paths().AgentSocket
}

// failed puts e in StateError (after a guest was lost).
func (m *Manager) failed(e *entry, msg string) {
	if err := m.update(e, func(in *Instance) { in.State, in.Error, in.RunDir, in.AgentSocket = StateError, msg, "", "" }); err != nil {
		m.log.Error("record failure", "instance", e.id, "err", err)
	}
}

// fromCentral downloads man into a fresh directory, which becomes the
// runtime directory of e's VM, and resumes the VM there. On error no VM
// runs and nothing is left on disk.
//
// With Config.RestoreLazy the memory file is served lazily instead
// (fromCentralLazy); a host that cannot mount it downloads eagerly.
func (m *Manager) fromCentral(ctx context.Context, e *entry, man *snapshot.Manifest) (vmhost.VM, string, error) {
	if m.cfg.RestoreLazy {
		vm, run, err := m.fromCentralLazy(ctx, e, man)
		if !errors.Is(err, errLazyUnavailable) {
			return vm, run, err
		}
		m.log.Warn("lazy restore unavailable; downloading the whole snapshot", "snapshot", man.ID, "err", err)
	}
	dl, err := m.fetch(ctx, man)
	if err != nil {
		return nil, "", err
	}
	run := m.dirs.newRunDir()
	if err := m.update(e, func(in *Instance) { in.RunDir = run }); err != nil {
		removeAll(dl)
		return nil, "", err
	}
	if err := os.Rename(dl, run); err != nil {
		removeAll(dl)
		m.update(e, func(in *Instance) { in.RunDir = "" })
		return nil, "", fmt.Errorf("move download into the runtime directory: %w", err)
	}
	vm, err := m.resume(ctx, e, run)
	if err != nil {
		removeAll(run)
		m.update(e, func(in *Instance) { in.RunDir = "" })
		return nil, "", err
	}
	return vm, run, nil
}

// resume restores e's VM from the snapshot files in run, which is also its
// runtime directory (the memory file there becomes its RAM), and waits for
// the guest agent. On error no VM runs.
func (m *Manager) resume(ctx context.Context, e *entry, run string) (vmhost.VM, error) {
	return m.resumeFrom(ctx, e, run, vmhost.RestoreSource{Dir: run})
}

// resumeFrom is resume from src, with run as the runtime directory.
func (m *Manager) resumeFrom(ctx context.Context, e *entry, run string, src vmhost.RestoreSource) (vmhost.VM, error) {
	m.mu.Lock()
	cfg := m.vmConfig(&e.meta, run)
	m.mu.Unlock()
	vm, err := m.hv.Restore(ctx, cfg, src)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, m.cfg.ResumeTimeout)
	defer cancel()
	c, err := guest.WaitReady(rctx, vm)
	if err != nil {
		vm.Kill()
		return nil, err
	}
	c.Close()
	return vm, nil
}

// centralManifest reads and checks a committed snapshot's manifest: the
// guest image and hypervisor must be this host's (else
// vmhost.ErrSnapshotMismatch), and it must describe a VM.
func (m *Manager) centralManifest(ctx context.Context, sid string) (*snapshot.Manifest, vmRecord, error) {
	var rec vmRecord
	if err := ValidateID(sid); err != nil {
		return nil, rec, fmt.Errorf("snapshot %q: %w: %w", sid, ErrNotFound, err)
	}
	man, err := m.repo.Manifest(ctx, sid)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, rec, fmt.Errorf("snapshot %s: %w (not committed in central storage): %w", sid, ErrNotFound, err)
	}
	if err != nil {
		return nil, rec, fmt.Errorf("snapshot %s: %w", sid, err)
	}
	var errs []error
	if man.ImageDigest != m.image.Digest {
		errs = append(errs, fmt.Errorf("it needs guest image %q, this host has %q", man.ImageDigest, m.image.Digest))
	}
	if hv, _, _ := strings.Cut(man.Hypervisor, " "); hv != m.hv.Name() {
		errs = append(errs, fmt.Errorf("it was taken by hypervisor %q, this host runs %q", man.Hypervisor, m.hv.Name()))
	}
	if err := json.Unmarshal(man.VM, &rec); err != nil || rec.MemoryMiB <= 0 || rec.VCPUs <= 0 {
		errs = append(errs, fmt.Errorf("its vm record is missing or unreadable (%v)", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, rec, fmt.Errorf("snapshot %s: %w: %w", sid, vmhost.ErrSnapshotMismatch, err)
	}
	return man, rec, nil
}

// committedManifest is centralManifest, waiting for a snapshot that is not
// committed yet: its upload may be running on another host, and a restore
// that lands here meanwhile waits for the commit (DESIGN §5). It polls
// with a growing interval, up to Config.CommitWait and while ctx lasts;
// then the not-found error stands.
func (m *Manager) committedManifest(ctx context.Context, sid string) (*snapshot.Manifest, vmRecord, error) {
	man, rec, err := m.centralManifest(ctx, sid)
	if !errors.Is(err, ErrNotFound) || ValidateID(sid) != nil || m.cfg.CommitWait <= 0 {
		return man, rec, err
	}
	m.log.Info("snapshot not committed yet; waiting for its manifest", "snapshot", sid, "max_wait", m.cfg.CommitWait)
	deadline := time.NewTimer(m.cfg.CommitWait)
	defer deadline.Stop()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, rec, fmt.Errorf("%w (gave up waiting for its commit: %w)", err, context.Cause(ctx))
		case <-deadline.C:
			t.Stop()
			return nil, rec, fmt.Errorf("%w (not committed within %v)", err, m.cfg.CommitWait)
		case <-m.bg.Done():
			t.Stop()
			return nil, rec, fmt.Errorf("%w: %w", ErrClosed, err)
		case <-t.C:
		}
		man, rec, err = m.centralManifest(ctx, sid)
		if !errors.Is(err, ErrNotFound) {
			return man, rec, err
		}
	}
}

// fetch downloads man's files into a fresh directory and returns it. A
// corrupt chunk (storage.ErrCorrupt) or any other failure leaves nothing.
// Concurrent fetches of one snapshot (forks) fetch each chunk once: the
// Repo shares chunk fetches in flight, and the host cache has them after.
func (m *Manager) fetch(ctx context.Context, man *snapshot.Manifest) (string, error) {
	start := time.Now()
	dl := m.dirs.newDownloadDir()
	if err := os.MkdirAll(dl, 0o700); err != nil {
		return "", fmt.Errorf("download snapshot %s: %w", man.ID, err)
	}
	// NoSync: the downloaded memory becomes live guest RAM, and the
	// committed snapshot in the store is its durable copy (doc.go, "Crash
	// safety"); the download is still renamed into place whole.
	// DigestKey: the files get their chunk digests, so the standby after
	// this restore re-uploads only what the guest changed.
	st, err := m.repo.Download(ctx, man, dl, snapshot.DownloadOptions{Cache: m.cache, NoSync: true, DigestKey: m.digestKey})
	if err != nil {
		removeAll(dl)
		return "", fmt.Errorf("download snapshot %s: %w", man.ID, err)
	}
	source := sourceRemote
	if st.ChunksFromStore == 0 && st.ChunksShared == 0 {
		source = sourceCache // a shared fetch may have gone to the store: not counted as cache
	}
	m.met.prepared(source, time.Since(start), st)
	m.log.Info("snapshot downloaded", "snapshot", man.ID, "source", source, "from_cache", st.ChunksFromCache, "from_store", st.ChunksFromStore, "shared", st.ChunksShared,
		"bytes_from_store", st.BytesFromStore, "duration", time.Since(start))
	return dl, nil
}

// ForkSpec names the instance a fork (or a restore of a snapshot) creates.
type ForkSpec struct {
	// ID of the new instance; empty: generated (for RestoreSnapshot: the
	// snapshot's source instance id).
	ID string `json:"id,omitempty"`
	// Name of the new instance; empty for RestoreSnapshot: the source's.
	Name string `json:"name,omitempty"`
}

// RestoreSnapshot creates an instance on this host from a committed
// snapshot that this host may never have seen, and resumes it. A snapshot
// not committed yet is waited for, up to Config.CommitWait and while ctx
// lasts (its upload may still run on another host); then ErrNotFound. The
// instance takes spec.ID (default: the snapshot's source instance id) and
// spec.Name (default: the source's name). A snapshot for another guest
// image or hypervisor is refused (vmhost.ErrSnapshotMismatch), a corrupt
// chunk fails the download (storage.ErrCorrupt) and no VM is resumed.
func (m *Manager) RestoreSnapshot(ctx context.Context, snapshotID string, spec ForkSpec) (Instance, error) {
	// A named snapshot whose files are here is read like a fork reads
	// them: it outlives the restore, so its upload goes on.
	if in, handled, err := m.forkNamed(ctx, snapshotID, spec, "restore"); handled {
		if err != nil {
			return in, fmt.Errorf("restore snapshot %s: %w", snapshotID, err)
		}
		return in, nil
	}
	man, rec, err := m.committedManifest(ctx, snapshotID)
	if err != nil {
		return Instance{}, fmt.Errorf("restore snapshot: %w", err)
	}
	if spec.ID == "" {
		spec.ID = rec.InstanceID
	}
	if spec.Name == "" {
		spec.Name = rec.Name
	}
	var in Instance
	if man.Kind == KindStopped {
		in, err = m.bootFromRecord(ctx, rec, spec, snapshotID, "restore")
	} else {
		in, err = m.createFromCentral(ctx, man, rec, spec, "restore")
	}
	if err != nil {
		return in, fmt.Errorf("restore snapshot %s: %w", snapshotID, err)
	}
	return in, nil
}

// createFromCentral creates the instance spec from a committed snapshot.
// If the guest never ran, a failure leaves no instance behind.
func (m *Manager) createFromCentral(ctx context.Context, man *snapshot.Manifest, rec vmRecord, spec ForkSpec, op string) (Instance, error) {
	if err := spec.validate(); err != nil {
		return Instance{}, err
	}
	e, done, err := m.reserve(Instance{
		ID: spec.ID, Name: spec.Name, MemoryMiB: rec.MemoryMiB, VCPUs: rec.VCPUs, Image: rec.Image,
		SnapshotPolicy: rec.SnapshotPolicy,
		Snapshot:       centralRef(man),
	}, op)
	if err != nil {
		return Instance{}, err
	}
	defer done()
	vm, run, err := m.fromCentral(ctx, e, man)
	if err != nil {
		m.unreserve(e) // no VM runs and the snapshot is untouched: nothing to show
		return Instance{}, err
	}
	if err := m.update(e, func(in *Instance) { m.running(in, vm, run); in.RestoredFrom = man.ID }); err != nil {
		vm.Kill()
		m.closeLazy(e)
		return m.current(e), err
	}
	m.setVM(e, vm)
	m.log.Info("instance created from snapshot", "instance", spec.ID, "snapshot", man.ID, "op", op)
	return m.current(e), nil
}

// unreserve removes an instance whose creation failed before its guest
// ran: there is nothing to show for it.
func (m *Manager) unreserve(e *entry) {
	m.mu.Lock()
	delete(m.insts, e.id)
	gone := e.meta.clone()
	m.mu.Unlock()
	if err := m.purge(&gone); err != nil {
		m.log.Warn("remove failed instance", "instance", e.id, "err", err)
	}
}

func centralRef(man *snapshot.Manifest) *SnapshotRef {
	t := man.Totals
	return &SnapshotRef{
		ID: man.ID, Kind: man.Kind, Storage: StorageCentral,
		Compression: compression.Setting{Algorithm: compression.Algorithm(man.Compression.Algorithm), Level: man.Compression.Level}.String(),
		Totals:      &Totals{Raw: t.Raw, NonZero: t.NonZero, Compressed: t.Compressed, NewStored: t.NewStored},
		Created:     man.Created,
	}
}

func (s ForkSpec) validate() error {
	var errs []error
	if err := ValidateID(s.ID); err != nil {
		errs = append(errs, err)
	}
	if err := validateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return nil
}
