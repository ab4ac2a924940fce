package e2e

import (
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestNamedSnapshot takes a named snapshot of a running guest with a
// compression override, forks it on the other host (the fork resumes the
// guest's RAM), and deletes it (DESIGN §7: POST /v1/instances/{id}/snapshots,
// POST /v1/snapshots/{id}/fork, DELETE /v1/snapshots/{id}).
func TestNamedSnapshot(t *testing.T) {
	timed(t)
	s := stack(t)
	in := s.create(t, "named", "h1")
	m := s.setMark(t, in.Id, "named")
	var sn api.Snapshot
	s.cli(t, &sn, "snapshots", "create", in.Id, "--name", "named-1", "--compression", "lz4", "--compression-level", "3",
		"--wait", "--wait-timeout", uploadTimeout.String())
	sn = s.waitCentral(t, sn.Id)
	if sn.Compression == nil || sn.Compression.Algorithm != api.AlgorithmLz4 || sn.Compression.Level != 3 {
		t.Errorf("named snapshot compression %+v, want lz4 level 3", sn.Compression)
	}
	if sn.Standby != nil && *sn.Standby {
		t.Errorf("named snapshot %s is flagged as a standby snapshot", sn.Id)
	}
	if got := s.instance(t, in.Id); got.State != api.InstanceStateRunning {
		t.Errorf("after a named snapshot the instance is %s, want Running", got.State)
	}
	var f api.Instance
	s.cli(t, &f, "snapshots", "fork", sn.Id, "--name", "named-fork", "--host", "h2")
	s.deleteAtEnd(t, f.Id)
	s.checkMarks(t, f.Id, m)
	if r := s.run(t, "--json", "snapshots", "delete", sn.Id); r.code != 0 {
		t.Fatalf("%v", r)
	}
	if got := s.snapshotOrNil(t, sn.Id); got != nil {
		t.Errorf("deleted snapshot %s still listed: %s", sn.Id, got.State)
	}
}
