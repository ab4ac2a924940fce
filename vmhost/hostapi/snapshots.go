package hostapi

import (
	"context"
	"fmt"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// A host's snapshots are its instances' current standby snapshots whose
// raw files it holds, and the named snapshots it took (manager.Snapshot),
// which outlive their instances. The bucket's snapshots are the server's
// catalog, not the host's.

// NamedSnapshots is what the host API needs of the manager for named
// snapshots; *manager.Manager implements it. A Manager without it answers
// the named snapshot calls with 409 invalid_state.
type NamedSnapshots interface {
	Snapshot(ctx context.Context, id string, spec manager.SnapshotSpec) (manager.NamedSnapshot, error)
	Snapshots(ctx context.Context, instanceID string) ([]manager.NamedSnapshot, error)
	GetSnapshot(ctx context.Context, snapshotID string) (manager.NamedSnapshot, error)
	DeleteSnapshot(ctx context.Context, snapshotID string) error
}

var _ NamedSnapshots = (*manager.Manager)(nil)

// named returns the manager's named snapshots, or nil if it has none.
func (s *Server) named() NamedSnapshots {
	n, _ := s.m.(NamedSnapshots)
	return n
}

// LocalNamedSnapshots returns the named snapshots whose raw files this host
// holds (local, uploading, error, or central and kept), newest first, as
// the heartbeat reports them next to the standby snapshots.
func (s *Server) LocalNamedSnapshots(ctx context.Context) ([]api.Snapshot, error) {
	nm := s.named()
	if nm == nil {
		return nil, nil
	}
	ns, err := nm.Snapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Snapshot
	for i := len(ns) - 1; i >= 0; i-- {
		if ns[i].Local {
			out = append(out, s.namedSnapshot(ns[i], jobs))
		}
	}
	return out, nil
}

// namedSnapshot converts a named snapshot.
func (s *Server) namedSnapshot(n manager.NamedSnapshot, jobs map[string]manager.Job) api.Snapshot {
	out := s.snapshot(manager.Instance{
		ID: n.InstanceID, Name: n.InstanceName, MemoryMiB: n.MemoryMiB, VCPUs: n.VCPUs, ImageDigest: n.ImageDigest,
		Snapshot: &n.SnapshotRef,
	}, jobs)
	out.Name = n.Name
	out.Kind = api.SnapshotKind(n.Kind)
	out.Standby = ptr(false)
	if n.Kind == manager.KindStopped {
		out.Compression = nil // no memory: nothing compressed
	}
	return out
}

// localSnapshots returns the snapshots whose raw files this host holds,
// newest first.
func (s *Server) localSnapshots(ctx context.Context) ([]api.Snapshot, error) {
	ins, err := s.m.List(ctx)
	if err != nil {
		return nil, err
	}
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Snapshot{}
	for i := len(ins) - 1; i >= 0; i-- {
		if in := ins[i]; in.Snapshot != nil && in.Snapshot.Local {
			out = append(out, s.snapshot(in, jobs))
		}
	}
	named, err := s.LocalNamedSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	return append(out, named...), nil
}

// findSnapshot returns the instance whose current snapshot is id; with
// localOnly, only if this host still holds the snapshot's raw files.
func (s *Server) findSnapshot(ctx context.Context, id string, localOnly bool) (manager.Instance, bool, error) {
	ins, err := s.m.List(ctx)
	if err != nil {
		return manager.Instance{}, false, err
	}
	for _, in := range ins {
		if in.Snapshot != nil && in.Snapshot.ID == id && (in.Snapshot.Local || !localOnly) {
			return in, true, nil
		}
	}
	return manager.Instance{}, false, nil
}

// ListHostSnapshots lists the snapshots whose raw files this host holds.
func (s *Server) ListHostSnapshots(ctx context.Context, _ hostapi.ListHostSnapshotsRequestObject) (hostapi.ListHostSnapshotsResponseObject, error) {
	out, err := s.localSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	return hostapi.ListHostSnapshots200JSONResponse{Items: out}, nil
}

// GetHostSnapshot returns the current snapshot of an instance of this
// host: one whose raw files it holds, or whose upload it committed and
// then dropped the files of (state central, no hosts), so that a caller
// polling for the commit sees it rather than a 404.
func (s *Server) GetHostSnapshot(ctx context.Context, req hostapi.GetHostSnapshotRequestObject) (hostapi.GetHostSnapshotResponseObject, error) {
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
	}
	if nm := s.named(); nm != nil {
		n, err := nm.GetSnapshot(ctx, req.Id)
		if err == nil {
			jobs, err := s.jobsByID(ctx)
			if err != nil {
				return nil, err
			}
			return hostapi.GetHostSnapshot200JSONResponse(s.namedSnapshot(n, jobs)), nil
		}
		if !isNotFound(err) {
			return nil, err
		}
	}
	in, ok, err := s.findSnapshot(ctx, req.Id, false)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("snapshot %s: %w (not a snapshot of an instance of host %s)", req.Id, api.ErrNotFound, s.opts.HostID)
	}
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return nil, err
	}
	return hostapi.GetHostSnapshot200JSONResponse(s.snapshot(in, jobs)), nil
}

// DeleteHostSnapshot drops the host's local copy of a snapshot. A named
// snapshot is forgotten here: its upload is cancelled and its files
// removed (409 conflict while forks copy them). A standby snapshot is its
// instance's memory: dropping one would lose a parked VM (or, once
// committed, is the manager's decision under keep_local_after_commit), so
// a present one is 409 conflict naming the instance to delete instead.
// An absent one is 204.
func (s *Server) DeleteHostSnapshot(ctx context.Context, req hostapi.DeleteHostSnapshotRequestObject) (hostapi.DeleteHostSnapshotResponseObject, error) {
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
	}
	if nm := s.named(); nm != nil {
		op, done, err := s.operation(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		err = nm.DeleteSnapshot(op, req.Id)
		if err == nil {
			return hostapi.DeleteHostSnapshot204Response{}, nil
		}
		if !isNotFound(err) {
			return nil, err
		}
	}
	in, ok, err := s.findSnapshot(ctx, req.Id, true)
	if err != nil {
		return nil, err
	}
	if !ok {
		return hostapi.DeleteHostSnapshot204Response{}, nil
	}
	return nil, api.NewError(api.ErrorCodeConflict,
		"snapshot %s is the standby state of instance %s (storage %s): delete the instance to drop it", req.Id, in.ID, in.Snapshot.Storage)
}

// CreateHostSnapshot takes named snapshot req.Body.SnapshotId of an
// instance and answers once it is durable locally (201); its upload
// follows. Kind standby needs the compression the server resolved and a
// running instance, which goes on running; kind stopped takes no
// compression. A retry with the same snapshot id, name and kind answers
// the snapshot (200), also after a daemon restart; the id used for
// anything else is 409 conflict.
func (s *Server) CreateHostSnapshot(ctx context.Context, req hostapi.CreateHostSnapshotRequestObject) (hostapi.CreateHostSnapshotResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	b := req.Body
	if err := api.ValidateID("snapshot", b.SnapshotId); err != nil {
		return nil, err
	}
	nm := s.named()
	if nm == nil {
		return nil, api.NewError(api.ErrorCodeInvalidState, "snapshot instance %s: this host's manager takes no named snapshots", req.Id)
	}
	var fields []api.FieldError
	if err := api.ValidateName("name", b.Name); err != nil {
		fields = append(fields, api.FieldError{Field: "name", Message: err.Error()})
	}
	spec := manager.SnapshotSpec{SnapshotID: b.SnapshotId, Name: b.Name, Kind: string(b.Kind)}
	switch b.Kind {
	case api.SnapshotKindStandby:
		if b.Compression == nil {
			fields = append(fields, api.FieldError{Field: "compression", Message: "required for kind standby (the server resolves it)"})
		}
	case api.SnapshotKindStopped:
		if b.Compression != nil {
			fields = append(fields, api.FieldError{Field: "compression", Message: "not allowed for kind stopped (it stores no memory)"})
		}
	default:
		fields = append(fields, api.FieldError{Field: "kind", Message: fmt.Sprintf("%q is not a snapshot kind (want standby or stopped)", truncated(string(b.Kind)))})
	}
	if len(fields) > 0 {
		e := api.NewError(api.ErrorCodeInvalidRequest, "snapshot instance %s: %s: %s", req.Id, fields[0].Field, fields[0].Message)
		e.Fields = &fields
		return nil, e
	}
	if b.Compression != nil {
		setting, err := resolvedSetting(*b.Compression)
		if err != nil {
			return nil, fmt.Errorf("snapshot instance %s: compression: %w", req.Id, err)
		}
		spec.Compression = &setting
	}
	_, err := nm.GetSnapshot(ctx, b.SnapshotId)
	retry := err == nil
	op, done, err := s.operation(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	n, err := nm.Snapshot(op, req.Id, spec)
	if err != nil {
		return nil, err
	}
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return nil, err
	}
	if retry {
		return hostapi.CreateHostSnapshot200JSONResponse(s.namedSnapshot(n, jobs)), nil
	}
	return hostapi.CreateHostSnapshot201JSONResponse(s.namedSnapshot(n, jobs)), nil
}

// truncated bounds a caller's string quoted back in an error message.
func truncated(v string) string {
	if len(v) > 40 {
		return v[:40] + "..."
	}
	return v
}

// ForkHostSnapshot starts instance req.Body.InstanceId from snapshot
// req.Id (local files if this host holds them, else the bucket). A retry
// answers the existing instance.
func (s *Server) ForkHostSnapshot(ctx context.Context, req hostapi.ForkHostSnapshotRequestObject) (hostapi.ForkHostSnapshotResponseObject, error) {
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
	}
	body := *req.Body
	if err := api.ValidateID("instance", body.InstanceId); err != nil {
		return nil, err
	}
	if err := s.checkSpec("spec", body.Spec); err != nil {
		return nil, err
	}
	// Memory and vCPUs come from the snapshot, so a retry is recognised
	// by its name alone.
	same := func(in manager.Instance) bool { return in.Name == body.Spec.Name }
	v, created, err := s.startOnce(ctx, body.InstanceId, body.Spec, same, func(op context.Context) (manager.Instance, error) {
		return s.m.Fork(op, req.Id, manager.ForkSpec{ID: body.InstanceId, Name: body.Spec.Name})
	})
	switch {
	case err != nil:
		return nil, err
	case created:
		return hostapi.ForkHostSnapshot201JSONResponse(v), nil
	}
	return hostapi.ForkHostSnapshot200JSONResponse(v), nil
}

// ListHostJobs lists the active and failed upload jobs.
func (s *Server) ListHostJobs(ctx context.Context, _ hostapi.ListHostJobsRequestObject) (hostapi.ListHostJobsResponseObject, error) {
	js, err := s.m.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Job, 0, len(js))
	for _, j := range js { // running first, then failed ones
		if j.State != manager.JobFailed {
			out = append(out, job(j))
		}
	}
	for _, j := range js {
		if j.State == manager.JobFailed {
			out = append(out, job(j))
		}
	}
	return hostapi.ListHostJobs200JSONResponse{Items: out}, nil
}

// GetHostJob returns one job.
func (s *Server) GetHostJob(ctx context.Context, req hostapi.GetHostJobRequestObject) (hostapi.GetHostJobResponseObject, error) {
	if err := api.ValidateID("job", req.Id); err != nil {
		return nil, err
	}
	js, err := s.m.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, j := range js {
		if j.ID == req.Id {
			return hostapi.GetHostJob200JSONResponse(job(j)), nil
		}
	}
	return nil, fmt.Errorf("job %s: %w", req.Id, api.ErrNotFound)
}
