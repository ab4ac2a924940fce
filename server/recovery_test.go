package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/server"
	"github.com/hangar-vm/hangar/storage/s3"
)

func TestCatalogRecoveryFS(t *testing.T) { testCatalogRecovery(t, testConfig(t), false) }

// TestCatalogRecoveryLegacyManifests: manifests written before hosts
// recorded labels (role, names, image, policy) still recover, by the
// snapshot id prefixes.
func TestCatalogRecoveryLegacyManifests(t *testing.T) { testCatalogRecovery(t, testConfig(t), true) }

func TestCatalogRecoveryMinIO(t *testing.T) {
	m := miniotest.Shared(t)
	cfg := testConfig(t)
	cfg.Store = server.StoreConfig{Kind: server.StoreS3, S3: s3.Config{
		Endpoint: m.Endpoint, Bucket: m.NewBucket(t), AccessKey: m.AccessKey, SecretKey: s3.Secret(m.SecretKey)}}
	testCatalogRecovery(t, cfg, false)
}

// recoverable is what the bucket alone must give back of a snapshot.
type recoverable struct {
	ID, InstanceID, Name  string
	Kind                  api.SnapshotKind
	State                 api.SnapshotState
	Standby               bool
	Compression           api.AppliedCompression
	Raw                   int64
	NonZero, Comp, Stored int64
	Mem, VCPUs            int32
	Digest                string
}

func catalog(t *testing.T, e *env, legacy bool) (snaps []recoverable, standby []api.Instance) {
	t.Helper()
	ctx := context.Background()
	rs, err := e.c.ListSnapshotsWithResponse(ctx, nil)
	if err != nil || rs.JSON200 == nil {
		t.Fatal(err)
	}
	for _, s := range rs.JSON200.Items {
		r := recoverable{ID: s.Id, InstanceID: s.InstanceId, Kind: s.Kind, State: s.State, Standby: s.Standby != nil && *s.Standby,
			Raw: s.RawBytes, Mem: s.MemoryMib, VCPUs: s.Vcpus}
		if s.Compression != nil {
			r.Compression = *s.Compression
		}
		if s.NonZeroBytes != nil {
			r.NonZero, r.Comp, r.Stored = *s.NonZeroBytes, *s.CompressedBytes, *s.NewStoredBytes
		}
		if s.ImageDigest != nil {
			r.Digest = *s.ImageDigest
		}
		if !r.Standby && !legacy {
			r.Name = s.Name // a named snapshot's name is in its labels
		}
		snaps = append(snaps, r)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].ID < snaps[j].ID })
	ri, err := e.c.ListInstancesWithResponse(ctx, &api.ListInstancesParams{State: ptr(api.InstanceStateStandby)})
	if err != nil || ri.JSON200 == nil {
		t.Fatal(err)
	}
	for _, in := range ri.JSON200.Items {
		// Not in the manifest, so not recoverable from the bucket alone:
		// creation time; before labels, image name and snapshot policy.
		// The host is learned from heartbeats.
		in.CreatedAt, in.UpdatedAt, in.Host = time.Time{}, time.Time{}, nil
		if legacy {
			in.Image, in.SnapshotPolicy = "", nil
		}
		standby = append(standby, in)
	}
	sort.Slice(standby, func(i, j int) bool { return standby[i].Id < standby[j].Id })
	return snaps, standby
}

func same(t *testing.T, what string, a, b any) {
	t.Helper()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("%s differs:\nwant %s\ngot  %s", what, ja, jb)
	}
}

// testCatalogRecovery: manifests written by real uploads; a server
// started with an empty state dir recovers every snapshot and standby
// instance from the bucket alone; deleting the state dir again gives the
// same catalog; the recovered standby instance restores.
func testCatalogRecovery(t *testing.T, cfg server.Config, legacy bool) {
	e := newEnv(t, cfg)
	ctx := context.Background()
	a := e.addHost("host-a", 8192, 16)
	a.legacy = legacy
	committed := map[string]time.Time{}

	keep := e.create("keep", 256, 2, "", &api.Compression{Algorithm: ptr("lz4"), Level: ptr(3)})
	// Two standbys: the second replaces the first.
	keep = e.standby(keep.Id, nil)
	if _, err := a.commit(ctx, *keep.SnapshotId); err != nil {
		t.Fatal(err)
	}
	if r, err := e.c.RestoreInstanceWithResponse(ctx, keep.Id, api.RestoreRequest{}); err != nil || r.JSON200 == nil {
		t.Fatalf("restore: %v %s", err, r.Body)
	}
	keep = e.standby(keep.Id, &api.Compression{Algorithm: ptr("zstd"), Level: ptr(7)})
	if _, err := a.commit(ctx, *keep.SnapshotId); err != nil {
		t.Fatal(err)
	}
	run := e.create("run", 512, 1, "", nil)
	for _, k := range []api.SnapshotKind{api.SnapshotKindStandby, api.SnapshotKindStopped} {
		r, err := e.c.CreateSnapshotWithResponse(ctx, run.Id, api.CreateSnapshotRequest{Name: "named-" + string(k), Kind: k})
		if err != nil || r.JSON201 == nil {
			t.Fatalf("snapshot: %v %s", err, r.Body)
		}
		m, err := a.commit(ctx, r.JSON201.Id)
		if err != nil {
			t.Fatal(err)
		}
		committed[m.ID] = m.Committed // written by storage, whatever the host records
	}
	gone := e.create("gone", 128, 1, "", nil)
	gone = e.standby(gone.Id, nil)
	if _, err := a.commit(ctx, *gone.SnapshotId); err != nil {
		t.Fatal(err)
	}
	e.heartbeatAll()
	if r, err := e.c.DeleteInstanceWithResponse(ctx, gone.Id); err != nil || r.StatusCode() != 204 {
		t.Fatalf("delete gone: %v %s", err, r.Body)
	}
	waitFor(t, "all central, replaced standby dropped", func() bool {
		snaps, _ := catalog(t, e, legacy)
		for _, s := range snaps {
			if s.State != api.SnapshotStateCentral || s.Stored == 0 {
				return false
			}
		}
		return len(snaps) == 3
	})
	wantSnaps, wantStandby := catalog(t, e, legacy)
	if len(wantStandby) != 1 || wantStandby[0].Id != keep.Id || *wantStandby[0].SnapshotId != *keep.SnapshotId {
		t.Fatalf("standby instances before restart: %+v", wantStandby)
	}

	// A new server, a new (empty) state dir, the same bucket; no host has
	// registered yet, so everything comes from the bucket.
	e.cfg.StateDir = filepath.Join(t.TempDir(), "state2")
	e.start()
	gotSnaps, gotStandby := catalog(t, e, legacy)
	same(t, "snapshots recovered from the bucket", wantSnaps, gotSnaps)
	same(t, "standby instances recovered from the bucket", wantStandby, gotStandby)
	for id, want := range committed {
		g, err := e.c.GetSnapshotWithResponse(ctx, id)
		if err != nil || g.JSON200 == nil || g.JSON200.CommittedAt == nil || !g.JSON200.CommittedAt.Equal(want) {
			t.Fatalf("recovered snapshot %s: committed_at %v, want %v (%v)", id, g.JSON200.CommittedAt, want, err)
		}
	}

	// Close writes the cache; delete it, start again: same catalog.
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "catalog.json")); err != nil {
		t.Fatalf("no catalog cache written: %v", err)
	}
	if err := os.RemoveAll(e.cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	e.start()
	gotSnaps, gotStandby = catalog(t, e, legacy)
	same(t, "snapshots after deleting the state dir", wantSnaps, gotSnaps)
	same(t, "standby instances after deleting the state dir", wantStandby, gotStandby)

	// The recovered instance restores on a host that never saw it.
	b := e.addHost("host-b", 8192, 16)
	r, err := e.c.RestoreInstanceWithResponse(ctx, keep.Id, api.RestoreRequest{Host: ptr("host-b")})
	if err != nil || r.JSON200 == nil || r.JSON200.State != api.InstanceStateRunning {
		t.Fatalf("restore recovered instance: %v %d %s", err, r.StatusCode(), r.Body)
	}
	if got := b.calls[len(b.calls)-1]; got != "Restore" {
		t.Fatalf("host-b calls %v", b.calls)
	}
	// host-a heartbeats its running instance back into the catalog.
	e.register(a)
	e.heartbeat(a)
	gi, err := e.c.GetInstanceWithResponse(ctx, run.Id)
	if err != nil || gi.JSON200 == nil || gi.JSON200.State != api.InstanceStateRunning || *gi.JSON200.Host != "host-a" {
		t.Fatalf("running instance after heartbeat: %v %s", err, gi.Body)
	}
}
