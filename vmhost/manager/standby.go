package manager

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost"
)

// StandbyOptions say which snapshot a standby writes and how it is
// compressed.
type StandbyOptions struct {
	// SnapshotID is the id of the snapshot to write; empty: the manager
	// picks one. The server passes its own: it is the idempotency key of
	// the call, so a standby asked again with the id of the snapshot the
	// instance is on standby with answers that instance, also after a
	// daemon restart (the id is in the instance's metadata).
	SnapshotID string
	// Compression is the setting the upload applies, already resolved by
	// the caller (the server resolves the precedence for API requests).
	// When set, Override and the instance's snapshot_policy are not
	// consulted: precedence is resolved in exactly one place per request.
	Compression *compression.Setting
	// Override is the request level of the manager's own resolution
	// (override > instance snapshot_policy > host default), for callers
	// without a server. Ignored when Compression is set.
	Override *compression.Policy
	// Name is the snapshot's name, if it has one (the server names every
	// standby snapshot): the upload writes it as the manifest label
	// hangar.snapshot.name, so a catalog recovered from the bucket knows
	// it. It is kept in the instance's metadata while the standby runs
	// and in the upload job's file after, so an upload resumed after a
	// restart still has it. Empty: no label.
	Name string
}

// setting returns the compression a standby of an instance with policy
// applies: opts.Compression as given (checked), or the manager's own
// resolution.
func (o StandbyOptions) setting(policy, hostDefault *compression.Policy) (compression.Setting, error) {
	if c := o.Compression; c != nil {
		if _, err := c.Codec(); err != nil {
			return compression.Setting{}, fmt.Errorf("%w: compression %s: %w", compression.ErrInvalidPolicy, c, err)
		}
		return *c, nil
	}
	return compression.Resolve(o.Override, policy, hostDefault)
}

// Standby parks a running instance: the compression is settled first
// (opts.Compression, or override > instance snapshot_policy > host
// default; an invalid one is a *compression.ValidationError or wraps
// compression.ErrInvalidPolicy, and nothing changes), then the VM is
// paused and its memory and device state written durably into a new
// local snapshot, and the VMM stops. Standby returns here, with the
// instance in StateStandby and its snapshot's storage local; an upload
// job then moves the snapshot to central storage in the background.
//
// A repeated call with the snapshot id the instance is on standby with
// answers the instance as it is (idempotent retry); an id the instance
// used before (its last standby, or the snapshot it runs from) is
// ErrAlreadyExists, since a snapshot id names one snapshot only.
//
// If the VM fails to stand by but still runs, the instance stays Running;
// if the VM died, the instance goes to StateError.
func (m *Manager) Standby(ctx context.Context, id string, opts StandbyOptions) (Instance, error) {
	if opts.SnapshotID != "" {
		if err := ValidateID(opts.SnapshotID); err != nil {
			return Instance{}, fmt.Errorf("standby instance %s: snapshot: %w", id, err)
		}
	}
	if opts.Name != "" {
		if err := validateName(opts.Name); err != nil {
			return Instance{}, fmt.Errorf("standby instance %s: %w: snapshot name: %w", id, ErrInvalidArgument, err)
		}
	}
	m.mu.Lock()
	e, err := m.lookupLocked(id)
	var policy *compression.Policy
	if err == nil {
		policy = clonePolicy(e.meta.SnapshotPolicy)
	}
	m.mu.Unlock()
	if err != nil {
		return Instance{}, fmt.Errorf("standby: %w", err)
	}
	setting, err := opts.setting(policy, m.cfg.CompressionDefault)
	if err != nil {
		return Instance{}, fmt.Errorf("standby instance %s: %w", id, err)
	}

	e, in, done, err := m.begin(id, "standby")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	sid := opts.SnapshotID
	if sid != "" && in.State == StateStandby && in.Snapshot != nil && in.Snapshot.ID == sid {
		return in, nil // a retry of the standby that wrote it
	}
	if in.State != StateRunning || e.vm == nil {
		return in, invalidState("standby", &in, StateRunning)
	}
	if sid != "" && ((in.Snapshot != nil && in.Snapshot.ID == sid) || in.RestoredFrom == sid || fileExists(m.dirs.snapshotDir(sid))) {
		return in, fmt.Errorf("standby instance %s: snapshot %s: %w (it names an earlier snapshot)", id, sid, ErrAlreadyExists)
	}
	if sid == "" {
		sid = newID("s")
	}
	dir := m.dirs.snapshotDir(sid)
	// Pending tells a restarted manager where to look if we die between
	// the VM's exit and the metadata saying Standby.
	if err := m.update(e, func(in *Instance) { in.Pending, in.PendingName = sid, opts.Name }); err != nil {
		return m.current(e), err
	}
	start := time.Now()
	liveMemory := e.vm.Paths().Memory
	info, err := e.vm.Standby(ctx, dir)
	if err != nil {
		removeAll(dir)
		if errors.Is(err, vmhost.ErrVMExited) || e.vm.State().Exited() {
			msg := "standby failed, guest lost: " + err.Error()
			m.update(e, func(in *Instance) {
				in.State, in.Error, in.Pending, in.PendingName, in.AgentSocket = StateError, msg, "", "", ""
			})
			m.mu.Lock()
			e.vm = nil
			m.mu.Unlock()
			m.closeLazy(e)
		} else {
			m.update(e, func(in *Instance) { in.Pending, in.PendingName = "", "" })
		}
		return m.current(e), fmt.Errorf("standby instance %s: %w", id, err)
	}
	// A lazy VM's standby read every page through its mount and wrote a
	// new memory file: it gets the digests of the chunks filled
	// (lazydigests.go); the VMM has quit, so the mount can go.
	m.mu.Lock()
	lazy := e.lazy
	m.mu.Unlock()
	if lazy != nil {
		m.saveLazyDigests(lazy.dir, dir)
	} else {
		m.moveDigests(liveMemory, filepath.Join(dir, vmhost.MemoryFile)) // the memory file moved there
	}
	m.closeLazy(e)
	m.log.Info("instance on standby", "instance", id, "snapshot", sid, "compression", setting.String(),
		"pause", info.PauseDuration, "durable_after", time.Since(start))
	if err := m.parked(e, sid, opts.Name, setting, info.Created); err != nil {
		return m.current(e), fmt.Errorf("standby instance %s: %w", id, err)
	}
	return m.current(e), nil
}

// parked records a completed standby of e into snapshot sid (named name,
// or unnamed) and queues its upload. The job file is written before the instance says Standby, so a
// crash in between leaves a job that Open matches to the instance (or
// drops, if the instance never got there).
func (m *Manager) parked(e *entry, sid, name string, setting compression.Setting, created time.Time) error {
	now := time.Now().UTC()
	j := &Job{
		ID: sid, Kind: JobKindUpload, InstanceID: e.id, Name: name,
		Algorithm: string(setting.Algorithm), Level: setting.Level,
		State: JobQueued, Created: now, Updated: now,
	}
	if err := m.dirs.saveJob(j); err != nil {
		return err
	}
	run := m.current(e).RunDir
	if err := m.update(e, func(in *Instance) {
		in.State, in.Pending, in.PendingName, in.RunDir, in.AgentSocket, in.RestoredFrom, in.LazyFrom = StateStandby, "", "", "", "", "", nil
		in.Snapshot = &SnapshotRef{
			ID: sid, Kind: KindStandby, Storage: StorageLocal, Local: true,
			Compression: setting.String(), Created: created.UTC(),
		}
	}); err != nil {
		return err
	}
	m.mu.Lock()
	e.vm = nil
	m.startJobLocked(j)
	m.mu.Unlock()
	if err := removeAll(run); err != nil {
		m.log.Warn("remove runtime dir", "instance", e.id, "err", err)
	}
	return nil
}
