package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/vmhost"
)

// Named snapshots (DESIGN §7, POST /v1/instances/{id}/snapshots) are taken
// while the instance goes on, and outlive it: they belong to no
// instance's lifecycle. Each has a record of its own,
// <data>/n/<snapshot id>.json, that carries the source's vm record (so an
// upload or a fork still works once the source is deleted), its files in
// <data>/s/<snapshot id>/ like a standby's, and an upload job with role
// named.
//
//   - kind standby: vmhost.VM.Snapshot (pause, device state, private copy
//     of RAM, resume); a fork or restore resumes the guest as it was.
//   - kind stopped: one file, ConfigFile, the vm record; a fork or restore
//     boots the same size and image afresh (docs/format.md).

// ConfigFile is a stopped snapshot's only file: the instance's vm record
// as JSON.
const ConfigFile = "config.json"

// namedDir holds the named snapshots' records.
const namedDir = "n"

func (l layout) namedFile(id string) string { return filepath.Join(l.root, namedDir, id+".json") }

// SnapshotSpec describes a named snapshot.
type SnapshotSpec struct {
	// SnapshotID is the snapshot's id, chosen by the caller: the
	// idempotency key (a retry with the same id, name and kind answers the
	// snapshot taken), persisted with the snapshot. Empty: the manager
	// picks one.
	SnapshotID string
	// Name is the snapshot's name (recorded in its manifest's labels).
	Name string
	// Kind is KindStandby (memory and device state; the instance must be
	// running) or KindStopped (config only; running, standby or stopped).
	Kind string
	// Compression and Override mean what they mean in StandbyOptions;
	// both must be nil for KindStopped (nothing is compressed).
	Compression *compression.Setting
	Override    *compression.Policy
}

// NamedSnapshot is a named snapshot as this host knows it. Values
// returned by the Manager are copies.
type NamedSnapshot struct {
	SnapshotRef
	Name string `json:"name"`
	// InstanceID is the source instance (it may since have been deleted);
	// the other fields are its vm record at snapshot time.
	InstanceID     string              `json:"instance_id"`
	InstanceName   string              `json:"instance_name"`
	Image          string              `json:"image,omitempty"`
	ImageDigest    string              `json:"image_digest"`
	MemoryMiB      int                 `json:"memory_mib"`
	VCPUs          int                 `json:"vcpus"`
	SnapshotPolicy *compression.Policy `json:"snapshot_policy,omitempty"`
}

func (n *NamedSnapshot) clone() NamedSnapshot {
	c := *n
	if n.Totals != nil {
		t := *n.Totals
		c.Totals = &t
	}
	c.SnapshotPolicy = clonePolicy(n.SnapshotPolicy)
	return c
}

func (n *NamedSnapshot) record() vmRecord {
	return vmRecord{InstanceID: n.InstanceID, Name: n.InstanceName, Image: n.Image, MemoryMiB: n.MemoryMiB, VCPUs: n.VCPUs, SnapshotPolicy: clonePolicy(n.SnapshotPolicy)}
}

// named is a named snapshot's in-memory state, guarded by Manager.mu.
type named struct {
	meta NamedSnapshot
	// readers are forks and restores copying its local files; deleting is
	// set while DeleteSnapshot takes them away.
	readers  int
	deleting bool
}

func (l layout) saveNamed(n *NamedSnapshot) error {
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return fmt.Errorf("encode snapshot %s: %w", n.ID, err)
	}
	if err := os.MkdirAll(filepath.Join(l.root, namedDir), 0o700); err != nil {
		return fmt.Errorf("save snapshot %s: %w", n.ID, err)
	}
	if err := vmhost.WriteFileAtomic(l.namedFile(n.ID), append(b, '\n')); err != nil {
		return fmt.Errorf("save snapshot %s: %w", n.ID, err)
	}
	return nil
}

func (l layout) removeNamed(id string) error {
	if err := os.Remove(l.namedFile(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	return vmhost.SyncDir(filepath.Join(l.root, namedDir))
}

// Snapshot takes named snapshot spec of instance id and returns once it
// is durable on local disk; an upload job (role named) then moves it to
// central storage, with the storage states of a standby snapshot (local →
// uploading → central, or error and retries), and its local files are
// dropped after the commit unless Config.KeepLocalAfterCommit.
//
// A KindStandby snapshot needs a running instance, which keeps running:
// the guest is paused only while its device state and a private copy of
// its RAM are taken (vmhost.VM.Snapshot), and what it writes afterwards is
// not in the snapshot. A KindStopped snapshot records the instance's
// config only, from a running, standby or stopped instance.
//
// The compression is settled first, as for Standby. A call with the id of
// a snapshot already taken answers it if it is the same request (source,
// name, kind), and is ErrAlreadyExists otherwise; an id used by any other
// snapshot of this host is ErrAlreadyExists too.
func (m *Manager) Snapshot(ctx context.Context, id string, spec SnapshotSpec) (NamedSnapshot, error) {
	sid := spec.SnapshotID
	if err := spec.validate(); err != nil {
		return NamedSnapshot{}, fmt.Errorf("snapshot instance %s: %w", id, err)
	}
	if sid == "" {
		sid = newID("n")
	}
	m.mu.Lock()
	e, err := m.lookupLocked(id)
	var policy *compression.Policy
	if err == nil {
		policy = clonePolicy(e.meta.SnapshotPolicy)
	}
	n, retry, cerr := m.namedRetryLocked(id, sid, spec)
	m.mu.Unlock()
	if cerr != nil || retry {
		return n, cerr
	}
	if err != nil {
		return NamedSnapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	var setting compression.Setting
	if spec.Kind == KindStandby {
		opts := StandbyOptions{Compression: spec.Compression, Override: spec.Override}
		if setting, err = opts.setting(policy, m.cfg.CompressionDefault); err != nil {
			return NamedSnapshot{}, fmt.Errorf("snapshot instance %s: %w", id, err)
		}
	}

	e, in, done, err := m.begin(id, "snapshot")
	if err != nil {
		return NamedSnapshot{}, err
	}
	defer done()
	m.mu.Lock()
	n, retry, cerr = m.namedRetryLocked(id, sid, spec) // a concurrent retry may have won
	m.mu.Unlock()
	if cerr != nil || retry {
		return n, cerr
	}
	if (in.Snapshot != nil && in.Snapshot.ID == sid) || in.RestoredFrom == sid || fileExists(m.dirs.snapshotDir(sid)) {
		return NamedSnapshot{}, fmt.Errorf("snapshot instance %s: snapshot %s: %w (it names another snapshot)", id, sid, ErrAlreadyExists)
	}
	dir := m.dirs.snapshotDir(sid)
	meta := NamedSnapshot{
		SnapshotRef:  SnapshotRef{ID: sid, Kind: spec.Kind, Storage: StorageLocal, Local: true, Compression: setting.String()},
		Name:         spec.Name,
		InstanceID:   in.ID,
		InstanceName: in.Name, Image: in.Image, ImageDigest: in.ImageDigest,
		MemoryMiB: in.MemoryMiB, VCPUs: in.VCPUs, SnapshotPolicy: clonePolicy(in.SnapshotPolicy),
	}
	start := time.Now()
	switch spec.Kind {
	case KindStandby:
		if in.State != StateRunning || e.vm == nil {
			return NamedSnapshot{}, invalidState("take a standby snapshot of", &in, StateRunning)
		}
		liveMemory := e.vm.Paths().Memory
		info, err := e.vm.Snapshot(ctx, dir)
		if err != nil {
			removeAll(dir)
			if errors.Is(err, vmhost.ErrVMExited) || e.vm.State().Exited() {
				m.failed(e, "snapshot failed, guest lost: "+err.Error())
				m.mu.Lock()
				e.vm = nil
				m.mu.Unlock()
				m.closeLazy(e)
			}
			return NamedSnapshot{}, fmt.Errorf("snapshot instance %s: %w", id, err)
		}
		meta.Created = info.Created.UTC()
		m.copyDigests(liveMemory, filepath.Join(dir, vmhost.MemoryFile))
		m.log.Info("named snapshot taken", "instance", id, "snapshot", sid, "name", spec.Name, "kind", spec.Kind,
			"compression", setting.String(), "pause", info.PauseDuration, "durable_after", time.Since(start))
	case KindStopped:
		if in.State != StateRunning && in.State != StateStandby && in.State != StateStopped {
			return NamedSnapshot{}, invalidState("take a stopped snapshot of", &in, StateRunning, StateStandby, StateStopped)
		}
		setting = compression.Setting{Algorithm: compression.None}
		meta.Compression = setting.String()
		meta.Created = time.Now().UTC()
		if err := writeConfigSnapshot(dir, recordOf(&in)); err != nil {
			removeAll(dir)
			return NamedSnapshot{}, fmt.Errorf("snapshot instance %s: %w", id, err)
		}
		m.log.Info("named snapshot taken", "instance", id, "snapshot", sid, "name", spec.Name, "kind", spec.Kind)
	}
	return m.recordNamed(meta, setting)
}

// validate checks a spec's fields, all problems at once.
func (s SnapshotSpec) validate() error {
	var errs []error
	if s.SnapshotID != "" {
		if err := ValidateID(s.SnapshotID); err != nil {
			errs = append(errs, fmt.Errorf("snapshot: %w", err))
		}
	}
	if err := validateName(s.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	switch s.Kind {
	case KindStandby:
	case KindStopped:
		if s.Compression != nil || s.Override.IsSet() {
			errs = append(errs, errors.New("compression: not allowed for kind stopped (it stores no memory)"))
		}
	default:
		errs = append(errs, fmt.Errorf("kind %q: want %s or %s", s.Kind, KindStandby, KindStopped))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return nil
}

// namedRetryLocked looks for named snapshot sid: retry is true (with the
// snapshot) when it is the same request again, err is ErrAlreadyExists
// when sid names another one.
func (m *Manager) namedRetryLocked(id, sid string, spec SnapshotSpec) (NamedSnapshot, bool, error) {
	n := m.named[sid]
	if n == nil {
		return NamedSnapshot{}, false, nil
	}
	if n.meta.InstanceID != id || n.meta.Name != spec.Name || n.meta.Kind != spec.Kind || n.deleting {
		return NamedSnapshot{}, false, fmt.Errorf("snapshot instance %s: snapshot %s: %w (a snapshot %q of instance %s)", id, sid, ErrAlreadyExists, n.meta.Name, n.meta.InstanceID)
	}
	return n.meta.clone(), true, nil
}

// writeConfigSnapshot writes a stopped snapshot's files into dir, durably.
func writeConfigSnapshot(dir string, rec vmRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode vm record: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write stopped snapshot: %w", err)
	}
	if err := vmhost.WriteFileAtomic(filepath.Join(dir, ConfigFile), append(b, '\n')); err != nil {
		return err
	}
	return vmhost.SyncDir(filepath.Dir(dir))
}

// recordNamed records a named snapshot whose files are durable in its
// directory and queues its upload. The record is written before the job:
// a crash in between leaves a record whose job Open recreates; a crash
// before leaves an unreferenced directory that Open sweeps.
func (m *Manager) recordNamed(meta NamedSnapshot, setting compression.Setting) (NamedSnapshot, error) {
	if err := m.dirs.saveNamed(&meta); err != nil {
		removeAll(m.dirs.snapshotDir(meta.ID))
		return NamedSnapshot{}, err
	}
	j := m.namedJob(&meta, setting)
	if err := m.dirs.saveJob(j); err != nil {
		m.log.Warn("save job; the next open retries", "job", j.ID, "err", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.named[meta.ID] = &named{meta: meta}
	m.startJobLocked(j)
	return meta.clone(), nil
}

func (m *Manager) namedJob(n *NamedSnapshot, setting compression.Setting) *Job {
	now := time.Now().UTC()
	return &Job{
		ID: n.ID, Kind: JobKindUpload, InstanceID: n.InstanceID, Role: RoleNamed, Name: n.Name,
		Algorithm: string(setting.Algorithm), Level: setting.Level,
		State: JobQueued, Created: now, Updated: now,
	}
}

// Snapshots returns the named snapshots this host knows of, oldest first:
// those of instance id, or all of them when id is empty. Local says which
// ones it holds the files of; a heartbeat reports those.
func (m *Manager) Snapshots(_ context.Context, id string) ([]NamedSnapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []NamedSnapshot{}
	for _, n := range m.named {
		if (id == "" || n.meta.InstanceID == id) && !n.deleting {
			out = append(out, n.meta.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// GetSnapshot returns named snapshot sid, or ErrNotFound.
func (m *Manager) GetSnapshot(_ context.Context, sid string) (NamedSnapshot, error) {
	if err := ValidateID(sid); err != nil {
		return NamedSnapshot{}, fmt.Errorf("snapshot %q: %w: %w", sid, ErrNotFound, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.named[sid]
	if n == nil || n.deleting {
		return NamedSnapshot{}, fmt.Errorf("snapshot %s: %w", sid, ErrNotFound)
	}
	return n.meta.clone(), nil
}

// DeleteSnapshot forgets named snapshot sid on this host: its upload job
// is cancelled (and waited for), its local files and record removed. A
// committed copy in central storage stays (the server's catalog owns it).
// A snapshot that forks are copying right now is ErrBusy; an unknown one
// is ErrNotFound.
func (m *Manager) DeleteSnapshot(ctx context.Context, sid string) error {
	if err := ValidateID(sid); err != nil {
		return fmt.Errorf("delete snapshot %q: %w: %w", sid, ErrNotFound, err)
	}
	m.mu.Lock()
	n := m.named[sid]
	switch {
	case n == nil || n.deleting:
		m.mu.Unlock()
		return fmt.Errorf("delete snapshot %s: %w", sid, ErrNotFound)
	case n.readers > 0:
		m.mu.Unlock()
		return fmt.Errorf("delete snapshot %s: %w (%d forks are reading it)", sid, ErrBusy, n.readers)
	}
	n.deleting = true
	m.mu.Unlock()
	if m.stopJob(ctx, sid, errDeleted) {
		m.met.preempted("delete")
	}
	// Job and files before the record: a crash in between leaves a record
	// whose files are gone, which Open recognises.
	err := errors.Join(m.dirs.removeJob(sid), removeAll(m.dirs.snapshotDir(sid)), m.dirs.removeNamed(sid))
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		n.deleting = false
		return fmt.Errorf("delete snapshot %s: %w", sid, err)
	}
	delete(m.named, sid)
	m.log.Info("named snapshot deleted", "snapshot", sid)
	return nil
}

// namedSource is what an upload of named snapshot j sends.
func (m *Manager) namedSource(j *Job) (snapshot.Info, []snapshot.FileSource, error) {
	m.mu.Lock()
	n := m.named[j.ID]
	var meta NamedSnapshot
	if n != nil {
		meta = n.meta.clone()
	}
	m.mu.Unlock()
	if n == nil {
		return snapshot.Info{}, nil, fmt.Errorf("upload %s: named snapshot record: %w", j.ID, fs.ErrNotExist)
	}
	rec := meta.record()
	vm, err := json.Marshal(rec)
	if err != nil {
		return snapshot.Info{}, nil, err
	}
	dir := m.dirs.snapshotDir(j.ID)
	info := snapshot.Info{
		ID: j.ID, SourceInstance: meta.InstanceID, Kind: meta.Kind, VM: vm,
		Hypervisor: m.hypervisorID(), ImageDigest: meta.ImageDigest, Compression: j.setting(),
		Created: meta.Created, Labels: j.labels(rec),
	}
	names := []string{ConfigFile}
	if meta.Kind == KindStandby {
		si, err := vmhost.ReadSnapshotInfo(dir)
		if err != nil {
			return snapshot.Info{}, nil, err
		}
		info.ImageDigest, info.Created = si.Boot.ImageDigest, si.Created
		names = []string{vmhost.MemoryFile, vmhost.DeviceStateFile, vmhost.SnapshotInfoFile}
	}
	var files []snapshot.FileSource
	for _, name := range names {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return snapshot.Info{}, nil, fmt.Errorf("upload %s: %w", j.ID, err)
		}
		files = append(files, snapshot.FileSource{Name: name, Path: p})
	}
	return info, files, nil
}

// namedJobUpdateLocked is jobUpdate for a named snapshot's job: fn
// changes the job and the snapshot's record.
func (m *Manager) namedJobUpdateLocked(jr *jobRun, persist bool, fn func(*Job, *SnapshotRef)) {
	j := jr.job
	n := m.named[j.ID]
	var ref *SnapshotRef
	if n != nil {
		ref = &n.meta.SnapshotRef
	}
	fn(j, ref)
	j.Updated = time.Now().UTC()
	if persist || time.Since(jr.lastSave) >= time.Second {
		jr.lastSave = time.Now()
		if err := m.dirs.saveJob(j); err != nil {
			m.log.Warn("save job", "job", j.ID, "err", err)
		}
	}
	if n != nil && persist {
		if err := m.dirs.saveNamed(&n.meta); err != nil {
			m.log.Error("save named snapshot", "snapshot", j.ID, "err", err)
		}
	}
}

// namedCommittedLocked is committed for a named snapshot's job.
func (m *Manager) namedCommittedLocked(jr *jobRun, man *snapshot.Manifest) {
	j := jr.job
	n := m.named[j.ID]
	if n == nil {
		m.dirs.removeJob(j.ID)
		return
	}
	next := n.meta.clone()
	t := man.Totals
	next.Storage, next.Error = StorageCentral, ""
	next.Compression = compression.Setting{Algorithm: compression.Algorithm(man.Compression.Algorithm), Level: man.Compression.Level}.String()
	next.Totals = &Totals{Raw: t.Raw, NonZero: t.NonZero, Compressed: t.Compressed, NewStored: t.NewStored}
	if err := m.dirs.saveNamed(&next); err != nil {
		m.log.Error("record commit", "snapshot", j.ID, "err", err)
		return // the job file stays: Open will find the manifest
	}
	n.meta = next
	if err := m.dirs.removeJob(j.ID); err != nil {
		m.log.Warn("remove job", "job", j.ID, "err", err)
	}
	m.log.Info("named snapshot committed", "snapshot", j.ID, "raw", t.Raw, "nonzero", t.NonZero, "compressed", t.Compressed, "new_stored", t.NewStored)
	if !m.cfg.KeepLocalAfterCommit && n.readers == 0 && !n.deleting {
		m.dropNamedLocalLocked(n)
	}
}

// dropNamedLocalLocked removes a committed named snapshot's local files.
func (m *Manager) dropNamedLocalLocked(n *named) {
	next := n.meta.clone()
	next.Local = false
	if err := m.dirs.saveNamed(&next); err != nil {
		m.log.Error("record local drop", "snapshot", n.meta.ID, "err", err)
		return
	}
	n.meta = next
	if err := removeAll(m.dirs.snapshotDir(n.meta.ID)); err != nil {
		m.log.Warn("drop local snapshot files", "snapshot", n.meta.ID, "err", err)
	}
}

// recoverNamed loads the named snapshots' records at Open: a local one
// whose files are incomplete is forgotten if it was never committed (it
// never became durable) or marked not local; an uncommitted local one's
// upload resumes. It runs while Open holds job starts back.
func (m *Manager) recoverNamed(jobs map[string]*Job) error {
	dir := filepath.Join(m.cfg.DataDir, namedDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list named snapshots: %w", err)
	}
	for _, ent := range ents {
		name := ent.Name()
		if filepath.Ext(name) != ".json" || ValidateID(name[:len(name)-len(".json")]) != nil {
			continue // temporary files of interrupted writes
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		var meta NamedSnapshot
		if err == nil {
			err = json.Unmarshal(b, &meta)
		}
		if err != nil || meta.ID+".json" != name {
			m.log.Error("skipping unreadable named snapshot", "file", name, "err", err)
			continue
		}
		log := m.log.With("snapshot", meta.ID)
		snapDir := m.dirs.snapshotDir(meta.ID)
		complete := snapshotComplete(snapDir)
		if meta.Kind == KindStopped {
			complete = fileExists(filepath.Join(snapDir, ConfigFile))
		}
		if meta.Local && !complete {
			if meta.Storage != StorageCentral {
				log.Warn("named snapshot's files are missing and it was never committed; forgetting it")
				m.dirs.removeNamed(meta.ID)
				continue
			}
			meta.Local = false
			m.dirs.saveNamed(&meta)
		}
		n := &named{meta: meta}
		m.mu.Lock()
		m.named[meta.ID] = n
		switch {
		case meta.Local && meta.Storage != StorageCentral:
			j := jobs[meta.ID]
			if j == nil || j.role() != RoleNamed {
				j = m.namedJob(&meta, parseSetting(meta.Compression))
			}
			j.State, j.Updated = JobQueued, time.Now().UTC()
			if err := m.dirs.saveJob(j); err != nil {
				log.Warn("save job", "err", err)
			}
			log.Info("upload job resumed", "job", j.ID, "attempts", j.Attempts)
			m.startJobLocked(j)
		case meta.Local && !m.cfg.KeepLocalAfterCommit:
			m.dropNamedLocalLocked(n)
		}
		m.mu.Unlock()
	}
	return nil
}

// namedSource of a fork or restore: the named snapshot sid, registered as
// a reader when this host holds its files (the caller calls release).
// ok is false when sid is not a named snapshot this host knows.
func (m *Manager) namedForkSource(sid string) (meta NamedSnapshot, local, ok bool, release func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.named[sid]
	if n == nil || n.deleting {
		return NamedSnapshot{}, false, false, nil
	}
	if !n.meta.Local {
		return n.meta.clone(), false, true, func() {}
	}
	n.readers++
	return n.meta.clone(), true, true, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		n.readers--
		// The upload may have committed while we read: drop the files
		// now, as it would have.
		if n.readers == 0 && !n.deleting && n.meta.Local && n.meta.Storage == StorageCentral && !m.cfg.KeepLocalAfterCommit {
			m.dropNamedLocalLocked(n)
		}
	}
}

// forkNamed creates instance spec from named snapshot sid if this host
// holds its files: a standby snapshot's memory is copied (the upload goes
// on), a stopped one boots afresh. handled is false when the files are
// not here (the caller fetches the committed snapshot).
func (m *Manager) forkNamed(ctx context.Context, sid string, spec ForkSpec, op string) (in Instance, handled bool, err error) {
	meta, local, ok, release := m.namedForkSource(sid)
	if !ok || !local {
		return Instance{}, false, nil
	}
	defer release()
	if spec.ID == "" {
		spec.ID = meta.InstanceID
	}
	if spec.Name == "" {
		spec.Name = meta.InstanceName
	}
	if err := spec.validate(); err != nil {
		return Instance{}, true, err
	}
	if meta.ImageDigest != "" && meta.ImageDigest != m.image.Digest {
		return Instance{}, true, fmt.Errorf("snapshot %s: %w: it needs guest image %q, this host has %q", sid, vmhost.ErrSnapshotMismatch, meta.ImageDigest, m.image.Digest)
	}
	rec := meta.record()
	if meta.Kind == KindStopped {
		in, err = m.bootFromRecord(ctx, rec, spec, sid, op)
		return in, true, err
	}
	base := Instance{MemoryMiB: rec.MemoryMiB, VCPUs: rec.VCPUs, Image: rec.Image, SnapshotPolicy: rec.SnapshotPolicy}
	in, err = m.forkLocal(ctx, base, sid, spec)
	return in, true, err
}

// bootFromRecord creates instance spec from a stopped snapshot: a fresh
// boot of the recorded size and image. A boot that fails leaves no
// instance behind.
func (m *Manager) bootFromRecord(ctx context.Context, rec vmRecord, spec ForkSpec, sid, op string) (Instance, error) {
	if err := spec.validate(); err != nil {
		return Instance{}, err
	}
	e, done, err := m.reserve(Instance{
		ID: spec.ID, Name: spec.Name, MemoryMiB: rec.MemoryMiB, VCPUs: rec.VCPUs, Image: rec.Image,
		SnapshotPolicy: clonePolicy(rec.SnapshotPolicy),
	}, op)
	if err != nil {
		return Instance{}, err
	}
	defer done()
	if err := m.boot(ctx, e); err != nil {
		m.unreserve(e)
		return Instance{}, err
	}
	if err := m.update(e, func(in *Instance) { in.RestoredFrom = sid }); err != nil {
		m.log.Warn("record snapshot of a fresh boot", "instance", spec.ID, "err", err)
	}
	m.log.Info("instance booted from a stopped snapshot", "instance", spec.ID, "snapshot", sid, "op", op)
	return m.current(e), nil
}
