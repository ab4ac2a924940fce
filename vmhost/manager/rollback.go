package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/vmhost"
)

// Rollback resumes instance id from one of its own named snapshots, sid
// (POST /v1/snapshots/{id}/restore of a named snapshot): the guest comes
// back as it was when the snapshot was taken (kind standby: memory and
// device state, the same boot), or boots afresh (kind stopped).
//
// The rules, in the order they are checked:
//
//   - the instance must be Standby or Stopped (a Running one is
//     ErrInvalidState: stand it by or stop it first);
//   - a Standby instance's standby snapshot must be committed centrally:
//     the rollback discards the parked VM from this host, and a parked VM
//     that exists nowhere else is never dropped (ErrInvalidState; wait for
//     the upload);
//   - sid must be a named snapshot (role named; another standby snapshot
//     is ErrInvalidState, the instance's own standby snapshot is
//     Restore's, ErrInvalidArgument) of this instance (else
//     ErrInvalidArgument: fork it instead) of the instance's size, guest
//     image and hypervisor (else vmhost.ErrSnapshotMismatch).
//
// The snapshot's files are read from this host when it holds them (a
// private sparse copy, like a fork: the named snapshot outlives the
// rollback and its upload goes on), else the committed snapshot is
// downloaded (host cache first; a snapshot not committed yet is waited
// for up to Config.CommitWait). On failure before the guest ran nothing
// changes; a kind stopped rollback whose boot fails leaves the instance in
// Error, as Start does.
//
// The previous standby snapshot is no longer the instance's (Snapshot is
// nil afterwards, RestoredFrom is sid): its local files, if any were kept
// after the commit, are removed, and its committed copy stays in central
// storage, the server's catalog's to delete: the server deletes it as it
// deletes a standby snapshot the next standby replaces.
func (m *Manager) Rollback(ctx context.Context, id, sid string) (Instance, error) {
	if err := ValidateID(sid); err != nil {
		return Instance{}, fmt.Errorf("roll back instance %s: snapshot %q: %w: %w", id, sid, ErrNotFound, err)
	}
	e, in, done, err := m.begin(id, "rollback")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	switch in.State {
	case StateStopped:
	case StateStandby:
		if s := in.Snapshot; s != nil && s.ID == sid {
			return in, fmt.Errorf("roll back instance %s: %w: snapshot %s is its standby snapshot (restore the instance)", id, ErrInvalidArgument, sid)
		}
		if s := in.Snapshot; s != nil && s.Storage != StorageCentral {
			return in, fmt.Errorf("roll back instance %s: %w: its standby snapshot %s is %s, not committed centrally yet; rolling back now would drop a parked VM that exists only on this host (wait for the upload)",
				id, ErrInvalidState, s.ID, s.Storage)
		}
	default:
		return in, invalidState("roll back", &in, StateStandby, StateStopped)
	}

	src, err := m.rollbackSource(ctx, sid)
	if err != nil {
		return m.current(e), fmt.Errorf("roll back instance %s: %w", id, err)
	}
	defer src.release()
	if err := src.check(&in, m.image.Digest); err != nil {
		return m.current(e), fmt.Errorf("roll back instance %s: %w", id, err)
	}

	old := in.Snapshot
	if src.kind == KindStopped {
		if err := m.boot(ctx, e); err != nil {
			return m.current(e), fmt.Errorf("roll back instance %s: %w", id, err)
		}
		err = m.update(e, func(in *Instance) { in.RestoredFrom, in.Snapshot = sid, nil })
	} else {
		var vm vmhost.VM
		var run string
		if src.man != nil {
			vm, run, err = m.fromCentral(ctx, e, src.man)
		} else {
			vm, run, err = m.fromNamedFiles(ctx, e, sid)
		}
		if err != nil {
			return m.current(e), fmt.Errorf("roll back instance %s: %w", id, err)
		}
		err = m.update(e, func(in *Instance) {
			m.running(in, vm, run)
			in.RestoredFrom, in.Snapshot = sid, nil
		})
		if err != nil {
			vm.Kill()
			m.closeLazy(e)
			removeAll(run)
			m.update(e, func(in *Instance) { in.RunDir, in.AgentSocket = "", "" })
			return m.current(e), fmt.Errorf("roll back instance %s: %w", id, err)
		}
		m.setVM(e, vm)
	}
	if err != nil {
		m.log.Warn("record the snapshot a rollback came from", "instance", id, "snapshot", sid, "err", err)
	}
	if old != nil && old.Local {
		// Committed (checked above): the central copy is the snapshot now.
		if err := removeAll(m.dirs.snapshotDir(old.ID)); err != nil {
			m.log.Warn("drop replaced standby files", "snapshot", old.ID, "err", err)
		}
	}
	m.log.Info("instance rolled back", "instance", id, "snapshot", sid, "kind", src.kind, "from_local", src.man == nil, "previous", refID(old))
	return m.current(e), nil
}

// rollbackSrc is what a rollback reads: a named snapshot's local files
// (man nil) or a committed manifest.
type rollbackSrc struct {
	kind    string
	rec     vmRecord
	digest  string             // guest image the snapshot needs; empty: unknown
	man     *snapshot.Manifest // nil: local files in <data>/s/<sid>
	release func()
}

// rollbackSource finds snapshot sid: the named snapshot's local files when
// this host holds them (registered as a reader until release), else its
// committed manifest (centralManifest checked the image and hypervisor).
func (m *Manager) rollbackSource(ctx context.Context, sid string) (rollbackSrc, error) {
	meta, local, ok, release := m.namedForkSource(sid)
	if ok && local {
		return rollbackSrc{kind: meta.Kind, rec: meta.record(), digest: meta.ImageDigest, release: release}, nil
	}
	if ok {
		release()
	}
	man, rec, err := m.committedManifest(ctx, sid)
	if err != nil {
		return rollbackSrc{}, err
	}
	if role := man.Labels[LabelRole]; role != RoleNamed {
		// Another standby snapshot of the instance: a stale record here
		// (the instance moved on) must not pass for a rollback.
		return rollbackSrc{}, fmt.Errorf("%w: snapshot %s is a %s snapshot, not a named one: only named snapshots roll an instance back", ErrInvalidState, sid, role)
	}
	return rollbackSrc{kind: man.Kind, rec: rec, digest: man.ImageDigest, man: man, release: func() {}}, nil
}

// check refuses a snapshot of another instance, size or guest image.
func (s rollbackSrc) check(in *Instance, imageDigest string) error {
	if s.rec.InstanceID != in.ID {
		return fmt.Errorf("%w: snapshot of instance %q, not of %s (fork it instead)", ErrInvalidArgument, s.rec.InstanceID, in.ID)
	}
	if s.digest != "" && s.digest != imageDigest {
		return fmt.Errorf("%w: it needs guest image %q, this host has %q", vmhost.ErrSnapshotMismatch, s.digest, imageDigest)
	}
	if s.rec.MemoryMiB != in.MemoryMiB || s.rec.VCPUs != in.VCPUs {
		return fmt.Errorf("%w: it was taken of %d MiB and %d vCPUs, the instance has %d MiB and %d vCPUs",
			vmhost.ErrSnapshotMismatch, s.rec.MemoryMiB, s.rec.VCPUs, in.MemoryMiB, in.VCPUs)
	}
	return nil
}

// fromNamedFiles resumes e's VM from a private copy of named snapshot
// sid's local files, in a fresh runtime directory (as forkLocal does: the
// snapshot stays whole for its upload and later forks). On error no VM
// runs and nothing is left on disk.
func (m *Manager) fromNamedFiles(ctx context.Context, e *entry, sid string) (vmhost.VM, string, error) {
	start := time.Now()
	snapDir := m.dirs.snapshotDir(sid)
	run := m.dirs.newRunDir()
	if err := m.update(e, func(in *Instance) { in.RunDir = run }); err != nil {
		return nil, "", err
	}
	fail := func(err error) (vmhost.VM, string, error) {
		removeAll(run)
		m.update(e, func(in *Instance) { in.RunDir = "" })
		return nil, "", err
	}
	if err := os.MkdirAll(run, 0o700); err != nil {
		return fail(err)
	}
	for _, name := range []string{vmhost.MemoryFile, vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if _, err := copySparse(filepath.Join(snapDir, name), filepath.Join(run, name)); err != nil {
			return fail(fmt.Errorf("copy %s: %w", name, err))
		}
	}
	m.copyDigests(filepath.Join(snapDir, vmhost.MemoryFile), filepath.Join(run, vmhost.MemoryFile))
	m.met.prepared(sourceLocal, time.Since(start), snapshot.DownloadStats{})
	vm, err := m.resume(ctx, e, run)
	if err != nil {
		return fail(err)
	}
	return vm, run, nil
}

func refID(s *SnapshotRef) string {
	if s == nil {
		return ""
	}
	return s.ID
}
