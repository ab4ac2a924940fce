package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/vmhost"
)

// jobRun is an upload job being run. job is guarded by Manager.mu.
type jobRun struct {
	job      *Job
	cancel   context.CancelCauseFunc
	done     chan struct{} // closed when the job's goroutine has ended
	start    time.Time
	lastSave time.Time
	// committed is set, under Manager.mu, when the manifest is committed:
	// from then on the snapshot reads central, and Jobs no longer lists
	// the job even though its goroutine is still winding down.
	committed bool
}

// vmRecord is what a manifest records about the VM (Manifest.VM): enough
// for another host to recreate the instance from the snapshot alone.
type vmRecord struct {
	InstanceID     string              `json:"instance_id"`
	Name           string              `json:"name"`
	Image          string              `json:"image,omitempty"`
	MemoryMiB      int                 `json:"memory_mib"`
	VCPUs          int                 `json:"vcpus"`
	SnapshotPolicy *compression.Policy `json:"snapshot_policy,omitempty"`
}

// recordOf is the vm record of an instance.
func recordOf(in *Instance) vmRecord {
	return vmRecord{InstanceID: in.ID, Name: in.Name, Image: in.Image, MemoryMiB: in.MemoryMiB, VCPUs: in.VCPUs, SnapshotPolicy: clonePolicy(in.SnapshotPolicy)}
}

// labels are the manifest labels of j's snapshot of the instance rec.
func (j *Job) labels(rec vmRecord) map[string]string {
	l := map[string]string{LabelRole: j.role(), LabelInstanceName: rec.Name}
	if j.Name != "" {
		l[LabelSnapshotName] = j.Name
	}
	if rec.Image != "" {
		l[LabelImage] = rec.Image
	}
	return l
}

// startJobLocked runs j in the background. A closed manager starts
// nothing: the job stays persisted and the next Open resumes it.
func (m *Manager) startJobLocked(j *Job) {
	if m.closed {
		return
	}
	if m.recovering {
		m.held = append(m.held, j)
		return
	}
	ctx, cancel := context.WithCancelCause(m.bg)
	jr := &jobRun{job: j, cancel: cancel, done: make(chan struct{}), start: time.Now()}
	m.jobs[j.ID] = jr
	m.wg.Add(1)
	go m.runUpload(ctx, jr)
}

// stopJob cancels the upload job of snapshot sid, if one is active, and
// waits until it has stopped touching the snapshot's files. It reports
// whether there was a job. The job's file is left to the caller.
func (m *Manager) stopJob(ctx context.Context, sid string, cause error) bool {
	m.mu.Lock()
	jr := m.jobs[sid]
	m.mu.Unlock()
	if jr == nil {
		return false
	}
	jr.cancel(cause)
	// Wait without ctx: returning early would let the caller use (or
	// delete) files the upload still reads. Upload honours cancellation
	// promptly (its contract), so this is short.
	<-jr.done
	m.log.Info("upload job stopped", "job", sid, "cause", cause)
	return true
}

func (m *Manager) runUpload(ctx context.Context, jr *jobRun) {
	defer m.wg.Done()
	m.mu.Lock()
	id, alg := jr.job.ID, jr.job.Algorithm
	m.mu.Unlock()
	log := m.log.With("job", id, "instance", jr.job.InstanceID)
	result := m.upload(ctx, jr, log)
	m.met.jobEnded(JobKindUpload, alg, result, time.Since(jr.start))
	log.Info("upload job ended", "result", result, "duration", time.Since(jr.start))
	m.mu.Lock()
	if m.jobs[id] == jr {
		delete(m.jobs, id)
	}
	m.mu.Unlock()
	close(jr.done)
}

// upload runs attempts until one commits, the job fails for good, or ctx
// ends. It returns the job's result for metrics.
func (m *Manager) upload(ctx context.Context, jr *jobRun, log *slog.Logger) string {
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		return cancelResult(ctx)
	}
	defer func() { <-m.slots }()
	for {
		var attempts int
		m.jobUpdate(jr, true, func(j *Job, s *SnapshotRef) {
			j.State = JobRunning
			j.Attempts++
			attempts = j.Attempts
			if s != nil {
				s.Storage = StorageUploading
			}
		})
		man, err := m.uploadOnce(ctx, jr)
		if err == nil {
			m.committed(jr, man)
			return resultCommitted
		}
		if ctx.Err() != nil {
			return cancelResult(ctx)
		}
		// Files that are gone or unusable will not get better by waiting.
		permanent := errors.Is(err, vmhost.ErrSnapshotMismatch) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, compression.ErrInvalidPolicy)
		failed := permanent || (m.cfg.UploadRetry.MaxAttempts > 0 && attempts >= m.cfg.UploadRetry.MaxAttempts)
		delay := m.cfg.UploadRetry.delay(attempts, rand.Float64())
		m.jobUpdate(jr, true, func(j *Job, s *SnapshotRef) {
			j.State, j.Error = JobRetrying, err.Error()
			if failed {
				j.State = JobFailed
			}
			if s != nil {
				s.Storage, s.Error = StorageError, err.Error()
			}
		})
		if failed {
			log.Error("upload failed; the snapshot stays on local disk", "attempts", attempts, "err", err)
			return resultFailed
		}
		log.Warn("upload attempt failed; retrying", "attempt", attempts, "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return cancelResult(ctx)
		}
	}
}

func cancelResult(ctx context.Context) string {
	if errors.Is(context.Cause(ctx), errPreempted) {
		return resultPreempted
	}
	return resultCancelled
}

// uploadOnce is one attempt.
func (m *Manager) uploadOnce(ctx context.Context, jr *jobRun) (*snapshot.Manifest, error) {
	m.mu.Lock()
	j := *jr.job
	m.mu.Unlock()
	source := m.standbySource
	if j.role() == RoleNamed {
		source = m.namedSource
	}
	snap, files, err := source(&j)
	if err != nil {
		return nil, err
	}
	m.loadIndex(ctx)
	opts := snapshot.UploadOptions{
		Cache:     m.cache,
		DigestKey: m.digestKey, // unchanged chunks of a memory file restored or uploaded here are not hashed again
		Progress: func(p snapshot.Progress) {
			pr := Progress{Total: p.RawTotal, Raw: p.Raw, NonZero: p.NonZero, Compressed: p.Compressed, Uploaded: p.Uploaded,
				Deduplicated: p.Deduplicated, Unchanged: p.Unchanged}
			m.jobUpdate(jr, false, func(j *Job, s *SnapshotRef) {
				j.Progress = pr
				if s != nil {
					s.Progress = pr
				}
			})
		},
	}
	man, err := m.repo.Upload(ctx, snap, files, opts)
	if err != nil {
		return nil, fmt.Errorf("upload snapshot %s: %w", j.ID, err)
	}
	return man, nil
}

// standbySource is what an upload of standby snapshot j sends.
func (m *Manager) standbySource(j *Job) (snapshot.Info, []snapshot.FileSource, error) {
	m.mu.Lock()
	var rec vmRecord
	if e := m.insts[j.InstanceID]; e != nil {
		rec = recordOf(&e.meta)
	}
	m.mu.Unlock()
	dir := m.dirs.snapshotDir(j.ID)
	info, err := vmhost.ReadSnapshotInfo(dir)
	if err != nil {
		return snapshot.Info{}, nil, err
	}
	if rec.InstanceID == "" {
		return snapshot.Info{}, nil, fmt.Errorf("upload %s: instance %s: %w", j.ID, j.InstanceID, fs.ErrNotExist)
	}
	vm, err := json.Marshal(rec)
	if err != nil {
		return snapshot.Info{}, nil, err
	}
	snap := snapshot.Info{
		ID: j.ID, SourceInstance: j.InstanceID, Kind: KindStandby, VM: vm,
		Hypervisor: m.hypervisorID(), ImageDigest: info.Boot.ImageDigest, Compression: j.setting(),
		Created: info.Created, Labels: j.labels(rec),
	}
	var files []snapshot.FileSource
	for _, name := range []string{vmhost.MemoryFile, vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		files = append(files, snapshot.FileSource{Name: name, Path: filepath.Join(dir, name)})
	}
	return snap, files, nil
}

// jobUpdate changes jr's job and, if the instance still has this
// snapshot, its SnapshotRef. With persist the job file and instance
// metadata are written; without, only memory changes, and the job file at
// most once a second (progress).
func (m *Manager) jobUpdate(jr *jobRun, persist bool, fn func(*Job, *SnapshotRef)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := jr.job
	if j.role() == RoleNamed {
		m.namedJobUpdateLocked(jr, persist, fn)
		return
	}
	e := m.insts[j.InstanceID]
	if e != nil && (e.meta.Snapshot == nil || e.meta.Snapshot.ID != j.ID) {
		e = nil
	}
	now := time.Now().UTC()
	if !persist {
		var s *SnapshotRef
		if e != nil {
			s = e.meta.Snapshot // progress only: in place, saved with the next change
		}
		fn(j, s)
		j.Updated = now
		if time.Since(jr.lastSave) >= time.Second {
			jr.lastSave = time.Now()
			if err := m.dirs.saveJob(j); err != nil {
				m.log.Warn("save job progress", "job", j.ID, "err", err)
			}
		}
		return
	}
	fn(j, nil)
	j.Updated = now
	if err := m.dirs.saveJob(j); err != nil {
		m.log.Error("save job", "job", j.ID, "err", err)
	}
	if e != nil {
		if err := m.updateLocked(e, func(in *Instance) { fn(&Job{}, in.Snapshot) }); err != nil {
			m.log.Error("save instance", "instance", e.meta.ID, "err", err)
		}
	}
}

// committed records a committed upload: storage central, the job file
// removed, and the raw files dropped unless configured to keep them (or a
// fork is reading them right now; Open drops them later).
func (m *Manager) committed(jr *jobRun, man *snapshot.Manifest) {
	t := man.Totals
	m.met.uploaded(Progress{Raw: t.Raw, NonZero: t.NonZero, Compressed: t.Compressed, Uploaded: t.NewStored, Deduplicated: t.Compressed - t.NewStored})
	m.mu.Lock()
	defer m.mu.Unlock()
	jr.committed = true
	j := jr.job
	if j.role() == RoleNamed {
		m.namedCommittedLocked(jr, man)
		return
	}
	e := m.insts[j.InstanceID]
	if e != nil && (e.meta.Snapshot == nil || e.meta.Snapshot.ID != j.ID) {
		e = nil
	}
	if e != nil {
		err := m.updateLocked(e, func(in *Instance) {
			s := in.Snapshot
			s.Storage, s.Error = StorageCentral, ""
			s.Compression = compression.Setting{Algorithm: compression.Algorithm(man.Compression.Algorithm), Level: man.Compression.Level}.String()
			s.Totals = &Totals{Raw: t.Raw, NonZero: t.NonZero, Compressed: t.Compressed, NewStored: t.NewStored}
		})
		if err != nil {
			m.log.Error("record commit", "instance", e.meta.ID, "snapshot", j.ID, "err", err)
			return // the job file stays: Open will find the manifest
		}
	}
	if err := m.dirs.removeJob(j.ID); err != nil {
		m.log.Warn("remove job", "job", j.ID, "err", err)
	}
	m.log.Info("snapshot committed", "snapshot", j.ID, "raw", t.Raw, "nonzero", t.NonZero, "compressed", t.Compressed, "new_stored", t.NewStored)
	if e != nil && !m.cfg.KeepLocalAfterCommit && e.readers == 0 {
		m.dropLocalLocked(e)
	}
}

// dropLocalLocked removes a committed snapshot's raw files.
func (m *Manager) dropLocalLocked(e *entry) {
	s := e.meta.Snapshot
	if err := m.updateLocked(e, func(in *Instance) { in.Snapshot.Local = false }); err != nil {
		m.log.Error("record local drop", "instance", e.meta.ID, "err", err)
		return
	}
	if err := removeAll(m.dirs.snapshotDir(s.ID)); err != nil {
		m.log.Warn("drop local snapshot files", "snapshot", s.ID, "err", err)
	}
}

// loadIndex loads the repo's chunk index once per manager, before the
// first upload, so that a resumed upload skips the chunks stored before a
// restart without a request each. A failure is only logged: the upload
// then learns the same from refused creates.
func (m *Manager) loadIndex(ctx context.Context) {
	l, ok := m.repo.(indexLoader)
	m.mu.Lock()
	done := m.indexLoaded
	m.mu.Unlock()
	if !ok || done {
		return
	}
	if err := l.LoadIndex(ctx); err != nil {
		m.log.Warn("load chunk index", "err", err)
		return
	}
	m.mu.Lock()
	m.indexLoaded = true
	m.mu.Unlock()
}
