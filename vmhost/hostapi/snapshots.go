package hostapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// A host's snapshots are its instances' current standby snapshots whose
// raw files it holds (the manager keeps no other kind yet). The bucket's
// snapshots are the server's catalog, not the host's.

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
	return out, nil
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

// DeleteHostSnapshot drops the host's local copy of a snapshot. The only
// local snapshots are standby snapshots, which are their instance's
// memory: dropping one would lose a parked VM (or, once committed, is the
// manager's decision under keep_local_after_commit). So an absent one is
// 204 and a present one is 409 conflict naming the instance to delete
// instead.
func (s *Server) DeleteHostSnapshot(ctx context.Context, req hostapi.DeleteHostSnapshotRequestObject) (hostapi.DeleteHostSnapshotResponseObject, error) {
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
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

// CreateHostSnapshot would take a named snapshot; the manager has no
// named snapshots yet, so it refuses with a clear error.
func (s *Server) CreateHostSnapshot(ctx context.Context, req hostapi.CreateHostSnapshotRequestObject) (hostapi.CreateHostSnapshotResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	if err := api.ValidateID("snapshot", req.Body.SnapshotId); err != nil {
		return nil, err
	}
	if _, err := s.m.Get(ctx, req.Id); err != nil {
		return nil, err
	}
	return nil, api.NewError(api.ErrorCodeInvalidState,
		"snapshot instance %s: named snapshots are not supported by this host yet; use standby", req.Id)
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
	if v, ok, err := s.existing(ctx, body.InstanceId, body.Spec, same); err != nil || ok {
		if err != nil {
			return nil, err
		}
		return hostapi.ForkHostSnapshot200JSONResponse(v), nil
	}
	release, err := s.reserve(ctx, body.InstanceId, specResources(body.Spec.MemoryMib, body.Spec.Vcpus))
	if err != nil {
		return nil, err
	}
	defer release()
	op, done, err := s.operation(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	in, err := s.m.Fork(op, req.Id, manager.ForkSpec{ID: body.InstanceId, Name: body.Spec.Name})
	if errors.Is(err, manager.ErrAlreadyExists) {
		v, ok, err := s.existing(ctx, body.InstanceId, body.Spec, same)
		if err != nil {
			return nil, err
		}
		if ok {
			return hostapi.ForkHostSnapshot200JSONResponse(v), nil
		}
	}
	if err != nil {
		return nil, err
	}
	v, err := s.view(ctx, in)
	if err != nil {
		return nil, err
	}
	return hostapi.ForkHostSnapshot201JSONResponse(v), nil
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
