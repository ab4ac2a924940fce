package server_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/server"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/storeconfig"
)

const (
	userToken    = "user-token-0123456789abcdef"
	clusterToken = "cluster-token-0123456789abcdef"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a server on a real fs store (or the store given), served by
// httptest, with fake hosts that register and heartbeat over the cluster
// API, and the generated clients of both APIs.
type env struct {
	t       *testing.T
	cfg     server.Config
	srv     *server.Server
	ts      *httptest.Server
	c       *api.ClientWithResponses     // user token
	cluster *hostapi.ClientWithResponses // cluster token
	clock   *clock
	store   storage.Store
	repo    *snapshot.Repo
	mu      sync.Mutex
	hosts   map[string]*fakeHost
}

func testConfig(t *testing.T) server.Config {
	return server.Config{
		Auth:     server.AuthConfig{UserToken: userToken, ClusterToken: clusterToken},
		Store:    server.StoreConfig{Kind: server.StoreFS, Dir: filepath.Join(t.TempDir(), "bucket")},
		StateDir: filepath.Join(t.TempDir(), "state"),
	}
}

func newEnv(t *testing.T, cfg server.Config) *env {
	t.Helper()
	e := &env{t: t, cfg: cfg, clock: &clock{t: time.Unix(1_700_000_000, 0)}, hosts: map[string]*fakeHost{}}
	var err error
	switch cfg.Store.Kind {
	case server.StoreFS:
		if err := os.MkdirAll(cfg.Store.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		e.store, err = fs.Open(cfg.Store.Dir)
	default:
		e.store, err = storeconfig.Open(context.Background(), cfg.Store, nil, slog.Default())
	}
	if err != nil {
		t.Fatal(err)
	}
	if e.repo, err = snapshot.New(e.store, snapshot.Config{}); err != nil {
		t.Fatal(err)
	}
	e.start()
	return e
}

// start (re)starts the server on the env's config, keeping hosts, clock
// and store.
func (e *env) start() {
	t := e.t
	t.Helper()
	if e.ts != nil {
		e.ts.Close()
		if err := e.srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(e.cfg, server.WithClock(e.clock.Now), server.WithHostDialer(func(id, _ string) (server.HostClient, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.hosts[id], nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.ts.Close()
		_ = srv.Close()
	})
	if e.c, err = api.NewClientWithResponses(e.ts.URL, api.WithRequestEditorFn(api.BearerAuth(userToken))); err != nil {
		t.Fatal(err)
	}
	if e.cluster, err = hostapi.NewClientWithResponses(e.ts.URL, hostapi.WithRequestEditorFn(hostapi.RequestEditorFn(api.BearerAuth(clusterToken)))); err != nil {
		t.Fatal(err)
	}
}

// addHost registers a fake host through the cluster API and heartbeats.
func (e *env) addHost(id string, mem int64, vcpus int32) *fakeHost {
	e.t.Helper()
	h := newFakeHost(id, mem, vcpus, e.repo, e.t.TempDir())
	h.central = func(sid string) bool {
		_, err := e.repo.Manifest(context.Background(), sid)
		return err == nil
	}
	e.mu.Lock()
	e.hosts[id] = h
	e.mu.Unlock()
	e.register(h)
	e.heartbeat(h)
	return h
}

func (e *env) register(h *fakeHost) {
	e.t.Helper()
	r, err := e.cluster.RegisterHostWithResponse(context.Background(), hostapi.RegisterRequest{
		Id: h.id, Address: "http://127.0.0.1:1/" + h.id, Capacity: h.capacity})
	if err != nil || r.JSON200 == nil {
		e.t.Fatalf("register %s: %v %s", h.id, err, r.Body)
	}
}

func (e *env) heartbeat(h *fakeHost) {
	e.t.Helper()
	r, err := e.cluster.HeartbeatHostWithResponse(context.Background(), h.id, h.heartbeat())
	if err != nil || r.JSON200 == nil {
		e.t.Fatalf("heartbeat %s: %v %d %s", h.id, err, r.StatusCode(), r.Body)
	}
}

// heartbeatAll sends a heartbeat from every fake host except skip.
func (e *env) heartbeatAll(skip ...string) {
	e.t.Helper()
	e.mu.Lock()
	var hs []*fakeHost
	for _, h := range e.hosts {
		hs = append(hs, h)
	}
	e.mu.Unlock()
next:
	for _, h := range hs {
		for _, s := range skip {
			if h.id == s {
				continue next
			}
		}
		e.heartbeat(h)
	}
}

func ptr[T any](v T) *T { return &v }

func (e *env) create(name string, mem, vcpus int32, host string, policy *api.Compression) api.Instance {
	e.t.Helper()
	req := api.CreateInstanceRequest{Name: name, Image: "default", MemoryMib: mem, Vcpus: vcpus}
	if host != "" {
		req.Host = &host
	}
	if policy != nil {
		req.SnapshotPolicy = &api.SnapshotPolicy{Compression: policy}
	}
	r, err := e.c.CreateInstanceWithResponse(context.Background(), req)
	if err != nil || r.JSON201 == nil {
		e.t.Fatalf("create %s: %v %d %s", name, err, r.StatusCode(), r.Body)
	}
	return *r.JSON201
}

func (e *env) standby(id string, c *api.Compression) api.Instance {
	e.t.Helper()
	r, err := e.c.StandbyInstanceWithResponse(context.Background(), id, api.StandbyRequest{Compression: c})
	if err != nil || r.JSON200 == nil {
		e.t.Fatalf("standby %s: %v %d %s", id, err, r.StatusCode(), r.Body)
	}
	return *r.JSON200
}

func (e *env) snapshot(id string) api.Snapshot {
	e.t.Helper()
	r, err := e.c.GetSnapshotWithResponse(context.Background(), id)
	if err != nil || r.JSON200 == nil {
		e.t.Fatalf("get snapshot %s: %v %d %s", id, err, r.StatusCode(), r.Body)
	}
	return *r.JSON200
}

// state is everything a user can list, as JSON, to compare before and
// after a rejected request.
func (e *env) state() string {
	e.t.Helper()
	ctx := context.Background()
	ri, err1 := e.c.ListInstancesWithResponse(ctx, nil)
	rs, err2 := e.c.ListSnapshotsWithResponse(ctx, nil)
	rh, err3 := e.c.ListHostsWithResponse(ctx)
	if err1 != nil || err2 != nil || err3 != nil || ri.JSON200 == nil || rs.JSON200 == nil || rh.JSON200 == nil {
		e.t.Fatalf("list: %v %v %v", err1, err2, err3)
	}
	b, _ := json.Marshal([]any{ri.JSON200, rs.JSON200, rh.JSON200})
	return string(b)
}

// waitFor polls cond (the server syncs manifests in the background).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errNotFoundStorage = storage.ErrNotFound
