package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestRollback rolls an instance back to a named snapshot through the
// public API, against a real server, a real host process and a real
// guest: refused while the instance runs; once it is on standby and its
// standby snapshot is central, POST /v1/snapshots/{id}/restore resumes
// the guest as it was at snapshot time (same boot, the token of then, not
// the one written after), downloaded from the bucket; the replaced
// standby snapshot leaves the catalog and the named snapshot stays.
func TestRollback(t *testing.T) {
	c := newCluster(t, "host-a")
	ctx := context.Background()
	hostA := "host-a"

	cr, err := c.api.CreateInstanceWithResponse(ctx, api.CreateInstanceRequest{Name: "rb-src", Image: "default", MemoryMib: guestMiB, Vcpus: 1, Host: &hostA})
	must(t, "create", cr, err, http.StatusCreated)
	id := cr.JSON201.Id
	c.waitInstance(id, "Running", running)
	src := c.agentOf(hostA, id)
	atSnapshot := mark(t, src)
	sr, err := c.api.CreateSnapshotWithResponse(ctx, id, api.CreateSnapshotRequest{Name: "rb-1", Kind: api.SnapshotKindStandby})
	must(t, "named snapshot", sr, err, http.StatusCreated)
	named := sr.JSON201.Id
	later := mark(t, src) // the guest goes on: this is not in the snapshot
	c.closeAgents()
	c.waitSnapshotCentral(named)

	rr, err := c.api.RestoreSnapshotWithResponse(ctx, named, api.RestoreRequest{})
	must(t, "roll back a Running instance", rr, err, http.StatusConflict)
	if rr.JSON409 == nil || rr.JSON409.Code != api.ErrorCodeInvalidState {
		t.Fatalf("roll back a Running instance: %s", rr.Body)
	}

	sb, err := c.api.StandbyInstanceWithResponse(ctx, id, api.StandbyRequest{})
	must(t, "standby", sb, err, http.StatusOK)
	replaced := deref(sb.JSON200.SnapshotId)
	c.waitInstance(id, "standby central", standbyCentral)

	rr, err = c.api.RestoreSnapshotWithResponse(ctx, named, api.RestoreRequest{})
	must(t, "rollback", rr, err, http.StatusOK)
	if rr.JSON200.State != api.InstanceStateRunning || deref(rr.JSON200.Host) != hostA {
		t.Fatalf("after the rollback: %s", jsonOf(rr.JSON200))
	}
	a := c.agentOf(hostA, id)
	checkMark(t, a, atSnapshot, "after the rollback")
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if tok, err := a.ReadFile(actx, "/run/token"); err != nil || strings.TrimSpace(string(tok)) == later.token {
		t.Fatalf("after the rollback the guest holds %q (%v): the write made after the snapshot", tok, err)
	}
	c.closeAgents()

	deadline := time.Now().Add(opTimeout)
	for {
		gr, err := c.api.GetSnapshotWithResponse(ctx, replaced)
		if err == nil && gr.StatusCode() == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replaced standby snapshot %s still listed: %v %s", replaced, err, gr.Body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	gn, err := c.api.GetSnapshotWithResponse(ctx, named)
	must(t, "named snapshot after the rollback", gn, err, http.StatusOK)

	dr, err := c.api.DeleteInstanceWithResponse(ctx, id)
	must(t, "delete", dr, err, http.StatusNoContent)
	ds, err := c.api.DeleteSnapshotWithResponse(ctx, named)
	must(t, "delete snapshot", ds, err, http.StatusNoContent)
	c.stopHost(hostA)
}
