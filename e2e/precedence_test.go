package e2e

import (
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestCompressionPrecedence: request override > instance snapshot_policy >
// server default (snapshot.compression_default in the server's config,
// lz4 level 2 here), each read back from the snapshot resource; an
// explicit enabled: false wins too; bad values are refused with their
// codes before anything changes.
func TestCompressionPrecedence(t *testing.T) {
	timed(t)
	s := stack(t)
	plain := s.create(t, "prec-default", "h1")
	policy := s.create(t, "prec-policy", "h2", "--compression", "zstd", "--compression-level", "5")

	// Refused before any state change.
	r := s.run(t, "--json", "instances", "create", "prec-bad", "--memory", "128", "--compression", "lz4", "--compression-level", "12")
	if r.code != 2 || !strings.Contains(r.stderr, "invalid_snapshot_policy") {
		t.Errorf("create with lz4 level 12: want exit 2 and invalid_snapshot_policy, got %v", r)
	}
	var l api.InstanceList
	s.cli(t, &l, "instances", "list", "--name", "prec-bad")
	for _, in := range l.Items {
		t.Errorf("the refused instance exists: %s %s", in.Id, in.State)
		s.deleteAtEnd(t, in.Id)
	}
	r = s.run(t, "--json", "instances", "standby", policy.Id, "--compression", "zstd", "--compression-level", "25")
	if r.code != 2 || !strings.Contains(r.stderr, "invalid_snapshot_compression") {
		t.Errorf("standby with zstd level 25: want exit 2 and invalid_snapshot_compression, got %v", r)
	}
	if in := s.instance(t, policy.Id); in.State != api.InstanceStateRunning {
		t.Errorf("after a refused standby the instance is %s, want Running", in.State)
	}

	check := func(what string, sn api.Snapshot, alg api.Algorithm, level int) {
		t.Helper()
		if sn.Compression == nil || sn.Compression.Algorithm != alg || sn.Compression.Level != level {
			t.Errorf("%s: snapshot %s has compression %+v, want %s level %d", what, sn.Id, sn.Compression, alg, level)
		} else {
			t.Logf("%s: %s level %d (compressed %d of %d non-zero bytes)", what, alg, level, i64(sn.CompressedBytes), i64(sn.NonZeroBytes))
		}
	}
	sn, _ := s.standbyCentral(t, plain.Id)
	check("server default (no policy, no override)", sn, serverDefaultAlgorithm, serverDefaultLevel)

	sn, _ = s.standbyRestore(t, policy.Id, "h2")
	check("instance policy (no override)", sn, api.AlgorithmZstd, 5)
	sn, _ = s.standbyRestore(t, policy.Id, "h2", "--compression", "lz4", "--compression-level", "7")
	check("request override over the instance policy", sn, api.AlgorithmLz4, 7)
	sn, _ = s.standbyCentral(t, policy.Id, "--no-compression")
	check("request enabled:false over the instance policy", sn, api.AlgorithmNone, 0)
}
