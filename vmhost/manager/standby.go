package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost"
)

// Standby parks a running instance: the compression policy is resolved
// first (override > instance snapshot_policy > host default; an invalid
// one is a *compression.ValidationError and nothing changes), then the VM
// is paused and its memory and device state written durably into a new
// local snapshot, and the VMM stops. Standby returns here, with the
// instance in StateStandby and its snapshot's storage local; an upload
// job then moves the snapshot to central storage in the background.
//
// If the VM fails to stand by but still runs, the instance stays Running;
// if the VM died, the instance goes to StateError.
func (m *Manager) Standby(ctx context.Context, id string, override *compression.Policy) (Instance, error) {
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
	setting, err := compression.Resolve(override, policy, m.cfg.CompressionDefault)
	if err != nil {
		return Instance{}, fmt.Errorf("standby instance %s: %w", id, err)
	}

	e, in, done, err := m.begin(id, "standby")
	if err != nil {
		return Instance{}, err
	}
	defer done()
	if in.State != StateRunning || e.vm == nil {
		return in, invalidState("standby", &in, StateRunning)
	}
	sid := newID("s")
	dir := m.dirs.snapshotDir(sid)
	// Pending tells a restarted manager where to look if we die between
	// the VM's exit and the metadata saying Standby.
	if err := m.update(e, func(in *Instance) { in.Pending = sid }); err != nil {
		return m.current(e), err
	}
	start := time.Now()
	info, err := e.vm.Standby(ctx, dir)
	if err != nil {
		removeAll(dir)
		if errors.Is(err, vmhost.ErrVMExited) || e.vm.State().Exited() {
			msg := "standby failed, guest lost: " + err.Error()
			m.update(e, func(in *Instance) { in.State, in.Error, in.Pending, in.AgentSocket = StateError, msg, "", "" })
			m.mu.Lock()
			e.vm = nil
			m.mu.Unlock()
		} else {
			m.update(e, func(in *Instance) { in.Pending = "" })
		}
		return m.current(e), fmt.Errorf("standby instance %s: %w", id, err)
	}
	m.log.Info("instance on standby", "instance", id, "snapshot", sid, "compression", setting.String(),
		"pause", info.PauseDuration, "durable_after", time.Since(start))
	if err := m.parked(e, sid, setting, info.Created); err != nil {
		return m.current(e), fmt.Errorf("standby instance %s: %w", id, err)
	}
	return m.current(e), nil
}

// parked records a completed standby of e into snapshot sid and queues its
// upload. The job file is written before the instance says Standby, so a
// crash in between leaves a job that Open matches to the instance (or
// drops, if the instance never got there).
func (m *Manager) parked(e *entry, sid string, setting compression.Setting, created time.Time) error {
	now := time.Now().UTC()
	j := &Job{
		ID: sid, Kind: JobKindUpload, InstanceID: e.id,
		Algorithm: string(setting.Algorithm), Level: setting.Level,
		State: JobQueued, Created: now, Updated: now,
	}
	if err := m.dirs.saveJob(j); err != nil {
		return err
	}
	run := m.current(e).RunDir
	if err := m.update(e, func(in *Instance) {
		in.State, in.Pending, in.RunDir, in.AgentSocket = StateStandby, "", "", ""
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
