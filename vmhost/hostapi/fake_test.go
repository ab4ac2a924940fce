package hostapi

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// fakeManager is an in-memory Manager for the handler unit tests, beside
// the tests against the real manager (real_test.go). Its state machine is
// the manager's in miniature; err, when set, is returned by the next call.
type fakeManager struct {
	mu       sync.Mutex
	insts    map[string]manager.Instance
	jobs     []manager.Job
	next     error // returned once by the next mutating call
	creates  int
	deletes  int
	lastOpts *manager.StandbyOptions // the last standby call's options
	digest   string
	bootFor  time.Duration     // Create waits this long in StateCreating
	named    map[string]string // named snapshot id → its instance (Rollback)
}

func newFake(digest string) *fakeManager {
	return &fakeManager{insts: map[string]manager.Instance{}, digest: digest}
}

var _ Manager = (*fakeManager)(nil)

func (f *fakeManager) takeErr() error {
	err := f.next
	f.next = nil
	return err
}

func (f *fakeManager) Create(ctx context.Context, spec manager.CreateSpec) (manager.Instance, error) {
	f.mu.Lock()
	if err := f.takeErr(); err != nil {
		f.mu.Unlock()
		return manager.Instance{}, err
	}
	if _, ok := f.insts[spec.ID]; ok {
		f.mu.Unlock()
		return manager.Instance{}, fmt.Errorf("create: instance %s: %w", spec.ID, manager.ErrAlreadyExists)
	}
	now := time.Now().UTC()
	in := manager.Instance{ID: spec.ID, Name: spec.Name, State: manager.StateCreating, MemoryMiB: spec.MemoryMiB, VCPUs: spec.VCPUs, ImageDigest: f.digest,
		Image: spec.Image, SnapshotPolicy: spec.SnapshotPolicy, Created: now, Updated: now}
	f.insts[spec.ID] = in
	f.creates++
	f.mu.Unlock()
	select {
	case <-time.After(f.bootFor):
	case <-ctx.Done():
		return manager.Instance{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	in.State = manager.StateRunning
	f.insts[spec.ID] = in
	return in, nil
}

func (f *fakeManager) Get(_ context.Context, id string) (manager.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.insts[id]
	if !ok {
		return manager.Instance{}, fmt.Errorf("instance %s: %w", id, manager.ErrNotFound)
	}
	return in, nil
}

func (f *fakeManager) List(context.Context) ([]manager.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]manager.Instance, 0, len(f.insts))
	for _, in := range f.insts {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeManager) Standby(_ context.Context, id string, opts manager.StandbyOptions) (manager.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastOpts = &opts
	if err := f.takeErr(); err != nil {
		return manager.Instance{}, err
	}
	in, ok := f.insts[id]
	if !ok {
		return manager.Instance{}, fmt.Errorf("standby: instance %s: %w", id, manager.ErrNotFound)
	}
	sid := opts.SnapshotID
	if sid == "" {
		sid = "s-" + id
	}
	if in.State == manager.StateStandby && in.Snapshot != nil && in.Snapshot.ID == sid {
		return in, nil
	}
	if in.State != manager.StateRunning {
		return in, fmt.Errorf("standby instance %s: %w: it is %s", id, manager.ErrInvalidState, in.State)
	}
	set, err := compression.Resolve(opts.Override, nil, nil)
	if opts.Compression != nil {
		set, err = *opts.Compression, nil
	}
	if err != nil {
		return in, err
	}
	in.State = manager.StateStandby
	in.Snapshot = &manager.SnapshotRef{ID: sid, Kind: manager.KindStandby, Storage: manager.StorageLocal, Local: true, Compression: set.String(), Created: time.Now().UTC()}
	f.insts[id] = in
	return in, nil
}

func (f *fakeManager) Restore(_ context.Context, id string) (manager.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeErr(); err != nil {
		return manager.Instance{}, err
	}
	in := f.insts[id]
	if in.State != manager.StateStandby {
		return in, fmt.Errorf("restore instance %s: %w", id, manager.ErrInvalidState)
	}
	in.State, in.RestoredFrom, in.Snapshot = manager.StateRunning, in.Snapshot.ID, nil
	f.insts[id] = in
	return in, nil
}

// Rollback checks what manager.Rollback checks, in its order.
func (f *fakeManager) Rollback(_ context.Context, id, sid string) (manager.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeErr(); err != nil {
		return manager.Instance{}, err
	}
	in, ok := f.insts[id]
	switch {
	case !ok:
		return in, fmt.Errorf("rollback: instance %s: %w", id, manager.ErrNotFound)
	case in.State == manager.StateStandby && in.Snapshot.ID == sid:
		return in, fmt.Errorf("roll back instance %s: %w: its standby snapshot", id, manager.ErrInvalidArgument)
	case in.State == manager.StateStandby && in.Snapshot.Storage != manager.StorageCentral:
		return in, fmt.Errorf("roll back instance %s: %w: would drop a parked VM", id, manager.ErrInvalidState)
	case in.State != manager.StateStandby && in.State != manager.StateStopped:
		return in, fmt.Errorf("roll back instance %s: %w: it is %s", id, manager.ErrInvalidState, in.State)
	}
	owner, ok := f.named[sid]
	if !ok {
		return in, fmt.Errorf("roll back instance %s: snapshot %s: %w", id, sid, manager.ErrNotFound)
	}
	if owner != id {
		return in, fmt.Errorf("roll back instance %s: %w: snapshot of %s", id, manager.ErrInvalidArgument, owner)
	}
	in.State, in.RestoredFrom, in.Snapshot = manager.StateRunning, sid, nil
	f.insts[id] = in
	return in, nil
}

func (f *fakeManager) RestoreSnapshot(_ context.Context, sid string, spec manager.ForkSpec) (manager.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeErr(); err != nil {
		return manager.Instance{}, err
	}
	return manager.Instance{}, fmt.Errorf("restore snapshot: snapshot %s: %w (not committed in central storage)", sid, manager.ErrNotFound)
}

func (f *fakeManager) Fork(_ context.Context, source string, spec manager.ForkSpec) (manager.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeErr(); err != nil {
		return manager.Instance{}, err
	}
	for _, in := range f.insts {
		if in.Snapshot != nil && in.Snapshot.ID == source {
			now := time.Now().UTC()
			fork := manager.Instance{ID: spec.ID, Name: spec.Name, State: manager.StateRunning, MemoryMiB: in.MemoryMiB, VCPUs: in.VCPUs, ImageDigest: f.digest, Created: now, Updated: now}
			f.insts[spec.ID] = fork
			return fork, nil
		}
	}
	return manager.Instance{}, fmt.Errorf("fork %s: snapshot %s: %w", source, source, manager.ErrNotFound)
}

func (f *fakeManager) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeErr(); err != nil {
		return err
	}
	if _, ok := f.insts[id]; !ok {
		return fmt.Errorf("delete: instance %s: %w", id, manager.ErrNotFound)
	}
	delete(f.insts, id)
	f.deletes++
	return nil
}

func (f *fakeManager) Jobs(context.Context) ([]manager.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]manager.Job(nil), f.jobs...), nil
}
