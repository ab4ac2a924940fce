package hostapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// fakeNamed adds named snapshots to fakeManager, with the manager's
// retry rule (same id, instance, name and kind) and its sentinels.
type fakeNamed struct {
	*fakeManager
	snaps   map[string]manager.NamedSnapshot
	specs   []manager.SnapshotSpec
	deleted []string
}

var _ NamedSnapshots = (*fakeNamed)(nil)

func (f *fakeNamed) Snapshot(_ context.Context, id string, spec manager.SnapshotSpec) (manager.NamedSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, spec)
	in, ok := f.insts[id]
	if !ok {
		return manager.NamedSnapshot{}, fmt.Errorf("instance %s: %w", id, manager.ErrNotFound)
	}
	if n, ok := f.snaps[spec.SnapshotID]; ok {
		if n.InstanceID != id || n.Name != spec.Name || n.Kind != spec.Kind {
			return manager.NamedSnapshot{}, fmt.Errorf("snapshot %s: %w", spec.SnapshotID, manager.ErrAlreadyExists)
		}
		return n, nil
	}
	if spec.Kind == manager.KindStandby && in.State != manager.StateRunning {
		return manager.NamedSnapshot{}, fmt.Errorf("instance %s: %w", id, manager.ErrInvalidState)
	}
	c := "none"
	if spec.Compression != nil {
		c = spec.Compression.String()
	}
	n := manager.NamedSnapshot{
		SnapshotRef: manager.SnapshotRef{ID: spec.SnapshotID, Kind: spec.Kind, Storage: manager.StorageLocal, Local: true, Compression: c, Created: time.Now().UTC()},
		Name:        spec.Name, InstanceID: id, InstanceName: in.Name, MemoryMiB: in.MemoryMiB, VCPUs: in.VCPUs, ImageDigest: in.ImageDigest,
	}
	f.snaps[n.ID] = n
	return n, nil
}

func (f *fakeNamed) Snapshots(_ context.Context, id string) ([]manager.NamedSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []manager.NamedSnapshot
	for _, n := range f.snaps {
		if id == "" || n.InstanceID == id {
			out = append(out, n)
		}
	}
	return out, nil
}

func (f *fakeNamed) GetSnapshot(_ context.Context, sid string) (manager.NamedSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.snaps[sid]
	if !ok {
		return n, fmt.Errorf("snapshot %s: %w", sid, manager.ErrNotFound)
	}
	return n, nil
}

func (f *fakeNamed) DeleteSnapshot(_ context.Context, sid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.snaps[sid]; !ok {
		return fmt.Errorf("snapshot %s: %w", sid, manager.ErrNotFound)
	}
	delete(f.snaps, sid)
	f.deleted = append(f.deleted, sid)
	return nil
}

// TestNamedSnapshots: createHostSnapshot checks its body (kind, name,
// compression required for standby and refused for stopped) before the
// manager sees it, passes the server's resolved compression through,
// answers 201 then 200 for a retry, 409 for a reused id; the snapshot is
// listed, read and deleted as a named one (standby false, its own name,
// no compression when stopped); a manager without named snapshots
// answers 409 invalid_state.
func TestNamedSnapshots(t *testing.T) {
	f := &fakeNamed{fakeManager: newFake(testDigest), snaps: map[string]manager.NamedSnapshot{}}
	s, _, c := serve(t, f, Options{Capacity: api.Resources{MemoryMib: 1024, Vcpus: 4}})
	ctx := context.Background()
	if r, _ := c.CreateHostInstanceWithResponse(ctx, "i-1", spec); r.StatusCode() != 201 {
		t.Fatalf("create: %s", r.Body)
	}
	zstd3 := &api.AppliedCompression{Algorithm: "zstd", Level: 3}
	for name, tc := range map[string]struct {
		body hostapi.SnapshotRequest
		want *api.Error
	}{
		"bad kind":           {hostapi.SnapshotRequest{SnapshotId: "n-1", Name: "x", Kind: "paused"}, api.ErrInvalidRequest},
		"standby without":    {hostapi.SnapshotRequest{SnapshotId: "n-1", Name: "x", Kind: api.SnapshotKindStandby}, api.ErrInvalidRequest},
		"stopped with":       {hostapi.SnapshotRequest{SnapshotId: "n-1", Name: "x", Kind: api.SnapshotKindStopped, Compression: zstd3}, api.ErrInvalidRequest},
		"empty name":         {hostapi.SnapshotRequest{SnapshotId: "n-1", Kind: api.SnapshotKindStopped}, api.ErrInvalidRequest},
		"bad id":             {hostapi.SnapshotRequest{SnapshotId: "N_1", Name: "x", Kind: api.SnapshotKindStopped}, api.ErrInvalidRequest},
		"level out of range": {hostapi.SnapshotRequest{SnapshotId: "n-1", Name: "x", Kind: api.SnapshotKindStandby, Compression: &api.AppliedCompression{Algorithm: "zstd", Level: 40}}, api.ErrInvalidSnapshotCompression},
		"unknown instance":   {hostapi.SnapshotRequest{SnapshotId: "n-1", Name: "x", Kind: api.SnapshotKindStopped}, api.ErrNotFound},
	} {
		id := "i-1"
		if name == "unknown instance" {
			id = "i-none"
		}
		r, err := c.CreateHostSnapshotWithResponse(ctx, id, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, name, r.StatusCode(), r.Body, tc.want)
	}
	if len(f.specs) != 1 { // only the unknown instance reached the manager
		t.Fatalf("refused bodies reached the manager: %+v", f.specs)
	}

	req := hostapi.SnapshotRequest{SnapshotId: "n-1", Name: "first", Kind: api.SnapshotKindStandby, Compression: zstd3}
	r, err := c.CreateHostSnapshotWithResponse(ctx, "i-1", req)
	if err != nil || r.JSON201 == nil {
		t.Fatalf("create snapshot: %v %d %s", err, r.StatusCode(), r.Body)
	}
	sn := r.JSON201
	if sn.Id != "n-1" || sn.Name != "first" || sn.Kind != api.SnapshotKindStandby || sn.InstanceId != "i-1" || sn.Standby == nil || *sn.Standby ||
		sn.State != api.SnapshotStateLocal || sn.Compression == nil || sn.Compression.Algorithm != "zstd" || sn.Compression.Level != 3 ||
		sn.Hosts == nil || len(*sn.Hosts) != 1 || (*sn.Hosts)[0] != "host-a" {
		t.Fatalf("created snapshot %s", r.Body)
	}
	if got := f.specs[len(f.specs)-1]; got.Compression == nil || got.Compression.String() != "zstd:3" || got.Override != nil {
		t.Fatalf("manager got %+v, want the server's zstd:3 as is", got)
	}
	if r, _ := c.CreateHostSnapshotWithResponse(ctx, "i-1", req); r.JSON200 == nil || r.JSON200.Id != "n-1" {
		t.Fatalf("retry: %d %s", r.StatusCode(), r.Body)
	}
	other := req
	other.Name = "second"
	r, _ = c.CreateHostSnapshotWithResponse(ctx, "i-1", other)
	wantCode(t, "reused snapshot id", r.StatusCode(), r.Body, api.ErrConflict)

	r, _ = c.CreateHostSnapshotWithResponse(ctx, "i-1", hostapi.SnapshotRequest{SnapshotId: "n-2", Name: "cfg", Kind: api.SnapshotKindStopped})
	if r.JSON201 == nil || r.JSON201.Kind != api.SnapshotKindStopped || r.JSON201.Compression != nil {
		t.Fatalf("stopped snapshot: %d %s", r.StatusCode(), r.Body)
	}

	lr, _ := c.ListHostSnapshotsWithResponse(ctx)
	if lr.JSON200 == nil || len(lr.JSON200.Items) != 2 {
		t.Fatalf("list: %s", lr.Body)
	}
	hb, err := s.LocalNamedSnapshots(ctx)
	if err != nil || len(hb) != 2 {
		t.Fatalf("heartbeat's named snapshots: %+v, %v", hb, err)
	}
	rep, err := s.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]string{}
	for _, sn := range rep.Snapshots {
		reported[sn.Id] = sn.Name
	}
	if len(rep.Snapshots) != 2 || reported["n-1"] != "first" || reported["n-2"] != "cfg" {
		t.Fatalf("heartbeat snapshots %+v, want the named n-1 and n-2", rep.Snapshots)
	}
	gr, _ := c.GetHostSnapshotWithResponse(ctx, "n-2")
	if gr.JSON200 == nil || gr.JSON200.Name != "cfg" || gr.JSON200.Standby == nil || *gr.JSON200.Standby {
		t.Fatalf("get: %d %s", gr.StatusCode(), gr.Body)
	}
	for range 2 { // absent the second time: still 204
		if dr, _ := c.DeleteHostSnapshotWithResponse(ctx, "n-2"); dr.StatusCode() != 204 {
			t.Fatalf("delete: %d %s", dr.StatusCode(), dr.Body)
		}
	}
	if len(f.deleted) != 1 || f.deleted[0] != "n-2" {
		t.Fatalf("manager deletes: %v", f.deleted)
	}
	gr, _ = c.GetHostSnapshotWithResponse(ctx, "n-2")
	wantCode(t, "get deleted", gr.StatusCode(), gr.Body, api.ErrNotFound)

	// The plain fake has no named snapshots.
	_, _, plain := serve(t, newFake(testDigest), Options{})
	if r, _ := plain.CreateHostInstanceWithResponse(ctx, "i-1", spec); r.StatusCode() != 201 {
		t.Fatalf("create: %s", r.Body)
	}
	r, _ = plain.CreateHostSnapshotWithResponse(ctx, "i-1", req)
	wantCode(t, "manager without named snapshots", r.StatusCode(), r.Body, api.ErrInvalidState)
}
