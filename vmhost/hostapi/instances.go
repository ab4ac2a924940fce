package hostapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// jobsByID returns the manager's active jobs by id (= snapshot id).
func (s *Server) jobsByID(ctx context.Context) (map[string]manager.Job, error) {
	js, err := s.m.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]manager.Job, len(js))
	for _, j := range js {
		out[j.ID] = j
	}
	return out, nil
}

// view converts in with its job.
func (s *Server) view(ctx context.Context, in manager.Instance) (api.Instance, error) {
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return api.Instance{}, err
	}
	return s.instance(in, jobs), nil
}

// ListHostInstances lists every instance the manager holds, newest first.
func (s *Server) ListHostInstances(ctx context.Context, _ hostapi.ListHostInstancesRequestObject) (hostapi.ListHostInstancesResponseObject, error) {
	ins, err := s.m.List(ctx)
	if err != nil {
		return nil, err
	}
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Instance, 0, len(ins))
	for i := len(ins) - 1; i >= 0; i-- { // the manager lists oldest first
		out = append(out, s.instance(ins[i], jobs))
	}
	return hostapi.ListHostInstances200JSONResponse{Items: out}, nil
}

// GetHostInstance returns one instance.
func (s *Server) GetHostInstance(ctx context.Context, req hostapi.GetHostInstanceRequestObject) (hostapi.GetHostInstanceResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	in, err := s.m.Get(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	v, err := s.view(ctx, in)
	if err != nil {
		return nil, err
	}
	return hostapi.GetHostInstance200JSONResponse(v), nil
}

// sameSpec reports whether an existing instance is what spec asks for.
func (s *Server) sameSpec(in manager.Instance, spec hostapi.InstanceSpec) bool {
	return in.Name == spec.Name && in.MemoryMiB == int(spec.MemoryMib) && in.VCPUs == int(spec.Vcpus) &&
		s.imageName(in.ImageDigest) == s.imageName(imageDigestOf(s, spec.Image))
}

// imageDigestOf resolves an image name or digest to a digest.
func imageDigestOf(s *Server, image string) string {
	if image == s.opts.ImageName {
		return s.opts.ImageDigest
	}
	return image
}

// settled waits while instance id is Creating (another call for the same
// id is booting it) and returns it once it is not, or ctx's error.
func (s *Server) settled(ctx context.Context, id string) (manager.Instance, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		in, err := s.m.Get(ctx, id)
		if err != nil || in.State != manager.StateCreating {
			return in, err
		}
		select {
		case <-ctx.Done():
			return in, fmt.Errorf("instance %s is still being created: %w", id, ctx.Err())
		case <-s.life.Done():
			return in, errShuttingDown
		case <-t.C:
		}
	}
}

// existing answers a retried create or fork of id: (instance, true, nil)
// when it exists with the same spec (waiting while it is Creating), an
// error when it exists with another, (_, false, nil) when it does not.
func (s *Server) existing(ctx context.Context, id string, spec hostapi.InstanceSpec, same func(manager.Instance) bool) (api.Instance, bool, error) {
	in, err := s.m.Get(ctx, id)
	if isNotFound(err) {
		return api.Instance{}, false, nil
	}
	if err != nil {
		return api.Instance{}, false, err
	}
	if !same(in) {
		return api.Instance{}, false, api.NewError(api.ErrorCodeConflict,
			"instance %s exists with another spec (name %q, %d MiB, %d vCPUs; asked %q, %d MiB, %d vCPUs)",
			id, in.Name, in.MemoryMiB, in.VCPUs, spec.Name, spec.MemoryMib, spec.Vcpus)
	}
	if in, err = s.settled(ctx, id); err != nil {
		return api.Instance{}, false, err
	}
	v, err := s.view(ctx, in)
	return v, err == nil, err
}

// CreateHostInstance boots instance id; a retry answers the existing one.
func (s *Server) CreateHostInstance(ctx context.Context, req hostapi.CreateHostInstanceRequestObject) (hostapi.CreateHostInstanceResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	spec := *req.Body
	if err := s.checkSpec("", spec); err != nil {
		return nil, err
	}
	same := func(in manager.Instance) bool { return s.sameSpec(in, spec) }
	v, created, err := s.startOnce(ctx, req.Id, spec, same, func(op context.Context) (manager.Instance, error) {
		return s.m.Create(op, manager.CreateSpec{
			ID: req.Id, Name: spec.Name, ImageDigest: imageDigestOf(s, spec.Image), Image: s.imageName(imageDigestOf(s, spec.Image)),
			MemoryMiB: int(spec.MemoryMib), VCPUs: int(spec.Vcpus), SnapshotPolicy: specPolicy(spec.SnapshotPolicy),
		})
	})
	switch {
	case err != nil:
		return nil, err
	case created:
		return hostapi.CreateHostInstance201JSONResponse(v), nil
	}
	return hostapi.CreateHostInstance200JSONResponse(v), nil
}

// startOnce starts instance id with start, a create or a fork, at most
// once: a retry, or a call that lost the race with a concurrent one for the
// same id, answers the existing instance when same accepts it (created
// false; see existing). start runs under the spec's reserved resources and
// an operation context.
func (s *Server) startOnce(ctx context.Context, id string, spec hostapi.InstanceSpec, same func(manager.Instance) bool,
	start func(op context.Context) (manager.Instance, error)) (v api.Instance, created bool, err error) {
	if v, ok, err := s.existing(ctx, id, spec, same); err != nil || ok {
		return v, false, err
	}
	release, err := s.reserve(ctx, id, specResources(spec.MemoryMib, spec.Vcpus))
	if err != nil {
		return api.Instance{}, false, err
	}
	defer release()
	op, done, err := s.operation(ctx)
	if err != nil {
		return api.Instance{}, false, err
	}
	defer done()
	in, err := start(op)
	if errors.Is(err, manager.ErrAlreadyExists) {
		// Lost a race with a concurrent call for the same id: answer as
		// a retry does.
		if v, ok, err := s.existing(ctx, id, spec, same); err != nil || ok {
			return v, false, err
		}
	}
	if err != nil {
		return api.Instance{}, false, err
	}
	if v, err = s.view(ctx, in); err != nil {
		return api.Instance{}, false, err
	}
	return v, true, nil
}

// DeleteHostInstance deletes instance id; an absent one is 204 too.
func (s *Server) DeleteHostInstance(ctx context.Context, req hostapi.DeleteHostInstanceRequestObject) (hostapi.DeleteHostInstanceResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	op, done, err := s.operation(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.m.Delete(op, req.Id); err != nil && !isNotFound(err) {
		return nil, err
	}
	return hostapi.DeleteHostInstance204Response{}, nil
}

// resolvedSetting checks the compression the server resolved and returns
// it as the setting the manager applies as is: the precedence was
// resolved by the server, and is not resolved again here. A bad one is a
// *compression.ValidationError naming the request's fields.
func resolvedSetting(c api.AppliedCompression) (compression.Setting, error) {
	p := &compression.Policy{Algorithm: string(c.Algorithm), Level: ptr(c.Level)}
	if c.Algorithm == api.AlgorithmNone {
		p = &compression.Policy{Enabled: ptr(false)}
	}
	if err := p.Validate(); err != nil {
		var ve *compression.ValidationError
		if errors.As(err, &ve) {
			ve.Source = compression.SourceRequest
		}
		return compression.Setting{}, err
	}
	return compression.Resolve(p, nil, nil)
}

// StandbyHostInstance parks a running instance into the server's snapshot
// id with the server's resolved compression. A retry for an instance
// already on standby with the asked snapshot answers its current state;
// the manager recognises it from the instance's persisted metadata, so
// also after a daemon restart.
func (s *Server) StandbyHostInstance(ctx context.Context, req hostapi.StandbyHostInstanceRequestObject) (hostapi.StandbyHostInstanceResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	if err := api.ValidateID("snapshot", req.Body.SnapshotId); err != nil {
		return nil, err
	}
	var name string
	if req.Body.Name != nil {
		if err := api.ValidateName("name", *req.Body.Name); err != nil {
			return nil, err
		}
		name = *req.Body.Name
	}
	setting, err := resolvedSetting(req.Body.Compression)
	if err != nil {
		return nil, fmt.Errorf("standby instance %s: compression: %w", req.Id, err)
	}
	in, err := s.m.Get(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	if in.State != manager.StateStandby {
		op, done, err := s.operation(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		if in, err = s.m.Standby(op, req.Id, manager.StandbyOptions{SnapshotID: req.Body.SnapshotId, Name: name, Compression: &setting}); err != nil {
			return nil, err
		}
	} else if in.Snapshot == nil || in.Snapshot.ID != req.Body.SnapshotId {
		cur := "none"
		if in.Snapshot != nil {
			cur = in.Snapshot.ID
		}
		return nil, api.NewError(api.ErrorCodeInvalidState,
			"standby instance %s: it is already on standby with snapshot %s (asked for %s)", req.Id, cur, req.Body.SnapshotId)
	}
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return nil, err
	}
	if in.Snapshot == nil {
		return nil, fmt.Errorf("standby instance %s: manager reported no snapshot", req.Id)
	}
	return hostapi.StandbyHostInstance200JSONResponse{Instance: s.instance(in, jobs), Snapshot: s.snapshot(in, jobs)}, nil
}

// RestoreHostInstance resumes an instance from a snapshot: this host's
// standby instance from its standby snapshot (local files, or central if
// dropped); this host's standby or stopped instance from one of its named
// snapshots (a rollback, manager.Rollback: refused while the standby
// snapshot is not central); or, for an instance this host does not hold,
// the committed snapshot from the bucket. A retry for an instance already
// running from that snapshot answers it.
func (s *Server) RestoreHostInstance(ctx context.Context, req hostapi.RestoreHostInstanceRequestObject) (hostapi.RestoreHostInstanceResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	body := *req.Body
	if err := api.ValidateID("snapshot", body.SnapshotId); err != nil {
		return nil, err
	}
	if err := s.checkSpec("spec", body.Spec); err != nil {
		return nil, err
	}
	in, err := s.m.Get(ctx, req.Id)
	here := err == nil
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	if here {
		switch {
		case in.State == manager.StateRunning && runningFrom(in, body.SnapshotId):
			v, err := s.view(ctx, in)
			if err != nil {
				return nil, err
			}
			return hostapi.RestoreHostInstance200JSONResponse(v), nil
		case in.State == manager.StateStandby && in.Snapshot == nil:
			return nil, api.NewError(api.ErrorCodeConflict,
				"restore instance %s: it is on standby here without a snapshot", req.Id)
		}
	}
	// Another snapshot than the standby one of an instance held here (or
	// any snapshot of a stopped one): a rollback to one of its named
	// snapshots (manager.Rollback says what it accepts).
	rollback := here && (in.State == manager.StateStopped ||
		(in.State == manager.StateStandby && in.Snapshot.ID != body.SnapshotId))
	release, err := s.reserve(ctx, req.Id, specResources(body.Spec.MemoryMib, body.Spec.Vcpus))
	if err != nil {
		return nil, err
	}
	defer release()
	op, done, err := s.operation(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	switch {
	case rollback:
		in, err = s.m.Rollback(op, req.Id, body.SnapshotId)
	case here:
		in, err = s.m.Restore(op, req.Id)
	default:
		in, err = s.m.RestoreSnapshot(op, body.SnapshotId, manager.ForkSpec{ID: req.Id, Name: body.Spec.Name})
	}
	if err != nil {
		return nil, err
	}
	v, err := s.view(ctx, in)
	if err != nil {
		return nil, err
	}
	return hostapi.RestoreHostInstance200JSONResponse(v), nil
}

// runningFrom reports whether running instance in was resumed from
// snapshot sid, so that a retried restore answers it. The manager records
// the snapshot a VM was resumed from in the instance's metadata, which
// survives a daemon restart; a fresh boot was resumed from nothing.
func runningFrom(in manager.Instance, sid string) bool {
	return in.RestoredFrom == sid || (in.Snapshot != nil && in.Snapshot.ID == sid)
}
