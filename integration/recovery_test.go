package integration

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestCatalogRecovery: the bucket is the system of record. With two
// standby instances committed (rec-1 with an lz4 override, its fork rec-2
// with the server default), the server and both hosts stop and the
// server's state dir is deleted; a new server against the same bucket,
// before any host registers again, shows both snapshots and both standby
// instances as they were. The hosts then come back and the recovered
// instances restore, each on the other host than it left, with the
// guest's memory.
func TestCatalogRecovery(t *testing.T) {
	c := newCluster(t, "host-a", "host-b")
	ctx := context.Background()
	hostA, hostB := "host-a", "host-b"

	cr, err := c.api.CreateInstanceWithResponse(ctx, api.CreateInstanceRequest{Name: "rec-1", Image: "default", MemoryMib: guestMiB, Vcpus: 1, Host: &hostA})
	must(t, "create", cr, err, http.StatusCreated)
	id1 := cr.JSON201.Id
	c.waitInstance(id1, "Running", running)
	m := mark(t, c.agentOf(hostA, id1))
	c.closeAgents()

	lz4 := api.Compression{Algorithm: ptr(string(api.AlgorithmLz4))}
	sr, err := c.api.StandbyInstanceWithResponse(ctx, id1, api.StandbyRequest{Compression: &lz4})
	must(t, "standby rec-1", sr, err, http.StatusOK)
	in1 := c.waitInstance(id1, "Standby and central", standbyCentral)
	snap1 := c.waitSnapshotCentral(deref(in1.SnapshotId))
	if snap1.Compression == nil || snap1.Compression.Algorithm != api.AlgorithmLz4 {
		t.Fatalf("rec-1 snapshot compression %s, want lz4 (the request override)", jsonOf(snap1.Compression))
	}

	fr, err := c.api.ForkInstanceWithResponse(ctx, id1, api.ForkRequest{Name: "rec-2", Host: &hostB})
	must(t, "fork rec-1 on host-b", fr, err, http.StatusCreated)
	id2 := fr.JSON201.Id
	c.waitInstance(id2, "Running", running)
	sr, err = c.api.StandbyInstanceWithResponse(ctx, id2, api.StandbyRequest{})
	must(t, "standby rec-2", sr, err, http.StatusOK)
	in2 := c.waitInstance(id2, "Standby and central", standbyCentral)
	snap2 := c.waitSnapshotCentral(deref(in2.SnapshotId))

	c.stopHost(hostA)
	c.stopHost(hostB)
	c.server.stop(t)
	if err := os.RemoveAll(c.stateDir); err != nil {
		t.Fatal(err)
	}
	c.startServer(filepath.Join(c.dir, "server-state-2"))

	// No host has registered with the new server: all it knows comes
	// from the bucket.
	hl, err := c.api.ListHostsWithResponse(ctx)
	must(t, "list hosts", hl, err, http.StatusOK)
	if len(hl.JSON200.Items) != 0 {
		t.Fatalf("hosts before any registered: %s", jsonOf(hl.JSON200))
	}
	sl, err := c.api.ListSnapshotsWithResponse(ctx, nil)
	must(t, "list snapshots", sl, err, http.StatusOK)
	if len(sl.JSON200.Items) != 2 {
		t.Errorf("recovered snapshots: %s", jsonOf(sl.JSON200))
	}
	for _, want := range []api.Snapshot{snap1, snap2} {
		gr, err := c.api.GetSnapshotWithResponse(ctx, want.Id)
		must(t, "get recovered snapshot "+want.Id, gr, err, http.StatusOK)
		got := gr.JSON200
		if got.State != api.SnapshotStateCentral || got.Name != want.Name || got.Kind != want.Kind || got.InstanceId != want.InstanceId ||
			got.RawBytes != want.RawBytes || deref64(got.NonZeroBytes) != deref64(want.NonZeroBytes) ||
			deref64(got.CompressedBytes) != deref64(want.CompressedBytes) || got.Compression == nil || want.Compression == nil ||
			*got.Compression != *want.Compression || deref(got.ImageDigest) != deref(want.ImageDigest) || got.MemoryMib != guestMiB {
			t.Errorf("recovered snapshot differs:\n got  %s\n want %s", jsonOf(got), jsonOf(want))
		}
		// got.Name == want.Name above: the server sent the host the live
		// name (<instance>-standby-<n>) and the host wrote it into the
		// manifest (hangar.snapshot.name).
	}
	il, err := c.api.ListInstancesWithResponse(ctx, nil)
	must(t, "list instances", il, err, http.StatusOK)
	if len(il.JSON200.Items) != 2 {
		t.Errorf("recovered instances: %s", jsonOf(il.JSON200))
	}
	for _, want := range []api.Instance{in1, in2} {
		gi, err := c.api.GetInstanceWithResponse(ctx, want.Id)
		must(t, "get recovered instance "+want.Id, gi, err, http.StatusOK)
		if got := gi.JSON200; !standbyCentral(*got) || got.Name != want.Name || deref(got.SnapshotId) != deref(want.SnapshotId) || got.MemoryMib != guestMiB {
			t.Fatalf("recovered instance:\n got  %s\n want %s", jsonOf(got), jsonOf(want))
		}
	}

	c.startHost(hostA)
	c.startHost(hostB)
	c.waitHosts(hostA, hostB)

	for _, r := range []struct{ id, host string }{{id1, hostB}, {id2, hostA}} {
		rr, err := c.api.RestoreInstanceWithResponse(ctx, r.id, api.RestoreRequest{Host: &r.host})
		must(t, "restore recovered "+r.id+" on "+r.host, rr, err, http.StatusOK)
		in := c.waitInstance(r.id, "Running", running)
		if deref(in.Host) != r.host {
			t.Fatalf("%s restored on %q, want %s", r.id, deref(in.Host), r.host)
		}
		checkMark(t, c.agentOf(r.host, r.id), m, "recovered "+r.id+" restored on "+r.host)
	}
}

func ptr[T any](v T) *T { return &v }

func deref64(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}
