package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/api"
)

// TestPreemption restores a guest on its own host while its standby
// upload is still running: the restore cancels the upload and resumes at
// once from the local files (the host counts one preemption and one
// restore prepared from local files), and the abandoned upload leaves no
// snapshot behind, neither in the API nor in the bucket.
func TestPreemption(t *testing.T) {
	timed(t)
	s := stack(t)
	in := s.create(t, "preempt", "h1")
	// Incompressible RAM and the slowest zstd level make the upload long
	// enough to be caught in flight.
	s.fillRandom(t, in.Id, "noise", 32)
	m := s.setMark(t, in.Id, "preempt")
	h1 := s.Host(t, "h1")
	before := h1.scrape(t)

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sb := s.slowStandby(t, ctx, in.Id)
	sid := *sb.SnapshotId
	if st := sb.Storage; st == nil || *st == api.SnapshotStateCentral {
		t.Fatalf("standby answered storage %v: want local or uploading", st)
	}
	start := time.Now()
	rs, err := s.API.RestoreInstanceWithResponse(ctx, in.Id, api.RestoreRequest{})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if rs.JSON200 == nil {
		t.Fatalf("restore: %s %s", rs.Status(), rs.Body)
	}
	if got := rs.JSON200; got.State != api.InstanceStateRunning || str(got.Host) != "h1" {
		t.Fatalf("restore: %s on %s, want Running on h1 (the host holding the files)", got.State, str(got.Host))
	}
	s.checkMarks(t, in.Id, m)
	t.Logf("restore during the upload took %v", took.Round(time.Millisecond))
	recordf("preemption: restore while uploading", "%v", took.Round(time.Millisecond))

	after := h1.scrape(t)
	const preempt = "hangar_host_preemptions_total"
	if n := after.sum(preempt, `operation="restore"`) - before.sum(preempt, `operation="restore"`); n != 1 {
		t.Errorf("host h1 counted %v preemptions by a restore, want 1 (%s): was the upload already over?", n, preempt)
	}
	const prep = "hangar_host_restore_prepare_duration_seconds_count"
	if n := after.sum(prep, `source="local"`) - before.sum(prep, `source="local"`); n != 1 {
		t.Errorf("host h1 counted %v restores prepared from local files, want 1 (%s)", n, prep)
	}

	// The abandoned upload is invisible at once, and still after the
	// server's catalog sync (5s) and a few heartbeats: it must not finish
	// in the background, nor linger as a snapshot that never completes.
	for _, wait := range []time.Duration{0, 7 * time.Second} {
		time.Sleep(wait)
		g, err := s.API.GetSnapshotWithResponse(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		if g.StatusCode() != 404 {
			t.Errorf("after %v: GET /v1/snapshots/%s: %s %s, want 404", wait, sid, g.Status(), g.Body)
		}
		var l api.SnapshotList
		s.cli(t, &l, "snapshots", "list", "--instance", in.Id)
		for _, sn := range l.Items {
			t.Errorf("after %v: snapshot %s (%s) of the preempted instance is listed", wait, sn.Id, sn.State)
		}
		if keys := s.bucketKeys(t, "snapshots/"+sid+"/"); len(keys) > 0 {
			t.Errorf("after %v: the bucket holds %v for the abandoned snapshot", wait, keys)
		}
	}
}

// bucketKeys lists the bucket's keys under prefix, straight from MinIO:
// the check that nothing half-written became visible.
func (s *Stack) bucketKeys(t *testing.T, prefix string) []string {
	t.Helper()
	c, err := s.MinIO.Client()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}
