package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestLifecycle: create → standby (local) → upload commits (central, sizes
// from the manifest) → restore on the other host → fork → delete.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)
	b := e.addHost("host-b", 2048, 8)

	in := e.create("box", 512, 2, "", nil)
	if in.State != api.InstanceStateRunning || in.Host == nil || *in.Host != "host-a" {
		t.Fatalf("create: %+v (want Running on host-a, the most free memory)", in)
	}
	in = e.standby(in.Id, nil)
	if in.State != api.InstanceStateStandby || in.Storage == nil || *in.Storage != api.SnapshotStateLocal || in.SnapshotId == nil {
		t.Fatalf("standby: %+v", in)
	}
	sid := *in.SnapshotId
	m, err := a.commit(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	e.heartbeatAll()
	waitFor(t, "snapshot central with manifest sizes", func() bool {
		s := e.snapshot(sid)
		return s.State == api.SnapshotStateCentral && s.CompressedBytes != nil && *s.CompressedBytes == m.Totals.Compressed
	})
	s := e.snapshot(sid)
	if s.RawBytes != m.Totals.Raw || *s.NonZeroBytes != m.Totals.NonZero || *s.NewStoredBytes != m.Totals.NewStored ||
		s.Compression == nil || s.Compression.Algorithm != "zstd" || s.Compression.Level != 1 || s.Kind != api.SnapshotKindStandby {
		t.Fatalf("snapshot %+v, manifest totals %+v", s, m.Totals)
	}

	rr, err := e.c.RestoreInstanceWithResponse(ctx, in.Id, api.RestoreRequest{Host: ptr("host-b")})
	if err != nil || rr.JSON200 == nil || *rr.JSON200.Host != "host-b" || rr.JSON200.State != api.InstanceStateRunning {
		t.Fatalf("restore on host-b: %v %s", err, rr.Body)
	}
	if got := b.calls; len(got) == 0 || got[len(got)-1] != "Restore" {
		t.Fatalf("host-b calls %v", got)
	}

	// Fork of the central snapshot: no holder of local files is
	// preferred over the other, so the most free memory wins (host-a).
	fr, err := e.c.ForkSnapshotWithResponse(ctx, sid, api.ForkRequest{Name: "box-2"})
	if err != nil || fr.JSON201 == nil || fr.JSON201.State != api.InstanceStateRunning {
		t.Fatalf("fork: %v %s", err, fr.Body)
	}
	if fr.JSON201.SnapshotId == nil || *fr.JSON201.SnapshotId != sid {
		t.Errorf("fork snapshot_id %v", fr.JSON201.SnapshotId)
	}

	dr, err := e.c.DeleteInstanceWithResponse(ctx, in.Id)
	if err != nil || dr.StatusCode() != 204 {
		t.Fatalf("delete: %v %d %s", err, dr.StatusCode(), dr.Body)
	}
	if _, err := e.repo.Manifest(ctx, sid); !errors.Is(err, errNotFoundStorage) {
		t.Fatalf("standby manifest after delete: %v", err)
	}
	gr, _ := e.c.GetSnapshotWithResponse(ctx, sid)
	if gr.StatusCode() != 404 {
		t.Fatalf("standby snapshot after delete: %d", gr.StatusCode())
	}
	_ = time.Second
}
