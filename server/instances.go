package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
)

// Ranges of an instance's size (openapi.yaml, InstanceSpec).
const (
	minMemoryMiB = 64
	maxMemoryMiB = 1 << 20
	minVCPUs     = 1
	maxVCPUs     = 256
)

func (h *handlers) CreateInstance(ctx context.Context, req api.CreateInstanceRequestObject) (api.CreateInstanceResponseObject, error) {
	s := h.s
	b := req.Body
	if b == nil {
		return nil, badRequest("request body: required")
	}
	var p fieldProblems
	p.add("name", api.ValidateName("name", b.Name))
	p.add("image", api.ValidateName("image", b.Image))
	if b.MemoryMib < minMemoryMiB || b.MemoryMib > maxMemoryMiB {
		p.addf("memory_mib", "%d is out of range (%d-%d)", b.MemoryMib, minMemoryMiB, maxMemoryMiB)
	}
	if b.Vcpus < minVCPUs || b.Vcpus > maxVCPUs {
		p.addf("vcpus", "%d is out of range (%d-%d)", b.Vcpus, minVCPUs, maxVCPUs)
	}
	validateOptionalID(&p, "host", "host", b.Host)
	if err := p.err(); err != nil {
		return nil, err
	}
	var policy *compression.Policy
	if b.SnapshotPolicy != nil {
		var err error
		if policy, err = compressionInput(b.SnapshotPolicy.Compression, api.ErrorCodeInvalidSnapshotPolicy, "snapshot_policy.compression"); err != nil {
			return nil, err
		}
		if _, err := compression.Resolve(nil, policy, nil); err != nil {
			return nil, policyError(err)
		}
	}

	s.mu.Lock()
	if r := s.instanceByNameLocked(b.Name); r != nil {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeConflict, "an instance named %q exists (%s)", b.Name, r.inst.Id)
	}
	d := demand{MemoryMiB: int64(b.MemoryMib), VCPUs: b.Vcpus}
	if b.Host != nil {
		d.Host = *b.Host
	}
	hostID, client, err := s.placeLocked(ctx, "create", nil, d)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	now := s.now().UTC()
	id := newID(prefixInstance)
	r := &instanceRec{inst: api.Instance{
		Id: id, Name: b.Name, State: api.InstanceStateCreating, Host: &hostID, Image: b.Image,
		MemoryMib: b.MemoryMib, Vcpus: b.Vcpus, CreatedAt: now, UpdatedAt: now,
	}, policy: policy, busy: opCreate}
	if policy.IsSet() {
		r.inst.SnapshotPolicy = &api.SnapshotPolicy{Compression: policyToAPI(policy)}
	}
	s.instances[id] = r
	s.notifyLocked()
	s.mu.Unlock()

	// The host records the policy in the manifests (the bucket is the
	// system of record); it never resolves precedence with it.
	got, err := client.CreateInstance(ctx, id, hostapi.InstanceSpec{Name: b.Name, Image: b.Image, MemoryMib: b.MemoryMib, Vcpus: b.Vcpus, SnapshotPolicy: r.inst.SnapshotPolicy})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Nothing was created that the server will show; if the host did
		// create it after all, its heartbeat brings it back.
		delete(s.instances, id)
		s.notifyLocked()
		return nil, hostError(hostID, fmt.Errorf("create instance %s on host %s: %w", id, hostID, err))
	}
	r.busy = ""
	r.inst.State = hostState(got.State, api.InstanceStateRunning)
	r.inst.UpdatedAt = s.now().UTC()
	s.notifyLocked()
	return api.CreateInstance201JSONResponse(s.instanceViewLocked(r)), nil
}

// hostState is the state a host answered, or def when it answered none.
func hostState(st, def api.InstanceState) api.InstanceState {
	if st.Valid() {
		return st
	}
	return def
}

func (s *Server) instanceByNameLocked(name string) *instanceRec {
	for _, r := range s.instances {
		if r.inst.Name == name && r.inst.State != api.InstanceStateDeleted {
			return r
		}
	}
	return nil
}

// placeLocked runs placement over the registered hosts and counts the
// decision; sr is the snapshot a restore or fork reads (nil to create).
func (s *Server) placeLocked(ctx context.Context, op string, sr *snapshotRec, d demand) (string, HostClient, error) {
	id, reason, err := place(s.candidatesLocked(sr), d)
	if err != nil {
		code := string(api.ToError(err).Code)
		s.countPlacement(ctx, op, code, "")
		return "", nil, fmt.Errorf("place %s (%s): %w", op, d, err)
	}
	s.countPlacement(ctx, op, "placed", reason)
	s.log.Debug("placed", "op", op, "host", id, "reason", reason, "demand", d.String())
	return id, s.hosts[id].client, nil
}

// lookupInstanceLocked finds an instance for an operation: 404 when
// unknown, 409 invalid_state while another operation runs on it.
func (s *Server) lookupInstanceLocked(id string) (*instanceRec, error) {
	r := s.instances[id]
	if r == nil {
		return nil, fmt.Errorf("instance %s: %w", id, api.ErrNotFound)
	}
	if r.busy != "" {
		return nil, api.NewError(api.ErrorCodeInvalidState, "instance %s: a %s operation is running on it", id, r.busy)
	}
	return r, nil
}

// hostOfLocked returns the client of the host an instance is placed on;
// 503 host_unavailable when that host missed its heartbeats.
func (s *Server) hostOfLocked(r *instanceRec) (string, HostClient, error) {
	if r.inst.Host == nil {
		return "", nil, api.NewError(api.ErrorCodeInvalidState, "instance %s is not placed on any host", r.inst.Id)
	}
	he := s.hosts[*r.inst.Host]
	if he == nil || !s.availableLocked(he) {
		return "", nil, api.NewError(api.ErrorCodeHostUnavailable, "host %s of instance %s is unavailable (missed heartbeats)", *r.inst.Host, r.inst.Id)
	}
	return he.id, he.client, nil
}

func invalidState(op string, r *instanceRec, want ...api.InstanceState) error {
	return api.NewError(api.ErrorCodeInvalidState, "cannot %s instance %s: it is %s (want %v)", op, r.inst.Id, r.inst.State, want)
}

func (h *handlers) ListInstances(_ context.Context, req api.ListInstancesRequestObject) (api.ListInstancesResponseObject, error) {
	s := h.s
	var p fieldProblems
	q := req.Params
	if q.Name != nil {
		p.add("name", api.ValidateName("name", *q.Name))
	}
	validateOptionalID(&p, "host", "host", q.Host)
	if q.State != nil && !q.State.Valid() {
		p.addf("state", "%q is not an instance state", truncate(string(*q.State), 40))
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := api.ListInstances200JSONResponse{Items: []api.Instance{}}
	for _, r := range s.instances {
		v := s.instanceViewLocked(r)
		if (q.Name != nil && v.Name != *q.Name) || (q.State != nil && v.State != *q.State) ||
			(q.Host != nil && (v.Host == nil || *v.Host != *q.Host)) {
			continue
		}
		out.Items = append(out.Items, v)
	}
	newestFirst(out.Items, func(i api.Instance) (time.Time, string) { return i.CreatedAt, i.Id })
	return out, nil
}

func (h *handlers) GetInstance(_ context.Context, req api.GetInstanceRequestObject) (api.GetInstanceResponseObject, error) {
	s := h.s
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.instances[req.Id]
	if r == nil {
		return nil, fmt.Errorf("instance %s: %w", req.Id, api.ErrNotFound)
	}
	return api.GetInstance200JSONResponse(s.instanceViewLocked(r)), nil
}

func (h *handlers) DeleteInstance(ctx context.Context, req api.DeleteInstanceRequestObject) (api.DeleteInstanceResponseObject, error) {
	s := h.s
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	r, err := s.lookupInstanceLocked(req.Id)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	var hostID string
	var client HostClient
	if r.inst.Host != nil {
		if hostID, client, err = s.hostOfLocked(r); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	// Its standby snapshots go with it; named ones stay.
	var standby []string
	for sid, sr := range s.snapshots {
		if sr.snap.InstanceId == r.inst.Id && sr.snap.Standby != nil && *sr.snap.Standby {
			if sr.readers > 0 {
				s.mu.Unlock()
				return nil, api.NewError(api.ErrorCodeConflict, "instance %s: a fork is reading its snapshot %s", r.inst.Id, sid)
			}
			standby = append(standby, sid)
		}
	}
	r.busy = opDelete
	s.mu.Unlock()

	err = nil
	if client != nil {
		err = hostError(hostID, client.DeleteInstance(ctx, r.inst.Id))
	}
	if err == nil {
		err = s.deleteSnapshotData(ctx, standby)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		r.busy = ""
		return nil, fmt.Errorf("delete instance %s: %w", r.inst.Id, err)
	}
	delete(s.instances, r.inst.Id)
	s.deleted[r.inst.Id] = true
	for _, sid := range standby {
		delete(s.snapshots, sid)
	}
	s.notifyLocked()
	return api.DeleteInstance204Response{}, nil
}

// deleteSnapshotData drops snapshots' local copies on their available
// hosts, then their manifests (the hosts first: an upload they cancel
// cannot commit after the manifest is gone).
func (s *Server) deleteSnapshotData(ctx context.Context, ids []string) error {
	for _, sid := range ids {
		s.mu.Lock()
		type target struct {
			id string
			c  HostClient
		}
		var targets []target
		if sr := s.snapshots[sid]; sr != nil {
			for hid := range sr.hosts {
				if he := s.hosts[hid]; he != nil && s.availableLocked(he) {
					targets = append(targets, target{hid, he.client})
				}
			}
		}
		s.mu.Unlock()
		for _, t := range targets {
			if err := t.c.DeleteSnapshot(ctx, sid); err != nil {
				return hostError(t.id, fmt.Errorf("drop snapshot %s on host %s: %w", sid, t.id, err))
			}
		}
		if err := s.manifests.Delete(ctx, sid); err != nil {
			return fmt.Errorf("delete snapshot %s from the bucket: %w", sid, err)
		}
	}
	return nil
}

func (h *handlers) StandbyInstance(ctx context.Context, req api.StandbyInstanceRequestObject) (api.StandbyInstanceResponseObject, error) {
	s := h.s
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	var override *compression.Policy
	if req.Body != nil {
		var err error
		if override, err = compressionInput(req.Body.Compression, api.ErrorCodeInvalidSnapshotCompression, "compression"); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	r, err := s.lookupInstanceLocked(req.Id)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	setting, err := compression.Resolve(override, r.policy, &s.cfg.Snapshot.CompressionDefault)
	if err != nil {
		s.mu.Unlock()
		return nil, policyError(err)
	}
	if r.inst.State != api.InstanceStateRunning {
		s.mu.Unlock()
		return nil, invalidState("put on standby", r, api.InstanceStateRunning)
	}
	hostID, client, err := s.hostOfLocked(r)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	sid := newID(prefixStandby)
	// The host writes the name into the manifest, so a catalog recovered
	// from the bucket gives the snapshot the name this one does.
	name := standbyName(r.inst.Name, r.standbyCount+1)
	r.busy = opStandby
	s.mu.Unlock()

	resp, err := client.Standby(ctx, r.inst.Id, hostapi.StandbyRequest{SnapshotId: sid, Name: &name, Compression: applied(setting)})
	s.mu.Lock()
	r.busy = ""
	if err != nil {
		s.mu.Unlock()
		return nil, hostError(hostID, fmt.Errorf("standby instance %s on host %s: %w", r.inst.Id, hostID, err))
	}
	previous := r.standbySnap
	now := s.now().UTC()
	r.inst.State = hostState(resp.Instance.State, api.InstanceStateStandby)
	r.inst.UpdatedAt = now
	r.inst.Job = resp.Instance.Job
	r.standbyCount++
	r.standbySnap = sid
	sr := newSnapshotRec(resp.Snapshot)
	sr.added = s.now()
	sn := &sr.snap
	sn.Id, sn.InstanceId, sn.Kind, sn.Standby = sid, r.inst.Id, api.SnapshotKindStandby, boolPtr(true)
	sn.Name = name
	sn.MemoryMib, sn.Vcpus = r.inst.MemoryMib, r.inst.Vcpus
	if !sn.State.Valid() {
		sn.State = api.SnapshotStateLocal
	}
	if sn.Compression == nil {
		c := applied(setting)
		sn.Compression = &c
	}
	if sn.CreatedAt.IsZero() {
		sn.CreatedAt = now
	}
	sr.hosts[hostID], sr.cached[hostID] = true, true
	if sn.State == api.SnapshotStateCentral {
		sr.centralSince = s.now()
	}
	s.snapshots[sid] = sr
	s.notifyLocked()
	out := s.instanceViewLocked(r)
	s.mu.Unlock()
	if previous != "" && previous != sid {
		s.dropReplaced(previous)
	}
	return api.StandbyInstance200JSONResponse(out), nil
}

// standbyName is the name of an instance's n-th standby snapshot,
// <instance>-standby-<n>. The instance name is cut to 48 bytes (and a dash
// it then ends in dropped), so the result is a valid Name for any
// instance name and any n below 10^6.
func standbyName(instance string, n int) string {
	if len(instance) > 48 {
		instance = strings.TrimRight(instance[:48], "-")
	}
	return fmt.Sprintf("%s-standby-%d", instance, n)
}

// dropReplaced deletes a standby snapshot the next standby replaced, in
// the background: the standby has answered already, and a failure only
// leaves garbage that the next delete of the instance removes.
func (s *Server) dropReplaced(sid string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.bg, time.Duration(s.cfg.Hosts.CallTimeout))
		defer cancel()
		s.mu.Lock()
		sr := s.snapshots[sid]
		if sr == nil || sr.readers > 0 || sr.busy != "" {
			s.mu.Unlock()
			return
		}
		sr.busy = opDelete
		s.mu.Unlock()
		err := s.deleteSnapshotData(ctx, []string{sid})
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			sr.busy = ""
			s.log.Warn("replaced standby snapshot not deleted", "snapshot", sid, "err", err)
			return
		}
		delete(s.snapshots, sid)
		s.notifyLocked()
	}()
}

func (h *handlers) RestoreInstance(ctx context.Context, req api.RestoreInstanceRequestObject) (api.RestoreInstanceResponseObject, error) {
	s := h.s
	if err := api.ValidateID("instance", req.Id); err != nil {
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
	r, err := s.lookupInstanceLocked(req.Id)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if r.inst.State != api.InstanceStateStandby {
		s.mu.Unlock()
		return nil, invalidState("restore", r, api.InstanceStateStandby)
	}
	sr := s.snapshots[r.standbySnap]
	if sr == nil {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState, "instance %s has no standby snapshot to restore from", r.inst.Id)
	}
	inst, err := s.resumeLocked(ctx, r, sr, host, opRestore)
	if err != nil {
		return nil, err
	}
	return api.RestoreInstance200JSONResponse(inst), nil
}

// resumeLocked restores instance r from snapshot sr on a placed host and
// unlocks s.mu. The instance stays what it was unless the host succeeds.
func (s *Server) resumeLocked(ctx context.Context, r *instanceRec, sr *snapshotRec, host, op string) (api.Instance, error) {
	hostID, client, err := s.placeForSnapshotLocked(ctx, op, sr, demand{MemoryMiB: int64(r.inst.MemoryMib), VCPUs: r.inst.Vcpus, Host: host})
	if err != nil {
		s.mu.Unlock()
		return api.Instance{}, err
	}
	sid := sr.snap.Id
	prevHost := r.inst.Host
	r.busy = opRestore
	r.inst.Host = &hostID
	sr.readers++
	s.mu.Unlock()

	var got api.Instance
	err = s.waitCentralFor(ctx, sid, hostID)
	if err == nil {
		got, err = client.Restore(ctx, r.inst.Id, hostapi.RestoreRequest{SnapshotId: sid,
			Spec: hostapi.InstanceSpec{Name: r.inst.Name, Image: r.inst.Image, MemoryMib: r.inst.MemoryMib, Vcpus: r.inst.Vcpus}})
		err = hostError(hostID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.busy = ""
	sr.readers--
	if err != nil {
		r.inst.Host = prevHost
		return api.Instance{}, fmt.Errorf("%s instance %s from snapshot %s on host %s: %w", op, r.inst.Id, sid, hostID, err)
	}
	r.inst.State = hostState(got.State, api.InstanceStateRunning)
	r.inst.UpdatedAt = s.now().UTC()
	r.inst.Job, r.inst.Error = nil, nil
	sr.cached[hostID] = true
	if prevHost != nil && *prevHost != hostID {
		// The instance moved: its old host still holds a standby record
		// of it, which a later restore placed there would trip over.
		s.forgetMovedLocked(*prevHost, r.inst.Id, sid)
	}
	if sr.hosts[hostID] && !sr.manifest && sr.snap.State != api.SnapshotStateCentral && r.standbySnap == sid {
		// The host resumed the instance from its own standby files,
		// which are the guest's RAM now: it cancelled their upload (a
		// preemption) unless that had just committed. The manifest
		// says which, and is read before answering, so that an
		// abandoned snapshot is gone once the restore has answered.
		delete(sr.hosts, hostID)
		if h := s.hosts[hostID]; h != nil {
			delete(h.uploads, sid) // cancelled: not an upload to wait for
		}
		r.busy = op
		s.mu.Unlock()
		s.settleConsumed(ctx, sid)
		s.mu.Lock()
		r.busy = ""
	}
	s.notifyLocked()
	return s.instanceViewLocked(r), nil
}

// settleConsumed learns what became of snapshot sid after its holder
// resumed an instance from the files: committed (the manifest is in the
// bucket), or abandoned and dropped from the catalog. When the bucket
// cannot be read now, the manifest is read in the background, which
// drops an abandoned snapshot the same way (readManifests).
func (s *Server) settleConsumed(ctx context.Context, sid string) {
	m, err := s.manifests.Manifest(ctx, sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.snapshots[sid]
	if sr == nil || sr.manifest {
		return
	}
	switch {
	case err == nil:
		s.applyManifestLocked(m)
	case errors.Is(err, storage.ErrNotFound):
		s.dropAbandonedLocked(sr)
	default:
		s.log.Warn("manifest not read; trying again", "snapshot", sid, "err", err)
		s.pendingManifests[sid] = true
		s.kickSync()
	}
	s.notifyLocked()
}

// forgetMovedLocked tells host hid, which held instance id on standby
// with snapshot sid, to drop its record now that the instance runs
// elsewhere: as its last heartbeat reported the record, or, without one,
// as the server knows it.
func (s *Server) forgetMovedLocked(hid, id, sid string) {
	h := s.hosts[hid]
	if h == nil {
		return
	}
	in := api.Instance{Id: id, State: api.InstanceStateStandby, SnapshotId: &sid}
	if h.hb != nil {
		for _, rep := range h.hb.Instances {
			if rep.Id == id {
				in = rep
			}
		}
	}
	s.forgetLocked(h, in, "moved")
}

// placeForSnapshotLocked places a restore or fork of sr: the holder of its
// files first. A snapshot that is not central yet (local, uploading) can
// only be read where its files are, or elsewhere after its upload commits.
// The choice, explicitly:
//
//   - no host asked: the holder (the origin), which resumes at once from
//     its local files (a restore there preempts the upload; a fork reads
//     beside it); another host only when no holder has room, and then the
//     request waits for the commit (waitCentralFor);
//   - another host asked: honoured; the request waits for the commit on
//     the server (ctx-aware: the caller's request bounds it; a failed
//     upload ends it with 409 invalid_state), and the host, which only
//     sees the snapshot once its manifest is in the bucket, waits for the
//     manifest too (bounded by its commit_wait) in case the server's view
//     ran ahead of the bucket's;
//   - the only holders unavailable: nothing to wait for, 503
//     host_unavailable.
func (s *Server) placeForSnapshotLocked(ctx context.Context, op string, sr *snapshotRec, d demand) (string, HostClient, error) {
	if sr.snap.State != api.SnapshotStateCentral {
		reachable := false
		for hid := range sr.hosts {
			if s.availableLocked(s.hosts[hid]) {
				reachable = true
			}
		}
		if !reachable {
			if sr.snap.State == api.SnapshotStateError {
				return "", nil, api.NewError(api.ErrorCodeInvalidState, "snapshot %s is not central (upload failed: %s) and no available host holds its files", sr.snap.Id, deref(sr.snap.Error))
			}
			return "", nil, api.NewError(api.ErrorCodeHostUnavailable, "snapshot %s is %s and only on unavailable hosts %v", sr.snap.Id, sr.snap.State, keys(sr.hosts))
		}
	}
	return s.placeLocked(ctx, op, sr, d)
}

// waitCentralFor returns when host can read snapshot sid: at once if it
// holds the files or the snapshot is central, else when the upload
// commits. A failed upload is 409 invalid_state.
func (s *Server) waitCentralFor(ctx context.Context, sid, host string) error {
	for {
		s.mu.Lock()
		sr := s.snapshots[sid]
		if sr == nil {
			s.mu.Unlock()
			return fmt.Errorf("snapshot %s: %w", sid, api.ErrNotFound)
		}
		st, local, ch := sr.snap.State, sr.hosts[host], s.changed
		msg := deref(sr.snap.Error)
		s.mu.Unlock()
		switch {
		case local || st == api.SnapshotStateCentral:
			return nil
		case st == api.SnapshotStateError:
			return api.NewError(api.ErrorCodeInvalidState, "snapshot %s is not central: its upload failed: %s", sid, msg)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for snapshot %s to be committed: %w", sid, context.Cause(ctx))
		case <-ch:
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (h *handlers) ForkInstance(ctx context.Context, req api.ForkInstanceRequestObject) (api.ForkInstanceResponseObject, error) {
	s := h.s
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	if err := validateFork(req.Body); err != nil {
		return nil, err
	}
	s.mu.Lock()
	src := s.instances[req.Id]
	if src == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("instance %s: %w", req.Id, api.ErrNotFound)
	}
	if src.inst.State != api.InstanceStateStandby || src.busy == opRestore || src.busy == opDelete {
		s.mu.Unlock()
		return nil, invalidState("fork", src, api.InstanceStateStandby)
	}
	sr := s.snapshots[src.standbySnap]
	if sr == nil {
		s.mu.Unlock()
		return nil, api.NewError(api.ErrorCodeInvalidState, "instance %s has no standby snapshot to fork", src.inst.Id)
	}
	inst, err := s.forkLocked(ctx, sr, src.inst.Image, src.policy, req.Body)
	if err != nil {
		return nil, err
	}
	return api.ForkInstance201JSONResponse(inst), nil
}

func validateFork(b *api.ForkRequest) error {
	if b == nil {
		return badRequest("request body: required")
	}
	var p fieldProblems
	p.add("name", api.ValidateName("name", b.Name))
	validateOptionalID(&p, "host", "host", b.Host)
	return p.err()
}

// forkLocked starts a new instance from snapshot sr and unlocks s.mu.
func (s *Server) forkLocked(ctx context.Context, sr *snapshotRec, image string, policy *compression.Policy, b *api.ForkRequest) (api.Instance, error) {
	if r := s.instanceByNameLocked(b.Name); r != nil {
		s.mu.Unlock()
		return api.Instance{}, api.NewError(api.ErrorCodeConflict, "an instance named %q exists (%s)", b.Name, r.inst.Id)
	}
	if sr.busy == opDelete {
		s.mu.Unlock()
		return api.Instance{}, api.NewError(api.ErrorCodeInvalidState, "snapshot %s is being deleted", sr.snap.Id)
	}
	d := demand{MemoryMiB: int64(sr.snap.MemoryMib), VCPUs: sr.snap.Vcpus}
	if b.Host != nil {
		d.Host = *b.Host
	}
	hostID, client, err := s.placeForSnapshotLocked(ctx, "fork", sr, d)
	if err != nil {
		s.mu.Unlock()
		return api.Instance{}, err
	}
	now := s.now().UTC()
	id := newID(prefixInstance)
	sid := sr.snap.Id
	r := &instanceRec{inst: api.Instance{
		Id: id, Name: b.Name, State: api.InstanceStateCreating, Host: &hostID, Image: image,
		MemoryMib: sr.snap.MemoryMib, Vcpus: sr.snap.Vcpus, CreatedAt: now, UpdatedAt: now,
	}, policy: policy, forkedFrom: sid, busy: opCreate}
	if policy.IsSet() {
		r.inst.SnapshotPolicy = &api.SnapshotPolicy{Compression: policyToAPI(policy)}
	}
	s.instances[id] = r
	sr.readers++
	s.notifyLocked()
	s.mu.Unlock()

	var got api.Instance
	err = s.waitCentralFor(ctx, sid, hostID)
	if err == nil {
		got, err = client.Fork(ctx, sid, hostapi.ForkRequest{InstanceId: id,
			Spec: hostapi.InstanceSpec{Name: b.Name, Image: image, MemoryMib: sr.snap.MemoryMib, Vcpus: sr.snap.Vcpus}})
		err = hostError(hostID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sr.readers--
	if err != nil {
		delete(s.instances, id)
		s.notifyLocked()
		return api.Instance{}, fmt.Errorf("fork snapshot %s on host %s: %w", sid, hostID, err)
	}
	r.busy = ""
	r.inst.State = hostState(got.State, api.InstanceStateRunning)
	r.inst.UpdatedAt = s.now().UTC()
	sr.cached[hostID] = true
	s.notifyLocked()
	return s.instanceViewLocked(r), nil
}
