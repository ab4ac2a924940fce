package hostapi

import (
	"strconv"
	"strings"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// The manager speaks its own vocabulary (lower-case states, jobs named by
// snapshot id); these functions translate it into the wire types, in one
// direction only: nothing here is parsed back.

var instanceStates = map[manager.State]api.InstanceState{
	manager.StateCreating: api.InstanceStateCreating,
	manager.StateRunning:  api.InstanceStateRunning,
	manager.StateStandby:  api.InstanceStateStandby,
	manager.StateStopped:  api.InstanceStateStopped,
	manager.StateError:    api.InstanceStateError,
	manager.StateDeleted:  api.InstanceStateDeleted,
}

var snapshotStates = map[manager.Storage]api.SnapshotState{
	manager.StorageLocal:     api.SnapshotStateLocal,
	manager.StorageUploading: api.SnapshotStateUploading,
	manager.StorageCentral:   api.SnapshotStateCentral,
	manager.StorageError:     api.SnapshotStateError,
}

func ptr[T any](v T) *T { return &v }

// instance converts a manager instance; jobs are the active upload jobs by
// snapshot id (the one of its current snapshot becomes Instance.Job).
func (s *Server) instance(in manager.Instance, jobs map[string]manager.Job) api.Instance {
	out := api.Instance{
		Id:        in.ID,
		Name:      in.Name,
		State:     instanceStates[in.State],
		Image:     s.imageName(in.ImageDigest),
		MemoryMib: int32(in.MemoryMiB),
		Vcpus:     int32(in.VCPUs),
		CreatedAt: in.Created,
		UpdatedAt: in.Updated,
	}
	if out.State == "" {
		out.State = api.InstanceStateError
	}
	if in.Error != "" {
		out.Error = ptr(in.Error)
	}
	if p := policy(in.SnapshotPolicy); p != nil {
		out.SnapshotPolicy = &api.SnapshotPolicy{Compression: p}
	}
	// The host field names where the instance lives: always here, except
	// a standby whose only copy left is the central one.
	if !(in.State == manager.StateStandby && in.Snapshot != nil && !in.Snapshot.Local) {
		out.Host = ptr(s.opts.HostID)
	}
	if ref := in.Snapshot; ref != nil {
		out.SnapshotId = ptr(ref.ID)
		if in.State == manager.StateStandby {
			out.Storage = ptr(snapshotStates[ref.Storage])
		}
		if j, ok := jobs[ref.ID]; ok {
			out.Job = ptr(job(j))
		}
	}
	return out
}

// imageName is the name of the image with digest d: the host's image name
// when it is this host's image, the digest itself otherwise (an instance
// recovered from an older image).
func (s *Server) imageName(d string) string {
	if d == "" || d == s.opts.ImageDigest {
		return s.opts.ImageName
	}
	return d
}

// policy converts an instance snapshot policy; nil stays nil.
func policy(p *compression.Policy) *api.Compression {
	if p == nil || !p.IsSet() {
		return nil
	}
	c := &api.Compression{}
	if p.Algorithm != "" {
		c.Algorithm = ptr(p.Algorithm)
	}
	if p.Enabled != nil {
		c.Enabled = ptr(*p.Enabled)
	}
	if p.Level != nil {
		c.Level = ptr(*p.Level)
	}
	return c
}

// specPolicy converts the snapshot policy of an instance spec (the
// server validated it; the manager validates it again). nil stays nil.
func specPolicy(sp *api.SnapshotPolicy) *compression.Policy {
	if sp == nil || sp.Compression == nil {
		return nil
	}
	c := sp.Compression
	p := &compression.Policy{Enabled: c.Enabled, Level: c.Level}
	if c.Algorithm != nil {
		p.Algorithm = *c.Algorithm
	}
	if !p.IsSet() {
		return nil
	}
	return p
}

// applied parses the manager's compression string ("zstd:1", "none").
func applied(s string) *api.AppliedCompression {
	alg, lvl, _ := strings.Cut(s, ":")
	if alg == "" {
		return nil
	}
	level, _ := strconv.Atoi(lvl)
	return &api.AppliedCompression{Algorithm: api.Algorithm(alg), Level: level}
}

// snapshot converts an instance's current snapshot.
func (s *Server) snapshot(in manager.Instance, jobs map[string]manager.Job) api.Snapshot {
	ref := in.Snapshot
	out := api.Snapshot{
		Id:          ref.ID,
		InstanceId:  in.ID,
		Kind:        api.SnapshotKindStandby,
		Name:        in.Name + "-standby",
		MemoryMib:   int32(in.MemoryMiB),
		Vcpus:       int32(in.VCPUs),
		CreatedAt:   ref.Created,
		State:       snapshotStates[ref.Storage],
		Standby:     ptr(true),
		Compression: applied(ref.Compression),
		RawBytes:    ref.Progress.Total,
	}
	if ref.Kind != "" && ref.Kind != manager.KindStandby {
		out.Kind = api.SnapshotKind(ref.Kind)
	}
	if in.ImageDigest != "" {
		out.ImageDigest = ptr(in.ImageDigest)
	}
	if ref.Error != "" {
		out.Error = ptr(ref.Error)
	}
	if ref.Local {
		out.Hosts = &[]string{s.opts.HostID}
	} else {
		out.Hosts = &[]string{}
	}
	if t := ref.Totals; t != nil {
		out.RawBytes = t.Raw
		out.NonZeroBytes = ptr(t.NonZero)
		out.CompressedBytes = ptr(t.Compressed)
		out.NewStoredBytes = ptr(t.NewStored)
	}
	if ref.Storage == manager.StorageUploading || ref.Storage == manager.StorageError {
		p := ref.Progress
		if j, ok := jobs[ref.ID]; ok {
			p = j.Progress
		}
		out.Progress = progress(p)
		out.RawBytes = max(out.RawBytes, p.Total)
	}
	return out
}

// job converts an upload job (the manager's job id is its snapshot id).
func job(j manager.Job) api.Job {
	out := api.Job{
		Id:         j.ID,
		Kind:       api.JobKindUpload,
		InstanceId: ptr(j.InstanceID),
		SnapshotId: ptr(j.ID),
		StartedAt:  j.Created,
		State:      api.JobStateRunning,
		Progress:   progress(j.Progress),
	}
	if j.Kind != "" && j.Kind != manager.JobKindUpload {
		out.Kind = api.JobKind(j.Kind)
	}
	if j.State == manager.JobFailed {
		out.State = api.JobStateFailed
		out.FinishedAt = ptr(j.Updated)
	}
	if j.Error != "" {
		out.Error = ptr(j.Error)
	}
	return out
}

func progress(p manager.Progress) *api.Progress {
	done := 1.0
	if p.Total > 0 {
		done = min(1, float64(p.Raw)/float64(p.Total))
	}
	return &api.Progress{
		Done:              done,
		RawBytes:          p.Raw,
		TotalBytes:        p.Total,
		NonZeroBytes:      ptr(p.NonZero),
		CompressedBytes:   ptr(p.Compressed),
		UploadedBytes:     ptr(p.Uploaded),
		DeduplicatedBytes: ptr(p.Deduplicated),
	}
}
