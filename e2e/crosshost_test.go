package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestCrossHostStandbyRestore parks a guest with each compression (zstd at
// two levels, lz4, none) and resumes it on the other host: the guest's
// RAM-only state (a token in its tmpfs, its boot id, its counter)
// survives, and the snapshot resource shows the compression applied. The
// last guest then goes on standby again and comes back to the host it
// started on (a round trip).
func TestCrossHostStandbyRestore(t *testing.T) {
	timed(t)
	s := stack(t)
	hops := []struct {
		name     string
		from, to string
		flags    []string
		alg      api.Algorithm
		level    int
	}{
		{"zstd-1", "h1", "h2", []string{"--compression", "zstd", "--compression-level", "1"}, api.AlgorithmZstd, 1},
		{"zstd-9", "h2", "h1", []string{"--compression", "zstd", "--compression-level", "9"}, api.AlgorithmZstd, 9},
		{"lz4", "h1", "h2", []string{"--compression", "lz4"}, api.AlgorithmLz4, 0},
		{"none", "h2", "h1", []string{"--compression", "none"}, api.AlgorithmNone, 0},
	}
	// The guests belong to the test, not to the subtests: the last one
	// makes the round trip.
	ids := make([]string, len(hops))
	for i, hop := range hops {
		ids[i] = s.create(t, "cross-"+hop.name, hop.from).Id
	}
	var last struct {
		id    string
		from  string
		marks []mark
	}
	for i, hop := range hops {
		t.Run(hop.name, func(t *testing.T) {
			in := s.instance(t, ids[i])
			m := s.setMark(t, in.Id, "cross")
			sn, took := s.standbyRestore(t, in.Id, hop.to, hop.flags...)
			if sn.Compression == nil || sn.Compression.Algorithm != hop.alg || sn.Compression.Level != hop.level {
				t.Errorf("snapshot %s compression %+v, want %s level %d", sn.Id, sn.Compression, hop.alg, hop.level)
			}
			st := s.checkMarks(t, in.Id, m)
			line := fmt.Sprintf("raw %d nonzero %d compressed %d new %d; %s; counter %d",
				sn.RawBytes, i64(sn.NonZeroBytes), i64(sn.CompressedBytes), i64(sn.NewStoredBytes), took, st.Counter)
			t.Logf("%s %s -> %s: %s", hop.name, hop.from, hop.to, line)
			recordf("cross-host "+hop.name, "%s", line)
			if !t.Failed() {
				last.id, last.from, last.marks = in.Id, hop.from, []mark{m}
			}
		})
	}
	t.Run("round-trip", func(t *testing.T) {
		if last.id == "" {
			t.Fatal("no guest survived the hops")
		}
		last.marks = append(last.marks, s.setMark(t, last.id, "round-trip"))
		_, took := s.standbyRestore(t, last.id, last.from)
		s.checkMarks(t, last.id, last.marks...)
		t.Logf("back on %s: %s", last.from, took)
	})
}

// standbyRestore puts instance id on standby (CLI, --wait for the
// upload), then restores it on host to, and returns the committed
// snapshot and how long the two steps took.
func (s *Stack) standbyRestore(t *testing.T, id, to string, flags ...string) (api.Snapshot, string) {
	t.Helper()
	sn, r := s.standbyCentral(t, id, flags...)
	var rs api.Instance
	rr := s.cli(t, &rs, "instances", "restore", id, "--host", to)
	if rs.State != api.InstanceStateRunning || str(rs.Host) != to {
		t.Fatalf("after restore: %s on %s, want Running on %s", rs.State, str(rs.Host), to)
	}
	return sn, fmt.Sprintf("standby+upload %v, restore %v", r.took.Round(time.Millisecond), rr.took.Round(time.Millisecond))
}

// standbyCentral puts instance id on standby with the CLI, waiting with
// --wait until the upload committed, and returns the snapshot.
func (s *Stack) standbyCentral(t *testing.T, id string, flags ...string) (api.Snapshot, cliResult) {
	t.Helper()
	var sb api.Instance
	r := s.cli(t, &sb, append([]string{"instances", "standby", id, "--wait", "--wait-timeout", uploadTimeout.String()}, flags...)...)
	if sb.State != api.InstanceStateStandby || sb.SnapshotId == nil {
		t.Fatalf("after standby: state %s, snapshot %s", sb.State, str(sb.SnapshotId))
	}
	return s.waitCentral(t, *sb.SnapshotId), r
}

// slowStandby puts instance id on standby through the API with the slowest
// zstd level, so that the upload (of incompressible RAM) is still running
// when the call answers, and returns the answer, which names the snapshot.
func (s *Stack) slowStandby(t *testing.T, ctx context.Context, id string) *api.Instance {
	t.Helper()
	alg, level := "zstd", 19
	sb, err := s.API.StandbyInstanceWithResponse(ctx, id, api.StandbyRequest{Compression: &api.Compression{Algorithm: &alg, Level: &level}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.JSON200 == nil || sb.JSON200.SnapshotId == nil {
		t.Fatalf("standby: %s %s", sb.Status(), sb.Body)
	}
	return sb.JSON200
}
