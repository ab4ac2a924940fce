package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestStoreOutage stops MinIO while a standby upload runs and starts it
// again: the upload waits out the outage (the host's store calls fail
// meanwhile), then commits; nothing is lost (store verify), and the guest
// restores on the other host with its memory intact.
func TestStoreOutage(t *testing.T) {
	timed(t)
	s := stack(t)
	in := s.create(t, "outage", "h1")
	s.fillRandom(t, in.Id, "noise", 16)
	m := s.setMark(t, in.Id, "outage")
	h1 := s.Host(t, "h1")
	before := h1.scrape(t)

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// A slow standby, so that the upload is still running when MinIO stops
	// a moment after the standby answered.
	sid := *s.slowStandby(t, ctx, in.Id).SnapshotId
	if err := s.MinIO.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted { // the next tests need the store
			if err := s.MinIO.Restart(context.Background()); err != nil {
				t.Errorf("restart MinIO: %v", err)
			}
		}
	})
	if sn := s.snapshot(t, sid); sn.State == api.SnapshotStateCentral {
		t.Fatalf("snapshot %s was central before MinIO stopped: the upload was not caught in flight", sid)
	}
	// Let the upload hit the outage.
	const errs = "hangar_store_errors_total"
	err := waitFor(ctx, "host h1's store calls failing", nil, func() error {
		if h1.scrape(t).sum(errs) <= before.sum(errs) {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if sn := s.snapshot(t, sid); sn.State == api.SnapshotStateCentral {
		t.Fatalf("snapshot %s became central while MinIO was down", sid)
	}
	if err := s.MinIO.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	down := time.Since(stopped).Round(time.Millisecond)

	sn := s.waitCentral(t, sid)
	recovered := time.Since(stopped).Round(time.Millisecond) - down
	after := h1.scrape(t)
	t.Logf("MinIO down %v; upload committed %v after it came back; h1 store errors +%v, retries +%v",
		down, recovered, after.sum(errs)-before.sum(errs), after.sum("hangar_store_retries_total")-before.sum("hangar_store_retries_total"))
	recordf("store outage: down / committed after restart", "%v / %v", down, recovered)
	rep := s.verify(t, sid)
	t.Logf("verify %s: %d chunks, %d stored bytes", sid, rep.Chunks, rep.Bytes)
	if sn.Compression == nil || sn.Compression.Level != 19 {
		t.Errorf("snapshot compression %+v, want zstd 19", sn.Compression)
	}

	var rs api.Instance
	s.cli(t, &rs, "instances", "restore", in.Id, "--host", "h2")
	if rs.State != api.InstanceStateRunning {
		t.Fatalf("restore after the outage: %s", rs.State)
	}
	s.checkMarks(t, in.Id, m)
}
