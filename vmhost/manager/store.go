package manager

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost"
)

// layout builds paths in the data directory. Every id passed in has been
// validated (ValidateID) by the caller.
type layout struct{ root string }

const (
	instancesDir = "i"
	runDir       = "r"
	snapshotsDir = "s"
	downloadsDir = "d"
	jobsDir      = "jobs"
	instanceFile = "instance.json"
)

func (l layout) instanceDir(id string) string  { return filepath.Join(l.root, instancesDir, id) }
func (l layout) instanceFile(id string) string { return filepath.Join(l.instanceDir(id), instanceFile) }
func (l layout) snapshotDir(id string) string  { return filepath.Join(l.root, snapshotsDir, id) }
func (l layout) jobFile(id string) string      { return filepath.Join(l.root, jobsDir, id+".json") }
func (l layout) newRunDir() string             { return filepath.Join(l.root, runDir, shortToken()) }
func (l layout) newDownloadDir() string        { return filepath.Join(l.root, downloadsDir, shortToken()) }

// init creates the top-level directories.
func (l layout) init() error {
	for _, d := range []string{instancesDir, runDir, snapshotsDir, downloadsDir, jobsDir} {
		if err := os.MkdirAll(filepath.Join(l.root, d), 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}
	return nil
}

// saveInstance writes in's metadata crash-safely.
func (l layout) saveInstance(in *Instance) error {
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return fmt.Errorf("encode instance %s: %w", in.ID, err)
	}
	if err := os.MkdirAll(l.instanceDir(in.ID), 0o700); err != nil {
		return fmt.Errorf("save instance %s: %w", in.ID, err)
	}
	if err := vmhost.WriteFileAtomic(l.instanceFile(in.ID), append(b, '\n')); err != nil {
		return fmt.Errorf("save instance %s: %w", in.ID, err)
	}
	return nil
}

// loadInstances reads every instance directory. A directory whose name is
// not a valid id, or whose metadata is missing or unreadable, is reported
// in bad and skipped: one damaged instance does not keep a host down.
func (l layout) loadInstances() (ins []*Instance, bad []error, err error) {
	ents, err := os.ReadDir(filepath.Join(l.root, instancesDir))
	if err != nil {
		return nil, nil, fmt.Errorf("list instances: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || ValidateID(e.Name()) != nil {
			continue
		}
		b, err := os.ReadFile(l.instanceFile(e.Name()))
		if err != nil {
			bad = append(bad, fmt.Errorf("instance %s: %w", e.Name(), err))
			continue
		}
		var in Instance
		if err := json.Unmarshal(b, &in); err != nil {
			bad = append(bad, fmt.Errorf("instance %s: parse %s: %w", e.Name(), instanceFile, err))
			continue
		}
		if in.ID != e.Name() {
			bad = append(bad, fmt.Errorf("instance %s: metadata names id %q", e.Name(), in.ID))
			continue
		}
		ins = append(ins, &in)
	}
	return ins, bad, nil
}

// JobState is an upload job's state.
type JobState string

const (
	JobQueued   JobState = "queued"   // waiting for an upload slot
	JobRunning  JobState = "running"  // uploading
	JobRetrying JobState = "retrying" // the last attempt failed; waiting to retry
	JobFailed   JobState = "failed"   // gave up (MaxAttempts, or the files are unusable)
)

// Job is a persisted upload job: one standby snapshot on its way to
// central storage. Its file exists while the job is active or failed and
// is removed when it commits or is cancelled.
type Job struct {
	ID         string `json:"id"` // the snapshot id
	Kind       string `json:"kind"`
	InstanceID string `json:"instance_id"`
	// Compression is the setting resolved at standby time.
	Algorithm string `json:"algorithm"`
	Level     int    `json:"level"`
	// Role is the snapshot's role (RoleStandby when empty, as in jobs
	// written before roles existed); Name a named snapshot's name.
	Role     string    `json:"role,omitempty"`
	Name     string    `json:"name,omitempty"`
	State    JobState  `json:"state"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error,omitempty"`
	Progress Progress  `json:"progress"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

// JobKindUpload is the kind of upload jobs.
const JobKindUpload = "upload"

func (j *Job) role() string {
	if j.Role == "" {
		return RoleStandby
	}
	return j.Role
}

func (j *Job) setting() compression.Setting {
	return compression.Setting{Algorithm: compression.Algorithm(j.Algorithm), Level: j.Level}
}

func (l layout) saveJob(j *Job) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	if err := vmhost.WriteFileAtomic(l.jobFile(j.ID), append(b, '\n')); err != nil {
		return fmt.Errorf("save job %s: %w", j.ID, err)
	}
	return nil
}

func (l layout) removeJob(id string) error {
	if err := os.Remove(l.jobFile(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove job %s: %w", id, err)
	}
	return vmhost.SyncDir(filepath.Join(l.root, jobsDir))
}

func (l layout) loadJobs() (jobs []*Job, bad []error, err error) {
	ents, err := os.ReadDir(filepath.Join(l.root, jobsDir))
	if err != nil {
		return nil, nil, fmt.Errorf("list jobs: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if filepath.Ext(name) != ".json" || ValidateID(name[:len(name)-len(".json")]) != nil {
			continue // temporary files of interrupted writes, strangers
		}
		b, err := os.ReadFile(filepath.Join(l.root, jobsDir, name))
		if err != nil {
			bad = append(bad, fmt.Errorf("job %s: %w", name, err))
			continue
		}
		var j Job
		if err := json.Unmarshal(b, &j); err != nil || j.ID+".json" != name || ValidateID(j.InstanceID) != nil {
			bad = append(bad, fmt.Errorf("job %s: unreadable or inconsistent: %v", name, err))
			continue
		}
		jobs = append(jobs, &j)
	}
	return jobs, bad, nil
}

// removeAll removes a directory tree, treating absence as success.
func removeAll(dir string) error {
	if dir == "" {
		return nil
	}
	// A runtime directory may hold a lazy mount (lazy.go), stale if its
	// server died with an earlier manager; RemoveAll cannot go through it.
	if err := lazyfs.DetachStale(filepath.Join(dir, lazyMountDir)); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
