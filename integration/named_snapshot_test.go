package integration

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestNamedSnapshot drives named snapshots through the public API against
// a real server and two real host processes: a standby snapshot of a
// running guest on host-a (with a compression override) leaves it
// running; what the guest writes afterwards is not in the snapshot, which
// a fork on host-b resumes from the bucket; a stopped snapshot forks into
// a fresh boot; delete removes the snapshot from the catalog.
func TestNamedSnapshot(t *testing.T) {
	c := newCluster(t, "host-a", "host-b")
	ctx := context.Background()
	hostA, hostB := "host-a", "host-b"

	cr, err := c.api.CreateInstanceWithResponse(ctx, api.CreateInstanceRequest{Name: "named-src", Image: "default", MemoryMib: guestMiB, Vcpus: 1, Host: &hostA})
	must(t, "create", cr, err, http.StatusCreated)
	id := cr.JSON201.Id
	c.waitInstance(id, "Running", running)
	src := c.agentOf(hostA, id)
	atSnapshot := mark(t, src)

	lz4 := "lz4"
	sr, err := c.api.CreateSnapshotWithResponse(ctx, id, api.CreateSnapshotRequest{Name: "named-1", Kind: api.SnapshotKindStandby,
		Compression: &api.Compression{Algorithm: &lz4, Level: ptr(3)}})
	must(t, "named snapshot", sr, err, http.StatusCreated)
	sid := sr.JSON201.Id
	if sr.JSON201.Kind != api.SnapshotKindStandby || sr.JSON201.InstanceId != id || sr.JSON201.Standby == nil || *sr.JSON201.Standby {
		t.Fatalf("named snapshot answered %s", jsonOf(sr.JSON201))
	}
	if in := c.waitInstance(id, "Running", running); in.State != api.InstanceStateRunning {
		t.Fatalf("source after the snapshot: %s", jsonOf(in))
	}
	// The guest runs on; its later write is not in the snapshot.
	later := mark(t, src)
	c.closeAgents()

	dup, err := c.api.CreateSnapshotWithResponse(ctx, id, api.CreateSnapshotRequest{Name: "named-1", Kind: api.SnapshotKindStopped})
	must(t, "snapshot with a taken name", dup, err, http.StatusConflict)

	sn := c.waitSnapshotCentral(sid)
	if sn.Name != "named-1" || sn.Compression == nil || sn.Compression.Algorithm != api.AlgorithmLz4 || sn.Compression.Level != 3 ||
		sn.RawBytes < guestMiB<<20 || sn.CommittedAt == nil {
		t.Fatalf("central named snapshot %s", jsonOf(sn))
	}

	fr, err := c.api.ForkSnapshotWithResponse(ctx, sid, api.ForkRequest{Name: "named-fork", Host: &hostB})
	must(t, "fork on host-b", fr, err, http.StatusCreated)
	forkID := fr.JSON201.Id
	if f := c.waitInstance(forkID, "Running", running); deref(f.Host) != hostB {
		t.Fatalf("fork on %q, want %s", deref(f.Host), hostB)
	}
	checkMark(t, c.agentOf(hostB, forkID), atSnapshot, "fork of the named snapshot on host-b")
	checkMark(t, c.agentOf(hostA, id), later, "source after the fork")
	c.closeAgents()

	// A stopped snapshot is the config alone: its fork boots afresh.
	st, err := c.api.CreateSnapshotWithResponse(ctx, id, api.CreateSnapshotRequest{Name: "named-cfg", Kind: api.SnapshotKindStopped})
	must(t, "stopped snapshot", st, err, http.StatusCreated)
	cfg := c.waitSnapshotCentral(st.JSON201.Id)
	if cfg.Kind != api.SnapshotKindStopped || cfg.MemoryMib != guestMiB {
		t.Fatalf("stopped snapshot %s", jsonOf(cfg))
	}
	sf, err := c.api.ForkSnapshotWithResponse(ctx, cfg.Id, api.ForkRequest{Name: "cfg-fork", Host: &hostA})
	must(t, "fork of the stopped snapshot", sf, err, http.StatusCreated)
	fresh := c.waitInstance(sf.JSON201.Id, "Running", running)
	if fresh.MemoryMib != guestMiB {
		t.Fatalf("fork of the stopped snapshot %s", jsonOf(fresh))
	}
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if s, err := c.agentOf(hostA, fresh.Id).State(actx); err != nil || s.BootID == atSnapshot.state.BootID {
		t.Fatalf("fork of the stopped snapshot: %+v, %v; want a fresh boot", s, err)
	}
	c.closeAgents()

	for _, s := range []string{sid, cfg.Id} {
		dr, err := c.api.DeleteSnapshotWithResponse(ctx, s)
		must(t, "delete snapshot "+s, dr, err, http.StatusNoContent)
		gr, err := c.api.GetSnapshotWithResponse(ctx, s)
		must(t, "get deleted snapshot "+s, gr, err, http.StatusNotFound)
	}
	for _, i := range []string{forkID, fresh.Id, id} {
		dr, err := c.api.DeleteInstanceWithResponse(ctx, i)
		must(t, "delete "+i, dr, err, http.StatusNoContent)
	}
	c.stopHost(hostA)
	c.stopHost(hostB)
}
