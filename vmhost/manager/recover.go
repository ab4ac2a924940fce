package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost"
)

// attachTimeout bounds taking over one running guest at Open.
const attachTimeout = 30 * time.Second

// recover rebuilds the manager's state from the data directory after a
// clean close or a crash. See the package documentation.
func (m *Manager) recover(ctx context.Context) error {
	ins, bad, err := m.dirs.loadInstances()
	if err != nil {
		return err
	}
	for _, err := range bad {
		m.log.Error("skipping unreadable instance", "err", err)
	}
	jobs, bad, err := m.dirs.loadJobs()
	if err != nil {
		return err
	}
	for _, err := range bad {
		m.log.Error("skipping unreadable job", "err", err)
	}
	m.mu.Lock()
	m.recovering = true
	m.mu.Unlock()
	byID := map[string]*Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	for _, in := range ins {
		if in.State == StateDeleted {
			if err := m.purge(in); err != nil {
				m.log.Warn("finish delete", "instance", in.ID, "err", err)
			}
			continue
		}
		e := &entry{id: in.ID, meta: *in}
		m.mu.Lock()
		m.insts[in.ID] = e
		m.mu.Unlock()
		m.recoverInstance(ctx, e, byID)
	}
	if err := m.recoverNamed(byID); err != nil {
		return err
	}
	// Jobs no snapshot claimed belong to deleted or restored snapshots.
	m.mu.Lock()
	claimed := map[string]bool{}
	for _, j := range m.held {
		claimed[j.ID] = true
	}
	for id := range byID {
		if !claimed[id] {
			m.dirs.removeJob(id)
		}
	}
	m.mu.Unlock()
	m.sweep(ctx)
	m.mu.Lock()
	m.recovering = false
	for _, j := range m.held {
		m.startJobLocked(j)
	}
	m.held = nil
	ninst, njobs := len(m.insts), len(m.jobs)
	m.mu.Unlock()
	m.log.Info("manager open", "data_dir", m.cfg.DataDir, "instances", ninst, "jobs", njobs)
	return nil
}

// recoverInstance brings one instance back to a consistent state.
func (m *Manager) recoverInstance(ctx context.Context, e *entry, jobs map[string]*Job) {
	in := &e.meta
	if in.LazyFrom != nil && m.recoverLazy(ctx, e) {
		return
	}
	log := m.log.With("instance", in.ID, "state", in.State)
	switch in.State {
	case StateCreating:
		m.killStray(ctx, in.RunDir)
		removeAll(in.RunDir)
		m.update(e, func(in *Instance) {
			in.State, in.Error, in.RunDir, in.AgentSocket = StateError, "host restarted while the instance was being created", "", ""
		})
		log.Warn("instance was being created when the host stopped")

	case StateRunning:
		if vm, err := m.attach(ctx, in.RunDir); err == nil {
			if in.Pending != "" {
				removeAll(m.dirs.snapshotDir(in.Pending)) // a standby that did not finish
			}
			m.update(e, func(in *Instance) { in.Pending, in.PendingName, in.AgentSocket = "", "", vm.Paths().AgentSocket })
			m.setVM(e, vm)
			log.Info("running guest re-attached", "pid", vm.PID())
			return
		} else if in.Pending != "" && snapshotComplete(m.dirs.snapshotDir(in.Pending)) {
			// The standby finished (the VMM quit) but we died before
			// recording it: the snapshot is whole, keep it.
			sid, name := in.Pending, in.PendingName
			setting := compression.Setting{Algorithm: compression.None}
			if j := jobs[sid]; j != nil {
				setting, name = j.setting(), j.Name
			} else if s, err := compression.Resolve(nil, in.SnapshotPolicy, m.cfg.CompressionDefault); err == nil {
				setting = s // the request's override, if any, is lost
			}
			info, _ := vmhost.ReadSnapshotInfo(m.dirs.snapshotDir(sid))
			if err := m.parked(e, sid, name, setting, info.Created); err != nil {
				log.Error("finish interrupted standby", "err", err)
			}
			log.Info("interrupted standby completed", "snapshot", sid)
			return
		} else {
			if in.Pending != "" {
				removeAll(m.dirs.snapshotDir(in.Pending))
			}
			removeAll(in.RunDir)
			msg := fmt.Sprintf("guest not running after the host restarted (%v)", err)
			m.update(e, func(in *Instance) {
				in.State, in.Error, in.RunDir, in.AgentSocket, in.Pending, in.PendingName = StateError, msg, "", "", "", ""
			})
			log.Warn("guest lost", "err", err)
		}

	case StateStandby:
		m.recoverStandby(ctx, e, jobs, log)

	default: // stopped, error: nothing runs
		if in.RunDir != "" {
			m.killStray(ctx, in.RunDir)
			removeAll(in.RunDir)
			m.update(e, func(in *Instance) { in.RunDir, in.AgentSocket = "", "" })
		}
	}
}

func (m *Manager) recoverStandby(ctx context.Context, e *entry, jobs map[string]*Job, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) {
	in := &e.meta
	s := in.Snapshot
	if s == nil {
		m.update(e, func(in *Instance) { in.State, in.Error = StateError, "standby without a snapshot" })
		return
	}
	snapDir := m.dirs.snapshotDir(s.ID)
	if in.RunDir != "" {
		// A restore was in progress: the snapshot directory had become
		// the runtime directory (restoreLocal).
		if vm, err := m.attach(ctx, in.RunDir); err == nil {
			m.update(e, func(in *Instance) {
				m.running(in, vm, in.RunDir)
				in.RestoredFrom = s.ID
				if in.Snapshot.Storage == StorageCentral {
					in.Snapshot.Local = false
				} else {
					in.Snapshot = nil
				}
			})
			m.setVM(e, vm)
			m.dirs.removeJob(s.ID)
			log.Info("interrupted restore had resumed the guest; re-attached", "pid", vm.PID())
			return
		}
		if s.Local && !fileExists(snapDir) {
			if fileExists(filepath.Join(in.RunDir, vmhost.SnapshotInfoFile)) {
				// The guest never ran: the snapshot is intact.
				if err := os.Rename(in.RunDir, snapDir); err != nil {
					log.Warn("put snapshot back", "err", err)
				}
			} else {
				log.Warn("a restore resumed the guest, which died with the host; its local snapshot is spent", "snapshot", s.ID)
			}
		}
		removeAll(in.RunDir)
		m.update(e, func(in *Instance) { in.RunDir, in.AgentSocket = "", "" })
	}
	if s.Local && !snapshotComplete(snapDir) {
		if s.Storage == StorageCentral {
			m.update(e, func(in *Instance) { in.Snapshot.Local = false })
		} else {
			m.update(e, func(in *Instance) {
				in.State, in.Error = StateError, "the standby snapshot's local files are missing and it was never committed"
			})
			log.Warn("standby snapshot lost", "snapshot", s.ID)
			return
		}
	}
	s = e.meta.Snapshot
	switch {
	case s.Local && s.Storage != StorageCentral:
		j := jobs[s.ID]
		if j == nil || j.InstanceID != in.ID {
			now := time.Now().UTC()
			setting := parseSetting(s.Compression)
			j = &Job{ID: s.ID, Kind: JobKindUpload, InstanceID: in.ID, Algorithm: string(setting.Algorithm), Level: setting.Level, Created: now}
		}
		j.State = JobQueued
		j.Updated = time.Now().UTC()
		if err := m.dirs.saveJob(j); err != nil {
			log.Warn("save job", "err", err)
		}
		log.Info("upload job resumed", "job", j.ID, "attempts", j.Attempts)
		m.mu.Lock()
		m.startJobLocked(j) // held until the walk ends; j belongs to the job then
		m.mu.Unlock()
	case s.Local && s.Storage == StorageCentral && !m.cfg.KeepLocalAfterCommit:
		m.mu.Lock()
		m.dropLocalLocked(e)
		m.mu.Unlock()
	}
}

// attach takes over the VM running in dir, if any.
func (m *Manager) attach(ctx context.Context, dir string) (vmhost.VM, error) {
	if dir == "" {
		return nil, fmt.Errorf("no runtime directory: %w", vmhost.ErrNotFound)
	}
	actx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	return m.hv.Attach(actx, dir)
}

// killStray kills a VM left running in dir that no instance wants, and
// the lazy server of dir, if any.
func (m *Manager) killStray(ctx context.Context, dir string) {
	if vm, err := m.attach(ctx, dir); err == nil {
		m.log.Warn("killing stray guest", "dir", dir, "pid", vm.PID())
		vm.Kill()
	}
	if c, ok := findLazyChild(dir); ok {
		m.log.Warn("stopping a stray lazy server", "dir", dir, "pid", c.pid)
		m.stopLazyChild(c)
	}
}

// sweep removes what no instance references: interrupted downloads,
// runtime directories (after killing a VM found there) and snapshot
// directories (dropped after a commit, or from a standby that never
// completed).
func (m *Manager) sweep(ctx context.Context) {
	runs, snaps := map[string]bool{}, map[string]bool{}
	m.mu.Lock()
	for _, e := range m.insts {
		if e.meta.RunDir != "" {
			runs[filepath.Base(e.meta.RunDir)] = true
		}
		if s := e.meta.Snapshot; s != nil && s.Local {
			snaps[s.ID] = true
		}
		if e.meta.Pending != "" {
			snaps[e.meta.Pending] = true
		}
	}
	for id, n := range m.named {
		if n.meta.Local {
			snaps[id] = true
		}
	}
	m.mu.Unlock()
	clean := func(sub string, keep map[string]bool, kill bool) {
		ents, err := os.ReadDir(filepath.Join(m.cfg.DataDir, sub))
		if err != nil {
			m.log.Warn("sweep", "dir", sub, "err", err)
			return
		}
		for _, ent := range ents {
			if keep[ent.Name()] {
				continue
			}
			p := filepath.Join(m.cfg.DataDir, sub, ent.Name())
			if kill {
				m.killStray(ctx, p)
			}
			if err := removeAll(p); err != nil {
				m.log.Warn("sweep", "path", p, "err", err)
			}
		}
	}
	clean(downloadsDir, nil, false)
	clean(runDir, runs, true)
	clean(snapshotsDir, snaps, false)
}

// parseSetting reads a Setting back from its String form ("zstd:1",
// "none"); anything unreadable is none.
func parseSetting(s string) compression.Setting {
	alg, lvl, _ := strings.Cut(s, ":")
	a, err := compression.ParseAlgorithm(alg)
	if err != nil {
		return compression.Setting{Algorithm: compression.None}
	}
	l, _ := strconv.Atoi(lvl)
	return compression.Setting{Algorithm: a, Level: l}
}
