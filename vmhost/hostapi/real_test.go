package hostapi

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/internal/vmtest"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.CloseShared()
	os.Exit(code)
}

// The real-guest helpers are shared with the other vmhost packages
// (internal/vmtest); these names keep this package's tests short.
var (
	testImage = vmtest.Image
	shortTemp = vmtest.ShortTemp
	qemuUnder = vmtest.QEMUUnder
)

// realHost is the host API over a real manager (real QEMU driver under
// TCG, real guest image, real chunk cache) storing to store.
type realHost struct {
	s       *Server
	url     string
	c       *hostapi.ClientWithResponses
	m       *manager.Manager
	metrics *Metrics
	root    string
}

func newRealHost(t *testing.T, store storage.Store) *realHost {
	t.Helper()
	im := testImage(t)
	root := shortTemp(t)
	log := testLogger(t)
	met, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	meter := met.Provider.Meter("hangar/host")
	// Closed, and checked for QEMUs left under root, after the cleanup
	// below has closed the manager.
	d := vmtest.Driver(t, root, log)
	ch, err := cache.Open(filepath.Join(root, "c"), 1<<30, cache.WithMeter(meter))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := snapshot.New(store, snapshot.Config{Logger: log, Meter: meter})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manager.Open(context.Background(), manager.Config{DataDir: filepath.Join(root, "d"), CommitWait: 200 * time.Millisecond, UploadRetry: manager.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}},
		manager.Deps{Hypervisor: d, Image: im, Repo: repo, Cache: ch, Logger: log, Meter: meter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		ch.Close()
		met.Shutdown(context.Background())
	})
	s, url, c := serve(t, m, Options{ImageDigest: im.Digest, Capacity: api.Resources{MemoryMib: 1024, Vcpus: 2}, Cache: ch, Metrics: met.Handler})
	return &realHost{s: s, url: url, c: c, m: m, metrics: met, root: root}
}

// TestRealManagerLookups: the real manager behind the API, no guest
// booted: unknown ids are not_found, deletes of absent resources are 204,
// a restore or fork of a snapshot the bucket does not hold is not_found.
func TestRealManagerLookups(t *testing.T) {
	st, err := fs.Open(shortTemp(t))
	if err != nil {
		t.Fatal(err)
	}
	h := newRealHost(t, st)
	ctx := context.Background()
	g, err := h.c.GetHostInstanceWithResponse(ctx, "i-unknown")
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "get unknown", g.StatusCode(), g.Body, api.ErrNotFound)
	d, err := h.c.DeleteHostInstanceWithResponse(ctx, "i-unknown")
	if err != nil || d.StatusCode() != 204 {
		t.Fatalf("delete unknown: %v %v", err, d)
	}
	sb, _ := h.c.StandbyHostInstanceWithResponse(ctx, "i-unknown", hostapi.StandbyRequest{SnapshotId: "s-1", Compression: api.AppliedCompression{Algorithm: "zstd", Level: 1}})
	wantCode(t, "standby unknown", sb.StatusCode(), sb.Body, api.ErrNotFound)
	rs, _ := h.c.RestoreHostInstanceWithResponse(ctx, "i-new", hostapi.RestoreRequest{SnapshotId: "s-not-in-bucket", Spec: spec})
	wantCode(t, "restore from a snapshot the bucket lacks", rs.StatusCode(), rs.Body, api.ErrNotFound)
	fk, _ := h.c.ForkHostSnapshotWithResponse(ctx, "s-not-in-bucket", hostapi.ForkRequest{InstanceId: "i-f", Spec: spec})
	wantCode(t, "fork of a snapshot the bucket lacks", fk.StatusCode(), fk.Body, api.ErrNotFound)
	l, err := h.c.ListHostInstancesWithResponse(ctx)
	if err != nil || l.JSON200 == nil || len(l.JSON200.Items) != 0 {
		t.Fatalf("list: %v %s", err, l.Body)
	}
	j, err := h.c.ListHostJobsWithResponse(ctx)
	if err != nil || j.JSON200 == nil || len(j.JSON200.Items) != 0 {
		t.Fatalf("jobs: %v %s", err, j.Body)
	}
}

// TestRealStandbyUpload is the one end-to-end path through the API with a
// real guest and a real MinIO: create → standby (zstd) → the upload
// commits → the instance and snapshot report central with sizes; illegal
// transitions and retries answer their documented codes on the way;
// /metrics shows the committed job.
func TestRealStandbyUpload(t *testing.T) {
	srv := miniotest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := s3.Open(ctx, s3.Config{Endpoint: srv.Endpoint, Bucket: srv.NewBucket(t), AccessKey: srv.AccessKey, SecretKey: s3.Secret(srv.SecretKey)})
	if err != nil {
		t.Fatal(err)
	}
	h := newRealHost(t, st)
	c := h.c

	cr, err := c.CreateHostInstanceWithResponse(ctx, "i-e2e", spec)
	if err != nil || cr.JSON201 == nil || cr.JSON201.State != api.InstanceStateRunning {
		t.Fatalf("create: %v %d %s", err, cr.StatusCode(), cr.Body)
	}
	again, _ := c.CreateHostInstanceWithResponse(ctx, "i-e2e", spec)
	if again.JSON200 == nil || again.JSON200.Id != "i-e2e" {
		t.Fatalf("retried create: %d %s", again.StatusCode(), again.Body)
	}
	rr, _ := c.RestoreHostInstanceWithResponse(ctx, "i-e2e", hostapi.RestoreRequest{SnapshotId: "s-x", Spec: spec})
	wantCode(t, "restore of a running instance from another snapshot", rr.StatusCode(), rr.Body, api.ErrInvalidState)
	fk, _ := c.ForkHostSnapshotWithResponse(ctx, "i-e2e", hostapi.ForkRequest{InstanceId: "i-fork", Spec: spec})
	wantCode(t, "fork of a running instance", fk.StatusCode(), fk.Body, api.ErrInvalidState)

	sr, err := c.StandbyHostInstanceWithResponse(ctx, "i-e2e", hostapi.StandbyRequest{SnapshotId: "s-e2e", Compression: api.AppliedCompression{Algorithm: "zstd", Level: 1}})
	if err != nil || sr.JSON200 == nil {
		t.Fatalf("standby: %v %d %s", err, sr.StatusCode(), sr.Body)
	}
	in, snap := sr.JSON200.Instance, sr.JSON200.Snapshot
	if in.State != api.InstanceStateStandby || in.Storage == nil || snap.Compression == nil || snap.Compression.Algorithm != api.AlgorithmZstd {
		t.Fatalf("standby answered %s", sr.Body)
	}
	sid := snap.Id
	sb2, _ := c.StandbyHostInstanceWithResponse(ctx, "i-e2e", hostapi.StandbyRequest{SnapshotId: sid, Compression: api.AppliedCompression{Algorithm: "zstd", Level: 1}})
	if sb2.JSON200 == nil || sb2.JSON200.Snapshot.Id != sid {
		t.Fatalf("retried standby: %d %s", sb2.StatusCode(), sb2.Body)
	}

	// Wait for the upload to commit.
	var got api.Instance
	for {
		g, err := c.GetHostInstanceWithResponse(ctx, "i-e2e")
		if err != nil || g.JSON200 == nil {
			t.Fatalf("get: %v %s", err, g.Body)
		}
		got = *g.JSON200
		if got.Storage != nil && *got.Storage == api.SnapshotStateCentral {
			break
		}
		if got.Storage != nil && *got.Storage == api.SnapshotStateError {
			t.Logf("upload error (retried): %s", g.Body)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("upload never committed; last %s", g.Body)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if got.SnapshotId == nil || *got.SnapshotId != sid || got.Job != nil {
		t.Errorf("committed instance %+v", got)
	}
	gs, _ := c.GetHostSnapshotWithResponse(ctx, sid)
	if gs.JSON200 == nil || gs.JSON200.State != api.SnapshotStateCentral || gs.JSON200.CompressedBytes == nil || *gs.JSON200.CompressedBytes <= 0 ||
		gs.JSON200.RawBytes < 128<<20 || gs.JSON200.Hosts == nil || len(*gs.JSON200.Hosts) != 0 {
		t.Errorf("committed snapshot: %d %s", gs.StatusCode(), gs.Body)
	}
	ls, _ := c.ListHostSnapshotsWithResponse(ctx)
	if ls.JSON200 == nil || len(ls.JSON200.Items) != 0 {
		t.Errorf("local snapshots after the commit dropped the files: %s", ls.Body)
	}
	j, _ := c.ListHostJobsWithResponse(ctx)
	if j.JSON200 == nil || len(j.JSON200.Items) != 0 {
		t.Errorf("jobs after commit: %s", j.Body)
	}
	hb, err := h.s.Report(ctx)
	if err != nil || hb.Health.Status != hostapi.HostHealthStatusOk || hb.Cache.Chunks == 0 || len(hb.Instances) != 1 || hb.Allocated.MemoryMib != 0 {
		t.Errorf("report after commit: %v %+v", err, hb)
	}

	rsp, err := http.Get(h.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	for _, want := range []string{`hangar_host_jobs`, `result="committed"`, `algorithm="zstd"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	del, err := c.DeleteHostInstanceWithResponse(ctx, "i-e2e")
	if err != nil || del.StatusCode() != 204 {
		t.Fatalf("delete: %v %v", err, del)
	}
	g, _ := c.GetHostInstanceWithResponse(ctx, "i-e2e")
	wantCode(t, "get deleted", g.StatusCode(), g.Body, api.ErrNotFound)
	if pids := qemuUnder(h.root); len(pids) > 0 {
		t.Errorf("qemu left after delete: %v", pids)
	}
}
