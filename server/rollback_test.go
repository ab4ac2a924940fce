package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestRollback: POST /v1/snapshots/{id}/restore of a named snapshot rolls
// its source instance back on the instance's host. Refused with 409
// invalid_state and no host call while the instance runs, while its
// standby snapshot is not central, and on another host than its own;
// then the host restores it from the named snapshot, the instance runs,
// the replaced standby snapshot leaves the catalog (deleted as the next
// standby would delete it) and the named snapshot stays.
func TestRollback(t *testing.T) {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)
	a.keepLocal = true // the instance keeps its host after the commit
	e.addHost("host-b", 4096, 8)
	in := e.create("box", 256, 1, "host-a", nil)
	sr, err := e.c.CreateSnapshotWithResponse(ctx, in.Id, api.CreateSnapshotRequest{Name: "before", Kind: api.SnapshotKindStandby})
	if err != nil || sr.JSON201 == nil {
		t.Fatalf("named snapshot: %v %s", err, sr.Body)
	}
	named := sr.JSON201.Id

	refused := func(what string, host *string, want string) {
		t.Helper()
		before, calls := e.state(), a.callCount()
		r, err := e.c.RestoreSnapshotWithResponse(ctx, named, api.RestoreRequest{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		if r.StatusCode() != 409 || r.JSON409 == nil || r.JSON409.Code != api.ErrorCodeInvalidState || !strings.Contains(r.JSON409.Message, want) {
			t.Errorf("%s: %d %s, want 409 invalid_state saying %q", what, r.StatusCode(), r.Body, want)
		}
		if after := e.state(); after != before {
			t.Errorf("%s changed the state:\n before %s\n after  %s", what, before, after)
		}
		if n := a.callCount(); n != calls {
			t.Errorf("%s reached the host (%d calls)", what, n-calls)
		}
	}
	refused("roll back a Running instance", nil, "Running")
	sby := *e.standby(in.Id, nil).SnapshotId
	refused("roll back over a standby snapshot not central", nil, "would drop a parked VM")

	if _, err := a.commit(ctx, sby); err != nil {
		t.Fatal(err)
	}
	e.heartbeat(a)
	waitFor(t, "standby snapshot central", func() bool { return e.snapshot(sby).State == api.SnapshotStateCentral })
	refused("roll back on another host", ptr("host-b"), "a rollback runs there")

	r, err := e.c.RestoreSnapshotWithResponse(ctx, named, api.RestoreRequest{})
	if err != nil || r.JSON200 == nil {
		t.Fatalf("rollback: %v %d %s", err, r.StatusCode(), r.Body)
	}
	if got := r.JSON200; got.State != api.InstanceStateRunning || got.Host == nil || *got.Host != "host-a" {
		t.Fatalf("after the rollback: %+v", got)
	}
	a.mu.Lock()
	rolled := a.rollbacks
	a.mu.Unlock()
	if rolled != 1 {
		t.Fatalf("host rollbacks: %d, want 1", rolled)
	}
	waitFor(t, "the replaced standby snapshot deleted", func() bool {
		g, err := e.c.GetSnapshotWithResponse(ctx, sby)
		return err == nil && g.StatusCode() == 404
	})
	if _, err := a.repo.Manifest(ctx, sby); err == nil {
		t.Errorf("the replaced standby snapshot's manifest is still in the bucket")
	}
	if s := e.snapshot(named); s.InstanceId != in.Id {
		t.Fatalf("named snapshot after the rollback: %+v", s)
	}
	// The instance runs again: a standby parks it anew.
	if got := e.standby(in.Id, nil); got.State != api.InstanceStateStandby || *got.SnapshotId == sby {
		t.Fatalf("standby after the rollback: %+v", got)
	}
}
