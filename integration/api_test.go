package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestAPIFlow drives the whole life of an instance through the generated
// Go client against a real server and two real host processes: create on
// host-a, standby until central, restore lands on host-b with the guest's
// RAM intact, standby on host-b, fork on host-a (a copy of that memory),
// list, delete; then the hosts stop and leave no QEMU behind.
func TestAPIFlow(t *testing.T) {
	c := newCluster(t, "host-a", "host-b")
	ctx := context.Background()
	hostA, hostB := "host-a", "host-b"

	cr, err := c.api.CreateInstanceWithResponse(ctx, api.CreateInstanceRequest{Name: "web-1", Image: "default", MemoryMib: guestMiB, Vcpus: 1, Host: &hostA})
	must(t, "create", cr, err, http.StatusCreated)
	id := cr.JSON201.Id
	in := c.waitInstance(id, "Running", running)
	if deref(in.Host) != hostA {
		t.Fatalf("created on %q, want %s", deref(in.Host), hostA)
	}
	m := mark(t, c.agentOf(hostA, id))

	// An empty body is a standby with no override (server default zstd).
	sr, err := c.api.StandbyInstanceWithBodyWithResponse(ctx, id, "application/json", strings.NewReader(""))
	must(t, "standby", sr, err, http.StatusOK)
	if sr.JSON200.State != api.InstanceStateStandby || sr.JSON200.SnapshotId == nil {
		t.Fatalf("standby answered %s", jsonOf(sr.JSON200))
	}
	snap1 := *sr.JSON200.SnapshotId
	c.waitInstance(id, "Standby and central", standbyCentral)
	s1 := c.waitSnapshotCentral(snap1)
	if s1.Compression == nil || s1.Compression.Algorithm != api.AlgorithmZstd || s1.Kind != api.SnapshotKindStandby || s1.InstanceId != id ||
		s1.RawBytes < guestMiB<<20 || s1.NonZeroBytes == nil || s1.CompressedBytes == nil ||
		*s1.NonZeroBytes > s1.RawBytes || *s1.CompressedBytes >= *s1.NonZeroBytes || s1.CommittedAt == nil {
		t.Fatalf("central snapshot %s", jsonOf(s1))
	}
	t.Logf("standby snapshot: raw %d, non-zero %d, compressed %d, new %d bytes", s1.RawBytes, *s1.NonZeroBytes, *s1.CompressedBytes, *s1.NewStoredBytes)

	// Restore lands on the other host, whose cache is empty: the memory
	// comes from the bucket.
	rr, err := c.api.RestoreInstanceWithResponse(ctx, id, api.RestoreRequest{Host: &hostB})
	must(t, "restore on host-b", rr, err, http.StatusOK)
	in = c.waitInstance(id, "Running", running)
	if deref(in.Host) != hostB {
		t.Fatalf("restored on %q, want %s", deref(in.Host), hostB)
	}
	checkMark(t, c.agentOf(hostB, id), m, "after restore on host-b")
	c.closeAgents()

	// Illegal transitions are refused and change nothing.
	bad, err := c.api.RestoreInstanceWithResponse(ctx, id, api.RestoreRequest{})
	must(t, "restore of a running instance", bad, err, http.StatusConflict)

	sr, err = c.api.StandbyInstanceWithResponse(ctx, id, api.StandbyRequest{})
	must(t, "standby on host-b", sr, err, http.StatusOK)
	c.waitInstance(id, "Standby and central", standbyCentral)

	// Fork on host-a: a new instance with a copy of the memory.
	fr, err := c.api.ForkInstanceWithResponse(ctx, id, api.ForkRequest{Name: "web-1-fork", Host: &hostA})
	must(t, "fork on host-a", fr, err, http.StatusCreated)
	forkID := fr.JSON201.Id
	if forkID == id {
		t.Fatal("the fork has its source's id")
	}
	fork := c.waitInstance(forkID, "Running", running)
	if deref(fork.Host) != hostA {
		t.Fatalf("fork on %q, want %s", deref(fork.Host), hostA)
	}
	checkMark(t, c.agentOf(hostA, forkID), m, "fork on host-a")
	c.closeAgents()

	lr, err := c.api.ListInstancesWithResponse(ctx, nil)
	must(t, "list instances", lr, err, http.StatusOK)
	states := map[string]api.InstanceState{}
	for _, i := range lr.JSON200.Items {
		states[i.Id] = i.State
	}
	if len(states) != 2 || states[id] != api.InstanceStateStandby || states[forkID] != api.InstanceStateRunning {
		t.Fatalf("instances %v", states)
	}
	sl, err := c.api.ListSnapshotsWithResponse(ctx, nil)
	must(t, "list snapshots", sl, err, http.StatusOK)
	if len(sl.JSON200.Items) == 0 {
		t.Fatal("no snapshots listed")
	}

	for _, i := range []string{forkID, id} {
		dr, err := c.api.DeleteInstanceWithResponse(ctx, i)
		must(t, "delete "+i, dr, err, http.StatusNoContent)
		gr, err := c.api.GetInstanceWithResponse(ctx, i)
		must(t, "get deleted "+i, gr, err, http.StatusNotFound)
	}
	lr, err = c.api.ListInstancesWithResponse(ctx, nil)
	must(t, "list instances", lr, err, http.StatusOK)
	if len(lr.JSON200.Items) != 0 {
		t.Fatalf("instances after delete: %s", jsonOf(lr.JSON200.Items))
	}
	sl, err = c.api.ListSnapshotsWithResponse(ctx, nil)
	must(t, "list snapshots", sl, err, http.StatusOK)
	for _, s := range sl.JSON200.Items {
		if s.InstanceId == id && s.Standby != nil && *s.Standby {
			t.Errorf("standby snapshot %s outlived its instance", s.Id)
		}
	}

	c.stopHost(hostA)
	c.stopHost(hostB)
}
