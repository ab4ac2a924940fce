package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/server"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// fakeHost is a host daemon in memory: the host API's state machine over
// maps, and a real snapshot.Repo on the test's store, so that committing a
// snapshot writes a real manifest. Tests inject failures with fail and
// unreachable.
type fakeHost struct {
	id   string
	repo *snapshot.Repo
	dir  string

	mu        sync.Mutex
	capacity  api.Resources
	instances map[string]*api.Instance
	snapshots map[string]*api.Snapshot
	vms       map[string]json.RawMessage   // snapshot id -> VM record
	labels    map[string]map[string]string // snapshot id -> manifest labels
	// legacy: write manifests as hosts did before labels (no labels, no
	// image or policy in the VM record): readers fall back to id prefixes.
	legacy bool
	// keepLocal keeps a snapshot's files after its commit; by default
	// the fake drops them, as hosts do (snapshot.keep_local_after_commit
	// false): the snapshot leaves the heartbeat, and the instance shows
	// storage central and no host.
	keepLocal   bool
	jobs        map[string]api.Job // running upload jobs by snapshot id
	calls       []string
	standbys    []hostapi.StandbyRequest
	snapReqs    []hostapi.SnapshotRequest
	fail        map[string]error // by method name: returned once
	unreachable bool
	central     func(id string) bool // is the snapshot committed (shared "bucket")
	rollbacks   int                  // restores that rolled an instance back to a named snapshot
}

var _ server.HostClient = (*fakeHost)(nil)

var errUnreachable = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func newFakeHost(id string, mem int64, vcpus int32, repo *snapshot.Repo, dir string) *fakeHost {
	return &fakeHost{id: id, repo: repo, dir: dir, capacity: api.Resources{MemoryMib: mem, Vcpus: vcpus},
		instances: map[string]*api.Instance{}, snapshots: map[string]*api.Snapshot{}, vms: map[string]json.RawMessage{}, labels: map[string]map[string]string{},
		fail: map[string]error{}, jobs: map[string]api.Job{}}
}

// enter records a call and returns an injected failure, if any.
func (f *fakeHost) enter(op string) error {
	f.calls = append(f.calls, op)
	if f.unreachable {
		return fmt.Errorf("host %s: %w", f.id, errUnreachable)
	}
	if err, ok := f.fail[op]; ok {
		delete(f.fail, op)
		return fmt.Errorf("host %s: %s: %w", f.id, op, err)
	}
	return nil
}

func (f *fakeHost) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeHost) newInstance(id string, spec hostapi.InstanceSpec, st api.InstanceState) *api.Instance {
	now := time.Now().UTC()
	host := f.id
	in := &api.Instance{Id: id, Name: spec.Name, Image: spec.Image, MemoryMib: spec.MemoryMib, Vcpus: spec.Vcpus,
		State: st, Host: &host, CreatedAt: now, UpdatedAt: now, SnapshotPolicy: spec.SnapshotPolicy}
	f.instances[id] = in
	return in
}

func (f *fakeHost) CreateInstance(_ context.Context, id string, spec hostapi.InstanceSpec) (api.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("CreateInstance"); err != nil {
		return api.Instance{}, err
	}
	if in, ok := f.instances[id]; ok {
		return *in, nil
	}
	return *f.newInstance(id, spec, api.InstanceStateRunning), nil
}

func (f *fakeHost) GetInstance(_ context.Context, id string) (api.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetInstance"); err != nil {
		return api.Instance{}, err
	}
	in, ok := f.instances[id]
	if !ok {
		return api.Instance{}, api.ErrNotFound
	}
	return *in, nil
}

func (f *fakeHost) ListInstances(context.Context) ([]api.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ListInstances"); err != nil {
		return nil, err
	}
	var out []api.Instance
	for _, in := range f.instances {
		out = append(out, *in)
	}
	return out, nil
}

func (f *fakeHost) DeleteInstance(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeleteInstance"); err != nil {
		return err
	}
	delete(f.instances, id)
	return nil
}

func (f *fakeHost) Standby(_ context.Context, id string, req hostapi.StandbyRequest) (hostapi.StandbyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Standby"); err != nil {
		return hostapi.StandbyResponse{}, err
	}
	in, ok := f.instances[id]
	if !ok {
		return hostapi.StandbyResponse{}, fmt.Errorf("instance %s: %w", id, api.ErrNotFound)
	}
	if in.State != api.InstanceStateRunning {
		return hostapi.StandbyResponse{}, api.NewError(api.ErrorCodeInvalidState, "instance %s is %s", id, in.State)
	}
	f.standbys = append(f.standbys, req)
	in.State = api.InstanceStateStandby
	sid := req.SnapshotId
	in.SnapshotId = &sid
	in.Storage = ptr(api.SnapshotStateLocal)
	c := req.Compression
	sn := &api.Snapshot{Id: sid, InstanceId: id, Kind: api.SnapshotKindStandby, State: api.SnapshotStateLocal,
		Compression: &c, RawBytes: int64(in.MemoryMib) << 20, MemoryMib: in.MemoryMib, Vcpus: in.Vcpus, CreatedAt: time.Now().UTC()}
	f.snapshots[sid] = sn
	f.vms[sid] = f.vmJSON(in)
	var name string
	if req.Name != nil {
		name = *req.Name
	}
	f.labels[sid] = f.manifestLabels(in, "standby", name)
	return hostapi.StandbyResponse{Instance: *in, Snapshot: *sn}, nil
}

// vmJSON is the VM record as vmhost/manager writes it (docs/format.md).
func (f *fakeHost) vmJSON(in *api.Instance) json.RawMessage {
	rec := map[string]any{"instance_id": in.Id, "name": in.Name, "memory_mib": in.MemoryMib, "vcpus": in.Vcpus}
	if !f.legacy {
		rec["image"] = in.Image
		if in.SnapshotPolicy != nil && in.SnapshotPolicy.Compression != nil {
			rec["snapshot_policy"] = in.SnapshotPolicy.Compression
		}
	}
	b, _ := json.Marshal(rec)
	return b
}

// manifestLabels are the labels vmhost/manager writes (docs/format.md).
func (f *fakeHost) manifestLabels(in *api.Instance, role, name string) map[string]string {
	if f.legacy {
		return nil
	}
	l := map[string]string{"hangar.role": role, "hangar.instance.name": in.Name, "hangar.image": in.Image}
	if name != "" {
		l["hangar.snapshot.name"] = name
	}
	return l
}

func (f *fakeHost) Restore(_ context.Context, id string, req hostapi.RestoreRequest) (api.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Restore"); err != nil {
		return api.Instance{}, err
	}
	_, local := f.snapshots[req.SnapshotId]
	if !local && (f.central == nil || !f.central(req.SnapshotId)) {
		return api.Instance{}, api.NewError(api.ErrorCodeInvalidState, "snapshot %s is neither local nor central", req.SnapshotId)
	}
	in, ok := f.instances[id]
	if ok && in.State == api.InstanceStateRunning {
		return api.Instance{}, api.NewError(api.ErrorCodeInvalidState, "instance %s is Running", id)
	}
	if ok && in.State == api.InstanceStateStandby && in.SnapshotId != nil && *in.SnapshotId != req.SnapshotId {
		if !f.tookNamedLocked(req.SnapshotId) {
			return api.Instance{}, api.NewError(api.ErrorCodeInvalidState, "instance %s: its standby snapshot here is %s, not %s", id, *in.SnapshotId, req.SnapshotId)
		}
		// A rollback (manager.Rollback): never over a standby snapshot
		// that is not central; its files, if kept, go.
		if f.central == nil || !f.central(*in.SnapshotId) {
			return api.Instance{}, api.NewError(api.ErrorCodeInvalidState, "roll back instance %s: its standby snapshot %s is not central", id, *in.SnapshotId)
		}
		delete(f.snapshots, *in.SnapshotId)
		f.rollbacks++
	} else if ok && in.State == api.InstanceStateStopped && f.tookNamedLocked(req.SnapshotId) {
		f.rollbacks++
	}
	if !ok {
		in = f.newInstance(id, req.Spec, api.InstanceStateRunning)
	}
	if local && ok && in.State == api.InstanceStateStandby {
		// As vmhost: the standby files become the guest's RAM, and an
		// upload still running is cancelled (a preemption).
		delete(f.snapshots, req.SnapshotId)
		delete(f.jobs, req.SnapshotId)
	}
	in.State = api.InstanceStateRunning
	in.SnapshotId, in.Storage, in.Job = nil, nil, nil
	in.Host = ptr(f.id)
	return *in, nil
}

// tookNamedLocked reports whether this host took named snapshot sid.
func (f *fakeHost) tookNamedLocked(sid string) bool {
	for _, r := range f.snapReqs {
		if r.SnapshotId == sid {
			return true
		}
	}
	return false
}

func (f *fakeHost) CreateSnapshot(_ context.Context, id string, req hostapi.SnapshotRequest) (api.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("CreateSnapshot"); err != nil {
		return api.Snapshot{}, err
	}
	in, ok := f.instances[id]
	if !ok {
		return api.Snapshot{}, fmt.Errorf("instance %s: %w", id, api.ErrNotFound)
	}
	f.snapReqs = append(f.snapReqs, req)
	sn := &api.Snapshot{Id: req.SnapshotId, Name: req.Name, InstanceId: id, Kind: req.Kind, State: api.SnapshotStateLocal,
		Compression: req.Compression, RawBytes: int64(in.MemoryMib) << 20, MemoryMib: in.MemoryMib, Vcpus: in.Vcpus, CreatedAt: time.Now().UTC()}
	f.snapshots[req.SnapshotId] = sn
	f.vms[req.SnapshotId] = f.vmJSON(in)
	f.labels[req.SnapshotId] = f.manifestLabels(in, "named", req.Name)
	return *sn, nil
}

func (f *fakeHost) GetSnapshot(_ context.Context, id string) (api.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetSnapshot"); err != nil {
		return api.Snapshot{}, err
	}
	sn, ok := f.snapshots[id]
	if !ok {
		return api.Snapshot{}, api.ErrNotFound
	}
	return *sn, nil
}

func (f *fakeHost) ListSnapshots(context.Context) ([]api.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ListSnapshots"); err != nil {
		return nil, err
	}
	var out []api.Snapshot
	for _, sn := range f.snapshots {
		out = append(out, *sn)
	}
	return out, nil
}

func (f *fakeHost) DeleteSnapshot(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeleteSnapshot"); err != nil {
		return err
	}
	delete(f.snapshots, id)
	return nil
}

func (f *fakeHost) Fork(_ context.Context, id string, req hostapi.ForkRequest) (api.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Fork"); err != nil {
		return api.Instance{}, err
	}
	_, local := f.snapshots[id]
	if !local && (f.central == nil || !f.central(id)) {
		return api.Instance{}, api.NewError(api.ErrorCodeInvalidState, "snapshot %s is neither local nor central", id)
	}
	if in, ok := f.instances[req.InstanceId]; ok {
		return *in, nil
	}
	in := f.newInstance(req.InstanceId, req.Spec, api.InstanceStateRunning)
	sid := id
	in.SnapshotId = &sid
	return *in, nil
}

func (f *fakeHost) Jobs(context.Context) ([]api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return nil, f.enter("Jobs")
}

// commit uploads snapshot sid for real (a small memory file and device
// state through snapshot.Repo.Upload, with the compression the server
// sent) and marks it central, as the host's upload job would.
func (f *fakeHost) commit(ctx context.Context, sid string) (*snapshot.Manifest, error) {
	f.mu.Lock()
	sn, ok := f.snapshots[sid]
	if !ok {
		f.mu.Unlock()
		return nil, fmt.Errorf("no local snapshot %s", sid)
	}
	info := snapshot.Info{ID: sid, SourceInstance: sn.InstanceId, Kind: string(sn.Kind), VM: f.vms[sid], Labels: f.labels[sid],
		ImageDigest: "sha256:" + fmt.Sprintf("%064x", 1), Compression: compression.Setting{Algorithm: compression.None}}
	if sn.Compression != nil {
		info.Compression = compression.Setting{Algorithm: compression.Algorithm(sn.Compression.Algorithm), Level: sn.Compression.Level}
	}
	f.mu.Unlock()

	dir := filepath.Join(f.dir, sid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	mem := make([]byte, 3<<20)
	memtest.Fill(mem, uint64(len(sid)), 0.5)
	if err := os.WriteFile(filepath.Join(dir, "memory"), mem, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "device-state"), []byte("device state of "+sid), 0o644); err != nil {
		return nil, err
	}
	files := []snapshot.FileSource{{Name: "memory", Path: filepath.Join(dir, "memory")}}
	if sn.Kind == api.SnapshotKindStopped {
		files = []snapshot.FileSource{{Name: "device-state", Path: filepath.Join(dir, "device-state")}}
	} else {
		files = append(files, snapshot.FileSource{Name: "device-state", Path: filepath.Join(dir, "device-state")})
	}
	m, err := f.repo.Upload(ctx, info, files, snapshot.UploadOptions{ChunkSize: 1 << 20})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sn.State, sn.Progress = api.SnapshotStateCentral, nil
	delete(f.jobs, sid)
	for _, in := range f.instances {
		if in.SnapshotId != nil && *in.SnapshotId == sid && in.State == api.InstanceStateStandby {
			in.Storage, in.Job = ptr(api.SnapshotStateCentral), nil
			if !f.keepLocal {
				in.Host = nil
			}
		}
	}
	if !f.keepLocal {
		delete(f.snapshots, sid)
	}
	return m, nil
}

// uploading marks snapshot sid uploading with an upload job at fraction
// done, as a host reports a running upload.
func (f *fakeHost) uploading(sid string, done float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sn := f.snapshots[sid]
	total := sn.RawBytes
	p := &api.Progress{Done: done, RawBytes: int64(done * float64(total)), TotalBytes: total}
	sn.State, sn.Progress = api.SnapshotStateUploading, p
	j := api.Job{Id: sid, Kind: api.JobKindUpload, InstanceId: ptr(sn.InstanceId), SnapshotId: ptr(sid), State: api.JobStateRunning,
		Progress: p, StartedAt: time.Now().UTC()}
	f.jobs[sid] = j
	if in := f.instances[sn.InstanceId]; in != nil && in.SnapshotId != nil && *in.SnapshotId == sid {
		in.Storage, in.Job = ptr(api.SnapshotStateUploading), &j
	}
}

// heartbeat is what the host would send now.
func (f *fakeHost) heartbeat() hostapi.Heartbeat {
	f.mu.Lock()
	defer f.mu.Unlock()
	hb := hostapi.Heartbeat{Capacity: f.capacity, Instances: []api.Instance{}, Snapshots: []api.Snapshot{}, Jobs: []api.Job{},
		Cache: hostapi.CacheSummary{Chunks: 1, Bytes: 1 << 20, LimitBytes: 1 << 30}, Health: hostapi.HostHealth{Status: hostapi.HostHealthStatusOk},
		SentAt: time.Now().UTC()}
	for _, in := range f.instances {
		hb.Instances = append(hb.Instances, *in)
		if in.State == api.InstanceStateRunning {
			hb.Allocated.MemoryMib += int64(in.MemoryMib)
			hb.Allocated.Vcpus += in.Vcpus
		}
	}
	for _, sn := range f.snapshots {
		hb.Snapshots = append(hb.Snapshots, *sn)
	}
	for _, j := range f.jobs {
		hb.Jobs = append(hb.Jobs, j)
	}
	return hb
}
