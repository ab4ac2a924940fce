package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestGC deletes a snapshot (with the instance whose standby snapshot it
// is) and runs `hangar store gc`: the chunks only it referenced are gone
// from the bucket, the others stay, every remaining snapshot verifies
// (`hangar store verify`), and the other snapshot still restores.
func TestGC(t *testing.T) {
	timed(t)
	s := stack(t)
	// Start from a bucket without garbage, so that what this test deletes
	// is exactly what it made unreferenced.
	var g gcReport
	s.cli(t, &g, "store", "gc", "--grace", "0")

	doomed := s.create(t, "gc-doomed", "h2")
	s.fillRandom(t, doomed.Id, "doomed", 16) // chunks only this snapshot has
	doomedSn, _ := s.standbyCentral(t, doomed.Id)
	kept := s.create(t, "gc-kept", "h1")
	s.fillRandom(t, kept.Id, "kept", 16)
	m := s.setMark(t, kept.Id, "kept")
	keptSn, _ := s.standbyCentral(t, kept.Id)

	chunksBefore := s.bucketKeys(t, "chunks/")
	if r := s.run(t, "--json", "instances", "delete", doomed.Id); r.code != 0 {
		t.Fatalf("%v", r)
	}
	if sn := s.snapshotOrNil(t, doomedSn.Id); sn != nil {
		t.Errorf("snapshot %s of the deleted instance still listed: %s", doomedSn.Id, sn.State)
	}
	if keys := s.bucketKeys(t, "snapshots/"+doomedSn.Id+"/"); len(keys) > 0 {
		t.Errorf("the bucket still holds %v of the deleted snapshot", keys)
	}
	var dry gcReport
	s.cli(t, &dry, "store", "gc", "--grace", "0", "--dry-run")
	if dry.Deleted < 4 { // 16 MiB of random data: at least 4 chunks of 4 MiB
		t.Fatalf("gc --dry-run after deleting %s finds %d chunks to delete, want at least 4: %+v", doomedSn.Id, dry.Deleted, dry)
	}
	if after := s.bucketKeys(t, "chunks/"); len(after) != len(chunksBefore) {
		t.Errorf("gc --dry-run changed the bucket: %d chunks, then %d", len(chunksBefore), len(after))
	}
	s.cli(t, &g, "store", "gc", "--grace", "0")
	line := fmt.Sprintf("%d snapshots reference %d chunks; deleted %d of %d chunks (%d bytes)", g.Snapshots, g.Referenced, g.Deleted, g.Chunks, g.BytesFreed)
	t.Log(line)
	recordf("gc", "%s", line)
	if g.Deleted != dry.Deleted || g.Missing != 0 {
		t.Errorf("gc deleted %d chunks (dry run said %d), %d referenced chunks missing", g.Deleted, dry.Deleted, g.Missing)
	}
	chunksAfter := s.bucketKeys(t, "chunks/")
	if len(chunksAfter) != len(chunksBefore)-g.Deleted {
		t.Errorf("the bucket holds %d chunks after gc, want %d - %d", len(chunksAfter), len(chunksBefore), g.Deleted)
	}
	var again gcReport
	s.cli(t, &again, "store", "gc", "--grace", "0", "--dry-run")
	if again.Deleted != 0 {
		t.Errorf("a second gc would delete %d more chunks", again.Deleted)
	}
	// Every chunk left is referenced, and every referenced one is there.
	if len(chunksAfter) != again.Referenced || again.Chunks != again.Referenced {
		t.Errorf("after gc: %d chunk objects, %d referenced, %d counted by gc", len(chunksAfter), again.Referenced, again.Chunks)
	}
	rep := s.verify(t)
	t.Logf("verify after gc: %d snapshots, %d chunks, %d bytes", rep.Snapshots, rep.Chunks, rep.Bytes)
	if !slices.ContainsFunc(s.bucketKeys(t, "snapshots/"), func(k string) bool { return strings.Contains(k, keptSn.Id) }) {
		t.Errorf("kept snapshot %s not in the bucket after gc", keptSn.Id)
	}

	// The kept snapshot restores, on the host that never had it.
	var rs api.Instance
	s.cli(t, &rs, "instances", "restore", kept.Id, "--host", "h2")
	s.checkMarks(t, kept.Id, m)
}

// snapshotOrNil reads a snapshot, nil when the API says it does not exist.
func (s *Stack) snapshotOrNil(t *testing.T, id string) *api.Snapshot {
	t.Helper()
	rsp, err := s.API.GetSnapshotWithResponse(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if rsp.StatusCode() == 404 {
		return nil
	}
	if rsp.JSON200 == nil {
		t.Fatalf("get snapshot %s: %s %s", id, rsp.Status(), rsp.Body)
	}
	return rsp.JSON200
}
