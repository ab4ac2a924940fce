package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/server"
)

// TestPreemptedSnapshotGone: a restore on the host that holds the
// instance's standby files while their upload runs resumes from those
// files and cancels the upload; the abandoned snapshot is gone from the
// API as soon as the restore answered (404, not listed), and stays gone
// after the host's next heartbeats and a catalog sync. A snapshot whose
// host drops it without a commit, reported by heartbeats only, is dropped
// too, but not while a heartbeat built before the standby answered could
// still be arriving.
func TestPreemptedSnapshotGone(t *testing.T) {
	cfg := testConfig(t)
	cfg.CatalogSync = server.Duration(time.Second)
	e := newEnv(t, cfg)
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)

	in := e.create("box", 256, 1, "host-a", nil)
	sid := *e.standby(in.Id, nil).SnapshotId
	a.uploading(sid, 0.3)
	e.heartbeat(a)
	if got := e.snapshot(sid); got.State != api.SnapshotStateUploading {
		t.Fatalf("snapshot before the restore: %+v", got)
	}
	rr, err := e.c.RestoreInstanceWithResponse(ctx, in.Id, api.RestoreRequest{})
	if err != nil || rr.JSON200 == nil || rr.JSON200.State != api.InstanceStateRunning {
		t.Fatalf("restore: %v %s", err, rr.Body)
	}
	if rr.JSON200.SnapshotId != nil {
		t.Errorf("restored instance still names snapshot %s", *rr.JSON200.SnapshotId)
	}
	gone := func(when string) {
		t.Helper()
		if g, err := e.c.GetSnapshotWithResponse(ctx, sid); err != nil || g.StatusCode() != 404 {
			t.Fatalf("%s: GET snapshot %s: %v %d %s, want 404", when, sid, err, g.StatusCode(), g.Body)
		}
		l, err := e.c.ListSnapshotsWithResponse(ctx, &api.ListSnapshotsParams{Instance: &in.Id})
		if err != nil || l.JSON200 == nil || len(l.JSON200.Items) != 0 {
			t.Fatalf("%s: snapshots of the instance: %v %s", when, err, l.Body)
		}
		if got := e.instance(in.Id); got.State != api.InstanceStateRunning || got.Host == nil || *got.Host != "host-a" {
			t.Fatalf("%s: instance %+v", when, got)
		}
	}
	gone("after the restore")
	e.heartbeat(a)
	time.Sleep(1500 * time.Millisecond) // a catalog sync
	e.heartbeat(a)
	gone("after heartbeats and a catalog sync")

	// Learned from heartbeats alone: the host lost the files of a
	// standby snapshot that never committed, and runs no upload of it.
	in2 := e.create("box2", 256, 1, "host-a", nil)
	sid2 := *e.standby(in2.Id, nil).SnapshotId
	a.uploading(sid2, 0.3)
	e.heartbeat(a)
	a.mu.Lock()
	delete(a.snapshots, sid2)
	delete(a.jobs, sid2)
	a.mu.Unlock()
	e.heartbeat(a) // within the grace after the standby: kept
	time.Sleep(200 * time.Millisecond)
	if g, _ := e.c.GetSnapshotWithResponse(ctx, sid2); g.StatusCode() != 200 {
		t.Fatalf("snapshot dropped within a heartbeat of its standby: %d %s", g.StatusCode(), g.Body)
	}
	e.clock.Advance(time.Minute)
	e.heartbeat(a)
	waitFor(t, "the abandoned snapshot dropped", func() bool {
		g, err := e.c.GetSnapshotWithResponse(ctx, sid2)
		return err == nil && g.StatusCode() == 404
	})
}
