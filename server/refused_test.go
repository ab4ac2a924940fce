package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestRefusedUpFront: what hosts cannot do, or must not, is refused by
// the server with 409 invalid_state and a message that says why, before
// any host is called and without a change: a named snapshot of kind
// standby of a Standby instance (a host snapshots a running guest; the
// standby snapshot holds the parked memory already), and rolling an
// instance back to a named snapshot while its standby snapshot is not
// central (the rollback would drop a parked VM that exists only on its
// host; rollback_test.go has the rollback itself). A stopped snapshot of
// a Standby instance, and a restore through the instance's own standby
// snapshot, still work.
func TestRefusedUpFront(t *testing.T) {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)
	in := e.create("box", 256, 1, "host-a", nil)
	sr, err := e.c.CreateSnapshotWithResponse(ctx, in.Id, api.CreateSnapshotRequest{Name: "before", Kind: api.SnapshotKindStandby})
	if err != nil || sr.JSON201 == nil {
		t.Fatalf("named snapshot of the running instance: %v %s", err, sr.Body)
	}
	named := sr.JSON201.Id
	sby := *e.standby(in.Id, nil).SnapshotId

	refused := func(what string, code int, body []byte, e409 *api.Error, want string) {
		t.Helper()
		if code != 409 || e409 == nil || e409.Code != api.ErrorCodeInvalidState || !strings.Contains(e409.Message, want) {
			t.Errorf("%s: %d %s, want 409 invalid_state saying %q", what, code, body, want)
		}
	}
	before, calls := e.state(), a.callCount()
	r, err := e.c.CreateSnapshotWithResponse(ctx, in.Id, api.CreateSnapshotRequest{Name: "again", Kind: api.SnapshotKindStandby})
	if err != nil {
		t.Fatal(err)
	}
	refused("standby snapshot of a Standby instance", r.StatusCode(), r.Body, r.JSON409, "it is Standby")
	rb, err := e.c.RestoreSnapshotWithResponse(ctx, named, api.RestoreRequest{})
	if err != nil {
		t.Fatal(err)
	}
	refused("roll back over a standby snapshot not central", rb.StatusCode(), rb.Body, rb.JSON409, "would drop a parked VM")
	if after := e.state(); after != before {
		t.Errorf("refused requests changed the state:\n before %s\n after  %s", before, after)
	}
	if n := a.callCount(); n != calls {
		t.Errorf("refused requests reached the host (%d calls)", n-calls)
	}

	if r, err := e.c.CreateSnapshotWithResponse(ctx, in.Id, api.CreateSnapshotRequest{Name: "cfg", Kind: api.SnapshotKindStopped}); err != nil || r.JSON201 == nil {
		t.Fatalf("stopped snapshot of a Standby instance: %v %s", err, r.Body)
	}
	ok, err := e.c.RestoreSnapshotWithResponse(ctx, sby, api.RestoreRequest{})
	if err != nil || ok.JSON200 == nil || ok.JSON200.State != api.InstanceStateRunning {
		t.Fatalf("restore through its own standby snapshot: %v %s", err, ok.Body)
	}
}
