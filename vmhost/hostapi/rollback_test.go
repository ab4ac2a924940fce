package hostapi

import (
	"context"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// TestRollbackHandler: a restore of an instance held here from another
// snapshot than its standby one is a rollback (manager.Rollback), whose
// refusals keep their meaning on the wire (409 invalid_state, 400, 404);
// a rollback runs the instance, and a retry answers it.
func TestRollbackHandler(t *testing.T) {
	ctx := context.Background()
	f := newFake(testDigest)
	now := time.Now().UTC()
	f.insts["i-sb"] = manager.Instance{ID: "i-sb", Name: "box", State: manager.StateStandby, MemoryMiB: 128, VCPUs: 1, ImageDigest: testDigest, Created: now, Updated: now,
		Snapshot: &manager.SnapshotRef{ID: "s-sb", Kind: manager.KindStandby, Storage: manager.StorageUploading, Local: true}}
	f.insts["i-st"] = manager.Instance{ID: "i-st", Name: "box", State: manager.StateStopped, MemoryMiB: 128, VCPUs: 1, ImageDigest: testDigest, Created: now, Updated: now}
	f.named = map[string]string{"n-sb": "i-sb", "n-st": "i-st"}
	_, _, c := serve(t, f, Options{Capacity: api.Resources{MemoryMib: 1024, Vcpus: 4}})
	restore := func(id, sid string) *hostapi.RestoreHostInstanceResponse {
		t.Helper()
		rr, err := c.RestoreHostInstanceWithResponse(ctx, id, hostapi.RestoreRequest{SnapshotId: sid, Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}

	rr := restore("i-sb", "n-sb")
	wantCode(t, "rollback over a standby not central", rr.StatusCode(), rr.Body, api.ErrInvalidState)
	rr = restore("i-st", "n-sb")
	wantCode(t, "rollback to another instance's snapshot", rr.StatusCode(), rr.Body, api.ErrInvalidRequest)
	rr = restore("i-st", "n-none")
	wantCode(t, "rollback to an unknown snapshot", rr.StatusCode(), rr.Body, api.ErrNotFound)
	if in, _ := f.Get(ctx, "i-st"); in.State != manager.StateStopped {
		t.Fatalf("refused rollbacks changed the instance: %+v", in)
	}

	for i := range 2 {
		rr = restore("i-st", "n-st")
		if rr.JSON200 == nil || rr.JSON200.State != api.InstanceStateRunning {
			t.Fatalf("rollback %d: %d %s", i, rr.StatusCode(), rr.Body)
		}
	}
	if in, _ := f.Get(ctx, "i-st"); in.RestoredFrom != "n-st" {
		t.Fatalf("after the rollback: %+v", in)
	}

	// Once the standby snapshot is central, the standby instance rolls back.
	f.mu.Lock()
	in := f.insts["i-sb"]
	in.Snapshot.Storage, in.Snapshot.Local = manager.StorageCentral, false
	f.insts["i-sb"] = in
	f.mu.Unlock()
	rr = restore("i-sb", "n-sb")
	if rr.JSON200 == nil || rr.JSON200.State != api.InstanceStateRunning {
		t.Fatalf("rollback of a central standby: %d %s", rr.StatusCode(), rr.Body)
	}
}
