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

// Fork creates a new instance running a copy of a snapshot. source is an
// instance id (its current snapshot; the instance must be on standby) or a
// snapshot id (a standby snapshot, or a named one: see Snapshot; a
// stopped snapshot's fork is a fresh boot of its size and image). If this host holds the snapshot's raw files the fork reads
// them — without cancelling a running upload — and gets its own sparse
// copy of the memory file (see copySparse); otherwise the snapshot is
// downloaded from central storage (each chunk once per host: downloads of
// one snapshot are serialised and later ones hit the host cache). The
// source is unchanged. spec.Name is required; spec.ID defaults to a fresh
// id.
func (m *Manager) Fork(ctx context.Context, source string, spec ForkSpec) (Instance, error) {
	if spec.ID == "" {
		spec.ID = newID("i")
	}
	if err := spec.validate(); err != nil {
		return Instance{}, fmt.Errorf("fork %s: %w", source, err)
	}
	if err := ValidateID(source); err != nil {
		return Instance{}, fmt.Errorf("fork: source %q: %w: %w", source, ErrNotFound, err)
	}
	if in, handled, err := m.forkNamed(ctx, source, spec, "fork"); handled {
		if err != nil {
			return in, fmt.Errorf("fork %s: %w", source, err)
		}
		return in, nil
	}
	src, sid, err := m.forkSource(source)
	if err != nil {
		return Instance{}, fmt.Errorf("fork %s: %w", source, err)
	}
	var in Instance
	if src != nil {
		defer func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			src.readers--
			// The upload may have committed while we read: drop the files
			// now, as it would have.
			if s := src.meta.Snapshot; src.readers == 0 && src.op == "" && s != nil && s.Local &&
				s.Storage == StorageCentral && !m.cfg.KeepLocalAfterCommit {
				m.dropLocalLocked(src)
			}
		}()
		m.mu.Lock()
		base := src.meta.clone()
		m.mu.Unlock()
		in, err = m.forkLocal(ctx, base, sid, spec)
	} else {
		man, rec, merr := m.committedManifest(ctx, sid)
		if merr != nil {
			return Instance{}, fmt.Errorf("fork %s: %w", source, merr)
		}
		if man.Kind == KindStopped {
			in, err = m.bootFromRecord(ctx, rec, spec, sid, "fork")
		} else {
			in, err = m.createFromCentral(ctx, man, rec, spec, "fork")
		}
	}
	if err != nil {
		return in, fmt.Errorf("fork %s: %w", source, err)
	}
	return in, nil
}

// forkSource finds what a fork of source reads. With local raw files it
// returns the instance that owns them, registered as a reader (the caller
// unregisters it); otherwise the snapshot id to fetch centrally.
func (m *Manager) forkSource(source string) (*entry, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, "", ErrClosed
	}
	e := m.insts[source]
	if e != nil && e.meta.State != StateDeleted {
		if e.meta.State != StateStandby || e.meta.Snapshot == nil {
			return nil, "", invalidState("fork", &e.meta, StateStandby)
		}
	} else {
		e = nil
		for _, c := range m.insts {
			if s := c.meta.Snapshot; s != nil && s.ID == source && c.meta.State != StateDeleted {
				e = c
				break
			}
		}
		if e == nil {
			return nil, source, nil // not here: central
		}
	}
	s := e.meta.Snapshot
	if !s.Local || e.meta.State != StateStandby {
		if s.Storage != StorageCentral {
			return nil, "", fmt.Errorf("%w: snapshot %s is not on this host and not committed (storage %s)", ErrInvalidState, s.ID, s.Storage)
		}
		return nil, s.ID, nil
	}
	if e.op != "" {
		// A restore or delete is about to take the files away.
		return nil, "", fmt.Errorf("%w: instance %s (%s in progress)", ErrBusy, e.meta.ID, e.op)
	}
	e.readers++
	return e, s.ID, nil
}

// forkLocal creates the fork from the local files of snapshot sid, taken
// of an instance of base's size and image.
func (m *Manager) forkLocal(ctx context.Context, base Instance, sid string, spec ForkSpec) (Instance, error) {
	e, done, err := m.reserve(Instance{
		ID: spec.ID, Name: spec.Name, MemoryMiB: base.MemoryMiB, VCPUs: base.VCPUs, Image: base.Image,
		SnapshotPolicy: base.SnapshotPolicy,
	}, "fork")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	start := time.Now()
	snapDir := m.dirs.snapshotDir(sid)
	run := m.dirs.newRunDir()
	fail := func(err error) (Instance, error) {
		removeAll(run)
		m.unreserve(e)
		return Instance{}, err
	}
	if err := m.update(e, func(in *Instance) { in.RunDir = run }); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(run, 0o700); err != nil {
		return fail(err)
	}
	// The fork's own snapshot copy, in its runtime directory: the memory
	// file (sparse or cloned) becomes its RAM; the small files are copied
	// as they are.
	method, err := copySparse(filepath.Join(snapDir, vmhost.MemoryFile), filepath.Join(run, vmhost.MemoryFile))
	if err != nil {
		return fail(fmt.Errorf("copy memory file: %w", err))
	}
	m.copyDigests(filepath.Join(snapDir, vmhost.MemoryFile), filepath.Join(run, vmhost.MemoryFile))
	for _, name := range []string{vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if _, err := copySparse(filepath.Join(snapDir, name), filepath.Join(run, name)); err != nil {
			return fail(fmt.Errorf("copy %s: %w", name, err))
		}
	}
	m.met.prepared(sourceLocal, time.Since(start), snapshot.DownloadStats{})
	m.log.Info("fork memory copied", "instance", spec.ID, "snapshot", sid, "method", method, "duration", time.Since(start))
	vm, err := m.resume(ctx, e, run)
	if err != nil {
		return fail(err) // the source is untouched whatever happened
	}
	if err := m.update(e, func(in *Instance) { m.running(in, vm, run); in.RestoredFrom = sid }); err != nil {
		vm.Kill()
		return m.current(e), err
	}
	m.setVM(e, vm)
	return m.current(e), nil
}
