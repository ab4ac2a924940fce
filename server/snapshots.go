package server

import (
	"context"
	"fmt"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/compression"
)

func (h *handlers) CreateSnapshot(ctx context.Context, req api.CreateSnapshotRequestObject) (api.CreateSnapshotResponseObject, error) {
	s := h.s
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	b := req.Body
	if b == nil {
		return nil, badRequest("request body: required")
	}
	var p fieldProblems
	p.add("name", api.ValidateName("name", b.Name))
	if !b.Kind.Valid() {
		p.addf("kind", "%q is not a snapshot kind (want standby or stopped)", truncate(string(b.Kind), 40))
	}
	if b.Kind == api.SnapshotKindStopped && b.Compression != nil {
		p.addf("compression", "not allowed for kind stopped (it stores no memory)")
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	override, err := compressionInput(b.Compression, api.ErrorCodeInvalidSnapshotCompression, "compression")
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	r, err := s.lookupInstanceLocked(req.Id)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	var hc *api.AppliedCompression
	if b.Kind == api.SnapshotKindStandby {
		setting, err := compression.Resolve(override, r.policy, &s.cfg.Snapshot.CompressionDefault)
		if err != nil {
			s.mu.Unlock()
			return nil, policyError(err)
		}
		c := applied(setting)
		hc = &c
	}
	switch st := r.inst.State; {
	case b.Kind == api.SnapshotKindStandby && st == api.InstanceStateStandby:
		// A host takes a standby snapshot of a running guest only; the
		// parked instance's memory is its standby snapshot already.
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState,
			"cannot take a standby snapshot of instance %s: it is Standby, and a standby snapshot is taken of a Running guest; its standby snapshot %s already holds its memory (fork that, or restore the instance first)",
			r.inst.Id, orNone(r.standbySnap))
	case b.Kind == api.SnapshotKindStandby && st != api.InstanceStateRunning:
		s.mu.Unlock()
		return nil, invalidState("take a standby snapshot of", r, api.InstanceStateRunning)
	case b.Kind == api.SnapshotKindStopped && st != api.InstanceStateRunning && st != api.InstanceStateStandby && st != api.InstanceStateStopped:
		s.mu.Unlock()
		return nil, invalidState("take a stopped snapshot of", r, api.InstanceStateRunning, api.InstanceStateStandby, api.InstanceStateStopped)
	}
	if other := s.snapshotByNameLocked(b.Name); other != nil {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeConflict, "a snapshot named %q exists (%s)", b.Name, other.snap.Id)
	}
	if r.inst.Host == nil {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState, "instance %s has no host holding its files (only the central copy is left): restore it first", r.inst.Id)
	}
	hostID, client, err := s.hostOfLocked(r)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	sid := newID(prefixNamed)
	r.busy = opSnapshot
	s.mu.Unlock()

	got, err := client.CreateSnapshot(ctx, r.inst.Id, hostapi.SnapshotRequest{SnapshotId: sid, Name: b.Name, Kind: b.Kind, Compression: hc})
	s.mu.Lock()
	defer s.mu.Unlock()
	r.busy = ""
	if err != nil {
		return nil, hostError(hostID, fmt.Errorf("snapshot instance %s on host %s: %w", r.inst.Id, hostID, err))
	}
	sr := newSnapshotRec(got)
	sr.added = s.now()
	sn := &sr.snap
	sn.Id, sn.Name, sn.Kind, sn.InstanceId, sn.Standby = sid, b.Name, b.Kind, r.inst.Id, boolPtr(false)
	sn.MemoryMib, sn.Vcpus = r.inst.MemoryMib, r.inst.Vcpus
	if !sn.State.Valid() {
		sn.State = api.SnapshotStateLocal
	}
	if sn.Compression == nil {
		sn.Compression = hc
	}
	if sn.CreatedAt.IsZero() {
		sn.CreatedAt = s.now().UTC()
	}
	if sn.State == api.SnapshotStateCentral {
		sr.centralSince = s.now()
	}
	sr.hosts[hostID], sr.cached[hostID] = true, true
	s.snapshots[sid] = sr
	s.notifyLocked()
	return api.CreateSnapshot201JSONResponse(s.snapshotViewLocked(sr)), nil
}

func (s *Server) snapshotByNameLocked(name string) *snapshotRec {
	for _, sr := range s.snapshots {
		if sr.snap.Name == name {
			return sr
		}
	}
	return nil
}

func (h *handlers) ListSnapshots(_ context.Context, req api.ListSnapshotsRequestObject) (api.ListSnapshotsResponseObject, error) {
	s := h.s
	var p fieldProblems
	q := req.Params
	validateOptionalID(&p, "instance", "instance", q.Instance)
	if q.State != nil && !q.State.Valid() {
		p.addf("state", "%q is not a snapshot state", truncate(string(*q.State), 40))
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := api.ListSnapshots200JSONResponse{Items: []api.Snapshot{}}
	for _, sr := range s.snapshots {
		if (q.Instance != nil && sr.snap.InstanceId != *q.Instance) || (q.State != nil && sr.snap.State != *q.State) {
			continue
		}
		out.Items = append(out.Items, s.snapshotViewLocked(sr))
	}
	newestFirst(out.Items, func(s api.Snapshot) (time.Time, string) { return s.CreatedAt, s.Id })
	return out, nil
}

func (h *handlers) GetSnapshot(_ context.Context, req api.GetSnapshotRequestObject) (api.GetSnapshotResponseObject, error) {
	s := h.s
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.snapshots[req.Id]
	if sr == nil {
		return nil, fmt.Errorf("snapshot %s: %w", req.Id, api.ErrNotFound)
	}
	return api.GetSnapshot200JSONResponse(s.snapshotViewLocked(sr)), nil
}

func (h *handlers) DeleteSnapshot(ctx context.Context, req api.DeleteSnapshotRequestObject) (api.DeleteSnapshotResponseObject, error) {
	s := h.s
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	sr := s.snapshots[req.Id]
	if sr == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("snapshot %s: %w", req.Id, api.ErrNotFound)
	}
	if sr.busy != "" {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState, "snapshot %s: a %s operation is running on it", req.Id, sr.busy)
	}
	if sr.readers > 0 {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeConflict, "snapshot %s: %d restores or forks are reading it", req.Id, sr.readers)
	}
	for _, r := range s.instances {
		if r.standbySnap == req.Id && r.inst.State == api.InstanceStateStandby {
			s.mu.Unlock()
			return nil, api.NewError(api.ErrorCodeInvalidState, "snapshot %s is the standby state of instance %s: delete the instance instead", req.Id, r.inst.Id)
		}
	}
	if sr.snap.State != api.SnapshotStateCentral {
		// Its only copy is local: its holders must be reachable.
		for hid := range sr.hosts {
			if !s.availableLocked(s.hosts[hid]) {
				s.mu.Unlock()
				return nil, api.NewError(api.ErrorCodeHostUnavailable, "snapshot %s is %s on host %s, which is unavailable", req.Id, sr.snap.State, hid)
			}
		}
	}
	sr.busy = opDelete
	s.mu.Unlock()

	err := s.deleteSnapshotData(ctx, []string{req.Id})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		sr.busy = ""
		return nil, err
	}
	delete(s.snapshots, req.Id)
	for _, r := range s.instances {
		if r.standbySnap == req.Id {
			r.standbySnap = ""
		}
	}
	s.notifyLocked()
	return api.DeleteSnapshot204Response{}, nil
}

func (h *handlers) ForkSnapshot(ctx context.Context, req api.ForkSnapshotRequestObject) (api.ForkSnapshotResponseObject, error) {
	s := h.s
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
	}
	if err := validateFork(req.Body); err != nil {
		return nil, err
	}
	s.mu.Lock()
	sr := s.snapshots[req.Id]
	if sr == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("snapshot %s: %w", req.Id, api.ErrNotFound)
	}
	image, policy := defaultImage, (*compression.Policy)(nil)
	if src := s.instances[sr.snap.InstanceId]; src != nil {
		image, policy = src.inst.Image, src.policy
	}
	inst, err := s.forkLocked(ctx, sr, image, policy, req.Body)
	if err != nil {
		return nil, err
	}
	return api.ForkSnapshot201JSONResponse(inst), nil
}

func (h *handlers) RestoreSnapshot(ctx context.Context, req api.RestoreSnapshotRequestObject) (api.RestoreSnapshotResponseObject, error) {
	s := h.s
	if err := api.ValidateID("snapshot", req.Id); err != nil {
		return nil, err
	}
	var host string
	if req.Body != nil && req.Body.Host != nil {
		if err := api.ValidateID("host", *req.Body.Host); err != nil {
			return nil, err
		}
		host = *req.Body.Host
	}
	s.mu.Lock()
	sr := s.snapshots[req.Id]
	if sr == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("snapshot %s: %w", req.Id, api.ErrNotFound)
	}
	if sr.busy != "" {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState, "snapshot %s: a %s operation is running on it", req.Id, sr.busy)
	}
	r := s.instances[sr.snap.InstanceId]
	if r == nil {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState, "the source instance %s of snapshot %s was deleted: fork the snapshot instead", sr.snap.InstanceId, req.Id)
	}
	if r.busy != "" {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState, "instance %s: a %s operation is running on it", r.inst.Id, r.busy)
	}
	if r.inst.State != api.InstanceStateStandby && r.inst.State != api.InstanceStateStopped {
		s.mu.Unlock()
		return nil, invalidState("roll back", r, api.InstanceStateStandby, api.InstanceStateStopped)
	}
	if req.Id == r.standbySnap {
		inst, err := s.resumeLocked(ctx, r, sr, host, opRestore)
		if err != nil {
			return nil, err
		}
		return api.RestoreSnapshot200JSONResponse(inst), nil
	}
	inst, err := s.rollbackLocked(ctx, r, sr, host)
	if err != nil {
		return nil, err
	}
	return api.RestoreSnapshot200JSONResponse(inst), nil
}

// rollbackLocked rolls instance r (Standby or Stopped, checked by the
// caller) back to sr, one of its snapshots other than its standby
// snapshot, and unlocks s.mu (openapi.yaml, restoreSnapshot):
//
//   - a Standby instance whose standby snapshot is not central yet is
//     refused (409 invalid_state): the host would drop a parked VM that
//     exists nowhere else;
//   - an instance on a host is rolled back there (its record is there; a
//     host asked for is that one or refused), an instance no host holds
//     goes where a restore would;
//   - on success the replaced standby snapshot, if any, is deleted as the
//     next standby would delete it (dropReplaced): the instance's state
//     is the rolled-back one now, and the catalog keeps one standby
//     snapshot per instance, the one a recovery resumes.
func (s *Server) rollbackLocked(ctx context.Context, r *instanceRec, sr *snapshotRec, host string) (api.Instance, error) {
	previous := r.standbySnap
	if r.inst.State == api.InstanceStateStandby {
		sby := s.snapshots[previous]
		if sby == nil || sby.snap.State != api.SnapshotStateCentral {
			state := "unknown"
			if sby != nil {
				state = string(sby.snap.State)
			}
			s.mu.Unlock()
			return api.Instance{}, api.NewError(api.ErrorCodeInvalidState,
				"cannot roll instance %s back to snapshot %s yet: its standby snapshot %s is %s, not central, and rolling back would drop a parked VM that exists only on its host; wait until it is central (or restore the instance, then stand it by or stop it)",
				r.inst.Id, sr.snap.Id, orNone(previous), state)
		}
	}
	if r.inst.Host != nil {
		if host != "" && host != *r.inst.Host {
			s.mu.Unlock()
			return api.Instance{}, api.NewError(api.ErrorCodeInvalidState,
				"instance %s is on host %s: a rollback runs there, not on %s", r.inst.Id, *r.inst.Host, host)
		}
		host = *r.inst.Host
	}
	inst, err := s.resumeLocked(ctx, r, sr, host, opRestore)
	if err != nil {
		return api.Instance{}, err
	}
	s.mu.Lock()
	dropped := ""
	if r.standbySnap == previous {
		r.standbySnap, dropped = "", previous
	}
	s.mu.Unlock()
	if dropped != "" {
		s.dropReplaced(dropped)
	}
	return inst, nil
}

// orNone is s, or "none" when empty, for messages.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
