package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/server"
)

func (e *env) instance(id string) api.Instance {
	e.t.Helper()
	r, err := e.c.GetInstanceWithResponse(context.Background(), id)
	if err != nil || r.JSON200 == nil {
		e.t.Fatalf("get instance %s: %v %d %s", id, err, r.StatusCode(), r.Body)
	}
	return *r.JSON200
}

// TestCommitLearnedFromHeartbeat: a host commits an upload and drops the
// files at once, so no heartbeat lists the snapshot central; the server
// still learns the commit from the next heartbeat (the instance's storage,
// the snapshot gone from the host, the upload job ended) and reads that
// one manifest, without waiting for its periodic listing of the bucket
// (an hour here).
func TestCommitLearnedFromHeartbeat(t *testing.T) {
	cfg := testConfig(t)
	cfg.CatalogSync = server.Duration(time.Hour)
	e := newEnv(t, cfg)
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)

	in := e.create("box", 256, 1, "host-a", nil)
	run := e.create("run", 256, 1, "host-a", nil)
	sid := *e.standby(in.Id, nil).SnapshotId
	sr, err := e.c.CreateSnapshotWithResponse(ctx, run.Id, api.CreateSnapshotRequest{Name: "nightly", Kind: api.SnapshotKindStandby})
	if err != nil || sr.JSON201 == nil {
		t.Fatalf("named snapshot: %v %s", err, sr.Body)
	}
	named := sr.JSON201.Id
	a.uploading(sid, 0.5)
	e.heartbeat(a)
	if got := e.snapshot(sid); got.State != api.SnapshotStateUploading {
		t.Fatalf("snapshot while uploading: %+v", got)
	}

	m, err := a.commit(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	mn, err := a.commit(ctx, named)
	if err != nil {
		t.Fatal(err)
	}
	e.heartbeat(a)
	waitFor(t, "both snapshots central with their manifest sizes", func() bool {
		s, n := e.snapshot(sid), e.snapshot(named)
		return s.State == api.SnapshotStateCentral && s.CompressedBytes != nil && *s.CompressedBytes == m.Totals.Compressed &&
			n.State == api.SnapshotStateCentral && n.CompressedBytes != nil && *n.CompressedBytes == mn.Totals.Compressed
	})
	if s := e.snapshot(sid); s.RawBytes != m.Totals.Raw || s.CommittedAt == nil || s.Progress != nil || len(*s.Hosts) != 0 {
		t.Errorf("committed snapshot %+v", s)
	}
	got := e.instance(in.Id)
	if got.State != api.InstanceStateStandby || got.Storage == nil || *got.Storage != api.SnapshotStateCentral {
		t.Errorf("instance after the commit: %+v", got)
	}
}

// TestCentralInstanceView: an instance whose standby snapshot is central
// shows no upload job, even when the server read the manifest before the
// host's next heartbeat; and no host once that host dropped the files
// (openapi.yaml, Instance.host), while one that keeps them is shown.
func TestCentralInstanceView(t *testing.T) {
	cfg := testConfig(t)
	cfg.CatalogSync = server.Duration(time.Second)
	e := newEnv(t, cfg)
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)
	k := e.addHost("host-k", 1024, 8)
	k.keepLocal = true

	for _, tc := range []struct {
		host     *fakeHost
		wantHost bool
	}{{a, false}, {k, true}} {
		in := e.create("box-"+tc.host.id, 256, 1, tc.host.id, nil)
		sid := *e.standby(in.Id, nil).SnapshotId
		tc.host.uploading(sid, 1)
		e.heartbeat(tc.host)
		if got := e.instance(in.Id); got.Job == nil || got.Job.Kind != api.JobKindUpload || got.Job.State != api.JobStateRunning {
			t.Fatalf("instance while uploading: %+v", got)
		}
		if _, err := tc.host.commit(ctx, sid); err != nil {
			t.Fatal(err)
		}
		// No heartbeat: the periodic listing of the bucket finds the
		// manifest first.
		waitFor(t, "snapshot central from the bucket", func() bool {
			s := e.snapshot(sid)
			return s.State == api.SnapshotStateCentral && s.CommittedAt != nil
		})
		if got := e.instance(in.Id); got.Job != nil || got.Storage == nil || *got.Storage != api.SnapshotStateCentral {
			t.Errorf("%s: central instance shows job %+v, storage %v", tc.host.id, got.Job, got.Storage)
		}
		e.heartbeat(tc.host)
		got := e.instance(in.Id)
		if got.Job != nil || (got.Host != nil) != tc.wantHost || (tc.wantHost && *got.Host != tc.host.id) {
			t.Errorf("%s: central instance after the host's heartbeat: host %v job %+v, want host shown %v", tc.host.id, got.Host, got.Job, tc.wantHost)
		}
		// The listing filter follows what is shown.
		r, err := e.c.ListInstancesWithResponse(ctx, &api.ListInstancesParams{Host: ptr(tc.host.id)})
		if err != nil || r.JSON200 == nil || (len(r.JSON200.Items) == 1) != tc.wantHost {
			t.Errorf("%s: list by host: %v %+v", tc.host.id, err, r.JSON200)
		}
	}
}

// TestRecoveredStandbyName: the server sends the host each standby
// snapshot's name (<instance>-standby-<n>, a valid name also for the
// longest instance names), the host records it as a manifest label, and a
// snapshot recovered from the bucket keeps it, not the <instance>-standby
// fallback of manifests without one.
func TestRecoveredStandbyName(t *testing.T) {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)
	long := strings.Repeat("a", 47) + "-" + strings.Repeat("b", 15) // 63 bytes, a dash at the cut
	want := map[string]string{}
	for name, wantName := range map[string]string{"box": "box-standby-1", long: strings.Repeat("a", 47) + "-standby-1"} {
		in := e.create(name, 256, 1, "host-a", nil)
		sid := *e.standby(in.Id, nil).SnapshotId
		if got := e.snapshot(sid).Name; got != wantName {
			t.Fatalf("live standby snapshot of %s named %q, want %q", name, got, wantName)
		}
		if err := api.ValidateName("name", wantName); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		sent := a.standbys[len(a.standbys)-1].Name
		a.mu.Unlock()
		if sent == nil || *sent != wantName {
			t.Fatalf("the host was sent name %v, want %q", sent, wantName)
		}
		if _, err := a.commit(ctx, sid); err != nil {
			t.Fatal(err)
		}
		want[sid] = wantName
	}
	e.cfg.StateDir = filepath.Join(t.TempDir(), "fresh") // nothing cached
	e.start()
	for sid, name := range want {
		if got := e.snapshot(sid); got.Name != name || got.State != api.SnapshotStateCentral {
			t.Fatalf("recovered standby snapshot %q (%s), want %q", got.Name, got.State, name)
		}
	}
}
