package hostapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

const (
	testToken  = "cluster-token-for-tests"
	testDigest = "sha256:0123"
)

func init() { gin.SetMode(gin.TestMode) }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve starts the host API over m and returns its URL and a client that
// bears the cluster token.
func serve(t testing.TB, m Manager, opts Options) (*Server, string, *hostapi.ClientWithResponses) {
	t.Helper()
	if opts.HostID == "" {
		opts.HostID = "host-a"
	}
	if opts.Token == "" {
		opts.Token = testToken
	}
	if opts.ImageDigest == "" {
		opts.ImageDigest = testDigest
	}
	opts.Logger = testLogger(t)
	s, err := New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	c, err := hostapi.NewClientWithResponses(srv.URL, hostapi.WithRequestEditorFn(hostapi.RequestEditorFn(api.BearerAuth(testToken))))
	if err != nil {
		t.Fatal(err)
	}
	return s, srv.URL, c
}

// errOf is the error of a generated response (nil for want).
func errOf(status int, body []byte) error { return api.FromResponse(status, body) }

func wantCode(t testing.TB, what string, status int, body []byte, want *api.Error) {
	t.Helper()
	err := errOf(status, body)
	if !errors.Is(err, want) || status != want.Status() {
		t.Fatalf("%s: want %s (%d), got %d %s", what, want.Code, want.Status(), status, body)
	}
}

var spec = hostapi.InstanceSpec{Name: "box", Image: "default", MemoryMib: 128, Vcpus: 1}

// TestAuth: every /host/v1 operation needs the cluster token; /healthz
// does not.
func TestAuth(t *testing.T) {
	_, url, _ := serve(t, newFake(testDigest), Options{})
	tests := []struct {
		name, header string
	}{
		{"missing", ""},
		{"wrong token", "Bearer not-the-token"},
		{"user token", "Bearer hangar-user-token-0123456789"},
		{"token prefix", "Bearer " + testToken[:10]},
		{"token plus", "Bearer " + testToken + "x"},
		{"basic scheme", "Basic " + testToken},
		{"no scheme", testToken},
		{"empty bearer", "Bearer "},
	}
	for _, tt := range tests {
		for _, path := range []string{"/host/v1/instances", "/host/v1/instances/i-1", "/host/v1/jobs", "/host/v1/instances/BAD..ID"} {
			t.Run(tt.name+path, func(t *testing.T) {
				req, _ := http.NewRequest("GET", url+path, nil)
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				rsp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rsp.Body)
				rsp.Body.Close()
				wantCode(t, path, rsp.StatusCode, b, api.ErrUnauthorized)
				if strings.Contains(string(b), testToken) {
					t.Errorf("token echoed: %s", b)
				}
			})
		}
	}
	// The right token, with the scheme in another case, passes.
	req, _ := http.NewRequest("GET", url+"/host/v1/instances", nil)
	req.Header.Set("Authorization", "bearer "+testToken)
	rsp, err := http.DefaultClient.Do(req)
	if err != nil || rsp.StatusCode != 200 {
		t.Fatalf("right token: %v %v", err, rsp)
	}
	rsp.Body.Close()
	rsp, err = http.Get(url + "/healthz")
	if err != nil || rsp.StatusCode != 200 {
		t.Fatalf("healthz without token: %v %v", err, rsp)
	}
	rsp.Body.Close()
}

// TestBadInput: malformed ids, bodies and specs are invalid_request with
// a message naming the problem; unknown paths are not_found.
func TestBadInput(t *testing.T) {
	f := newFake(testDigest)
	_, url, c := serve(t, f, Options{MaxBodyBytes: 1024})
	ctx := context.Background()
	raw := func(method, path, body string) (int, []byte) {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, url+path, r)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		rsp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		b, _ := io.ReadAll(rsp.Body)
		return rsp.StatusCode, b
	}
	good := `{"name":"box","image":"default","memory_mib":128,"vcpus":1}`
	tests := []struct {
		name, method, path, body string
		want                     *api.Error
		mention                  string
	}{
		{"escaping id", "GET", "/host/v1/instances/..%2F..%2Fetc", "", api.ErrInvalidRequest, "invalid instance id"},
		{"dot id", "GET", "/host/v1/instances/..", "", api.ErrInvalidRequest, "invalid instance id"},
		{"upper-case id", "GET", "/host/v1/instances/I-1", "", api.ErrInvalidRequest, "invalid instance id"},
		{"long id", "DELETE", "/host/v1/instances/" + strings.Repeat("a", 64), "", api.ErrInvalidRequest, "invalid instance id"},
		{"escaping snapshot id", "GET", "/host/v1/snapshots/a%2Fb", "", api.ErrInvalidRequest, "invalid snapshot id"},
		{"escaping job id", "GET", "/host/v1/jobs/%2E%2E", "", api.ErrInvalidRequest, "invalid job id"},
		{"unknown field", "PUT", "/host/v1/instances/i-1", `{"name":"box","image":"default","memory_mib":128,"vcpus":1,"gpu":true}`, api.ErrInvalidRequest, "gpu"},
		{"nested unknown field", "POST", "/host/v1/instances/i-1/standby", `{"snapshot_id":"s-1","compression":{"algorithm":"zstd","level":1,"fast":true}}`, api.ErrInvalidRequest, "fast"},
		{"trailing data", "PUT", "/host/v1/instances/i-1", good + `{}`, api.ErrInvalidRequest, "after the JSON"},
		{"wrong type", "PUT", "/host/v1/instances/i-1", `{"name":"box","image":"default","memory_mib":"lots","vcpus":1}`, api.ErrInvalidRequest, "memory_mib"},
		{"no body", "PUT", "/host/v1/instances/i-1", "", api.ErrInvalidRequest, "body"},
		{"too big", "PUT", "/host/v1/instances/i-1", `{"name":"` + strings.Repeat("x", 2000) + `"}`, api.ErrInvalidRequest, "exceeds 1024 bytes"},
		{"memory out of range", "PUT", "/host/v1/instances/i-1", `{"name":"box","image":"default","memory_mib":1,"vcpus":1}`, api.ErrInvalidRequest, "memory_mib"},
		{"bad name", "PUT", "/host/v1/instances/i-1", `{"name":"../box","image":"default","memory_mib":128,"vcpus":1}`, api.ErrInvalidRequest, "name"},
		{"other image", "PUT", "/host/v1/instances/i-1", `{"name":"box","image":"ubuntu","memory_mib":128,"vcpus":1}`, api.ErrInvalidRequest, "image"},
		{"bad snapshot id in body", "POST", "/host/v1/instances/i-1/standby", `{"snapshot_id":"../s","compression":{"algorithm":"zstd","level":1}}`, api.ErrInvalidRequest, "invalid snapshot id"},
		{"bad fork instance id", "POST", "/host/v1/snapshots/s-1/fork", `{"instance_id":"x/y","spec":` + good + `}`, api.ErrInvalidRequest, "invalid instance id"},
		{"unknown path", "GET", "/host/v1/volumes", "", api.ErrNotFound, "no such path"},
		{"wrong method", "PATCH", "/host/v1/instances/i-1", "", api.ErrInvalidRequest, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := raw(tt.method, tt.path, tt.body)
			wantCode(t, tt.name, status, b, tt.want)
			if !strings.Contains(string(b), tt.mention) {
				t.Errorf("message does not mention %q: %s", tt.mention, b)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.creates != 0 || f.deletes != 0 {
		t.Errorf("bad input reached the manager: %d creates, %d deletes", f.creates, f.deletes)
	}
	_ = c
	_ = ctx
}

// TestCompressionValidation: a compression the host cannot apply is
// invalid_snapshot_compression naming the field, before any state changes.
func TestCompressionValidation(t *testing.T) {
	f := newFake(testDigest)
	_, _, c := serve(t, f, Options{})
	ctx := context.Background()
	if r, err := c.CreateHostInstanceWithResponse(ctx, "i-1", spec); err != nil || r.StatusCode() != 201 {
		t.Fatalf("create: %v %v", err, r)
	}
	tests := []struct {
		name string
		comp api.AppliedCompression
		want *api.Error
		set  *compression.Setting // what the manager must receive, nil: not called
	}{
		{"zstd level too high", api.AppliedCompression{Algorithm: "zstd", Level: 25}, api.ErrInvalidSnapshotCompression, nil},
		{"lz4 level negative", api.AppliedCompression{Algorithm: "lz4", Level: -1}, api.ErrInvalidSnapshotCompression, nil},
		{"unknown algorithm", api.AppliedCompression{Algorithm: "brotli", Level: 1}, api.ErrInvalidSnapshotCompression, nil},
		{"none", api.AppliedCompression{Algorithm: "none"}, nil, &compression.Setting{Algorithm: compression.None}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.mu.Lock()
			f.lastOpts = nil
			f.mu.Unlock()
			r, err := c.StandbyHostInstanceWithResponse(ctx, "i-1", hostapi.StandbyRequest{SnapshotId: "s-i-1", Name: ptr("web-standby-1"), Compression: tt.comp})
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			got := f.lastOpts
			f.mu.Unlock()
			if tt.want != nil {
				wantCode(t, tt.name, r.StatusCode(), r.Body, tt.want)
				e := r.JSON400
				if e == nil || e.Fields == nil || len(*e.Fields) == 0 || !strings.HasPrefix((*e.Fields)[0].Field, "compression") {
					t.Errorf("no field errors: %s", r.Body)
				}
				if got != nil {
					t.Errorf("the manager was called with %+v", got)
				}
				return
			}
			if r.JSON200 == nil || r.JSON200.Snapshot.Compression == nil || r.JSON200.Snapshot.Compression.Algorithm != api.AlgorithmNone {
				t.Fatalf("standby: %d %s", r.StatusCode(), r.Body)
			}
			// The server resolved the precedence: the manager gets the
			// setting to apply as is, and the server's snapshot id and name.
			if got == nil || got.Compression == nil || *got.Compression != *tt.set || got.Override != nil || got.SnapshotID != "s-i-1" ||
				got.Name != "web-standby-1" {
				t.Errorf("manager options %+v", got)
			}
		})
	}
	// A bad name is refused before the manager sees the call.
	f.mu.Lock()
	f.lastOpts = nil
	f.mu.Unlock()
	r, err := c.StandbyHostInstanceWithResponse(ctx, "i-1", hostapi.StandbyRequest{SnapshotId: "s-i-2", Name: ptr("Not A Name"), Compression: api.AppliedCompression{Algorithm: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "bad snapshot name", r.StatusCode(), r.Body, api.ErrInvalidRequest)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastOpts != nil {
		t.Errorf("the manager was called with %+v", f.lastOpts)
	}
}

// TestErrorMapping: the manager's and the layers' sentinels arrive at the
// client as the documented codes.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err  error
		want *api.Error
	}{
		{fmt.Errorf("instance x: %w", manager.ErrNotFound), api.ErrNotFound},
		{fmt.Errorf("standby: %w: it is stopped", manager.ErrInvalidState), api.ErrInvalidState},
		{fmt.Errorf("vm: %w", vmhost.ErrInvalidState), api.ErrInvalidState},
		{fmt.Errorf("restore: %w (standby in progress)", manager.ErrBusy), api.ErrConflict},
		{fmt.Errorf("create: %w", manager.ErrAlreadyExists), api.ErrConflict},
		{fmt.Errorf("snapshot s: %w: it needs guest image a, this host has b", vmhost.ErrSnapshotMismatch), api.ErrConflict},
		{fmt.Errorf("name: %w", manager.ErrInvalidArgument), api.ErrInvalidRequest},
		{fmt.Errorf("fork: source: %w: %w", manager.ErrNotFound, manager.ErrInvalidArgument), api.ErrInvalidRequest},
		{fmt.Errorf("closing: %w", manager.ErrClosed), api.ErrHostUnavailable},
		{&compression.ValidationError{Source: compression.SourceInstance, Problems: []compression.FieldError{{Field: "compression.level", Message: "1-19"}}}, api.ErrInvalidSnapshotPolicy},
		{&compression.ValidationError{Source: compression.SourceRequest, Problems: []compression.FieldError{{Field: "compression.level", Message: "1-19"}}}, api.ErrInvalidSnapshotCompression},
		{errors.New("disk on fire"), api.ErrInternal},
	}
	f := newFake(testDigest)
	_, _, c := serve(t, f, Options{})
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			e := toAPIError(tt.err)
			if e.Code != tt.want.Code || !strings.Contains(e.Message, strings.SplitN(tt.err.Error(), ":", 2)[0]) {
				t.Fatalf("toAPIError(%v) = %+v, want %s", tt.err, e, tt.want.Code)
			}
			// Across the wire: the fake fails its next delete with err.
			f.mu.Lock()
			f.insts["i-err"] = manager.Instance{ID: "i-err", Name: "x", State: manager.StateRunning}
			f.next = tt.err
			f.mu.Unlock()
			r, err := c.DeleteHostInstanceWithResponse(ctx, "i-err")
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == api.ErrNotFound { // deleting an absent instance is a success
				if r.StatusCode() != 204 {
					t.Fatalf("delete of absent: %d %s", r.StatusCode(), r.Body)
				}
				return
			}
			wantCode(t, "delete", r.StatusCode(), r.Body, tt.want)
		})
	}
}

// TestIdempotentCreateDelete: a retried create answers the existing
// instance (200, waiting while it boots), another spec is conflict, a
// delete of an absent instance is 204; the manager creates once.
func TestIdempotentCreateDelete(t *testing.T) {
	f := newFake(testDigest)
	f.bootFor = 300 * time.Millisecond
	_, _, c := serve(t, f, Options{})
	ctx := context.Background()

	var wg sync.WaitGroup
	statuses := make([]int, 3)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.CreateHostInstanceWithResponse(ctx, "i-1", spec)
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.StatusCode()
			var in *api.Instance
			if r.JSON201 != nil {
				in = r.JSON201
			} else {
				in = r.JSON200
			}
			if in == nil || in.State != api.InstanceStateRunning || in.Id != "i-1" || in.Host == nil || *in.Host != "host-a" || in.Image != "default" {
				t.Errorf("create answer %d %s", r.StatusCode(), r.Body)
			}
		}()
	}
	wg.Wait()
	var n200, n201 int
	for _, s := range statuses {
		switch s {
		case 200:
			n200++
		case 201:
			n201++
		}
	}
	if n201 != 1 || n200 != 2 {
		t.Errorf("concurrent creates answered %v, want one 201 and two 200", statuses)
	}
	if f.creates != 1 {
		t.Errorf("manager created %d times", f.creates)
	}
	other := spec
	other.MemoryMib = 256
	r, err := c.CreateHostInstanceWithResponse(ctx, "i-1", other)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "create with another spec", r.StatusCode(), r.Body, api.ErrConflict)

	for i := range 2 {
		r, err := c.DeleteHostInstanceWithResponse(ctx, "i-1")
		if err != nil || r.StatusCode() != 204 {
			t.Fatalf("delete %d: %v %d %s", i, err, r.StatusCode(), r.Body)
		}
	}
	if f.deletes != 1 {
		t.Errorf("manager deleted %d times", f.deletes)
	}
	g, err := c.GetHostInstanceWithResponse(ctx, "i-1")
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "get deleted", g.StatusCode(), g.Body, api.ErrNotFound)
	if s, err := c.DeleteHostSnapshotWithResponse(ctx, "s-never"); err != nil || s.StatusCode() != 204 {
		t.Fatalf("delete absent snapshot: %v %v", err, s)
	}
}

// TestStandbyRestoreForkFlow drives the other operations over the fake:
// standby answers instance and snapshot, a retry with the same snapshot id
// answers 200, another id is invalid_state; restore from the wrong
// snapshot is conflict; fork is idempotent on its instance id; capacity is
// enforced.
func TestStandbyRestoreForkFlow(t *testing.T) {
	f := newFake(testDigest)
	_, _, c := serve(t, f, Options{Capacity: api.Resources{MemoryMib: 300, Vcpus: 4}, Cache: fakeCache{}})
	ctx := context.Background()
	if r, _ := c.CreateHostInstanceWithResponse(ctx, "i-1", spec); r.StatusCode() != 201 {
		t.Fatalf("create: %s", r.Body)
	}
	big := spec
	big.MemoryMib = 256
	r, err := c.CreateHostInstanceWithResponse(ctx, "i-2", big)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "create beyond capacity", r.StatusCode(), r.Body, api.ErrNoCapacity)

	// The server's snapshot id is the snapshot's id; a retry with it is
	// recognised.
	req := hostapi.StandbyRequest{SnapshotId: "s-i-1", Compression: api.AppliedCompression{Algorithm: "zstd", Level: 3}}
	for i := range 2 {
		sr, err := c.StandbyHostInstanceWithResponse(ctx, "i-1", req)
		if err != nil || sr.JSON200 == nil {
			t.Fatalf("standby %d: %v %s", i, err, sr.Body)
		}
		in, snap := sr.JSON200.Instance, sr.JSON200.Snapshot
		if in.State != api.InstanceStateStandby || in.Storage == nil || *in.Storage != api.SnapshotStateLocal ||
			snap.Id != "s-i-1" || snap.Compression == nil || snap.Compression.Algorithm != "zstd" || snap.Compression.Level != 3 ||
			snap.Hosts == nil || len(*snap.Hosts) != 1 {
			t.Fatalf("standby %d answered %s", i, sr.Body)
		}
	}
	sr, _ := c.StandbyHostInstanceWithResponse(ctx, "i-1", hostapi.StandbyRequest{SnapshotId: "s-other", Compression: req.Compression})
	wantCode(t, "standby with another snapshot", sr.StatusCode(), sr.Body, api.ErrInvalidState)

	// A standby instance frees its memory: the big one fits now.
	if r, _ := c.CreateHostInstanceWithResponse(ctx, "i-2", big); r.StatusCode() != 201 {
		t.Fatalf("create after standby: %s", r.Body)
	}
	ls, _ := c.ListHostSnapshotsWithResponse(ctx)
	if ls.JSON200 == nil || len(ls.JSON200.Items) != 1 || ls.JSON200.Items[0].Id != "s-i-1" {
		t.Fatalf("snapshots: %s", ls.Body)
	}
	gs, _ := c.GetHostSnapshotWithResponse(ctx, "s-nope")
	wantCode(t, "get absent snapshot", gs.StatusCode(), gs.Body, api.ErrNotFound)
	ds, _ := c.DeleteHostSnapshotWithResponse(ctx, "s-i-1")
	wantCode(t, "delete the standby snapshot", ds.StatusCode(), ds.Body, api.ErrConflict)

	fr := hostapi.ForkRequest{InstanceId: "i-3", Spec: hostapi.InstanceSpec{Name: "copy", Image: "default", MemoryMib: 128, Vcpus: 1}}
	fk, _ := c.ForkHostSnapshotWithResponse(ctx, "s-i-1", fr)
	wantCode(t, "fork beyond capacity", fk.StatusCode(), fk.Body, api.ErrNoCapacity)
	if r, _ := c.DeleteHostInstanceWithResponse(ctx, "i-2"); r.StatusCode() != 204 {
		t.Fatal("delete i-2")
	}
	for i, want := range []int{201, 200} {
		fk, err := c.ForkHostSnapshotWithResponse(ctx, "s-i-1", fr)
		if err != nil || fk.StatusCode() != want {
			t.Fatalf("fork %d: %v %d %s", i, err, fk.StatusCode(), fk.Body)
		}
	}
	fr.Spec.Name = "other"
	fk, _ = c.ForkHostSnapshotWithResponse(ctx, "s-i-1", fr)
	wantCode(t, "fork to an existing id with another name", fk.StatusCode(), fk.Body, api.ErrConflict)
	fk, _ = c.ForkHostSnapshotWithResponse(ctx, "s-unknown", hostapi.ForkRequest{InstanceId: "i-4", Spec: fr.Spec})
	wantCode(t, "fork of an unknown snapshot", fk.StatusCode(), fk.Body, api.ErrNotFound)

	rr, _ := c.RestoreHostInstanceWithResponse(ctx, "i-1", hostapi.RestoreRequest{SnapshotId: "s-wrong", Spec: spec})
	// Another snapshot is a rollback, which never drops a standby that is
	// not central (rollback_test.go has the rest).
	wantCode(t, "restore from another snapshot", rr.StatusCode(), rr.Body, api.ErrInvalidState)
	if r, _ := c.DeleteHostInstanceWithResponse(ctx, "i-3"); r.StatusCode() != 204 {
		t.Fatal("delete i-3")
	}
	for i := range 2 {
		rr, err := c.RestoreHostInstanceWithResponse(ctx, "i-1", hostapi.RestoreRequest{SnapshotId: "s-i-1", Spec: spec})
		if err != nil || rr.JSON200 == nil || rr.JSON200.State != api.InstanceStateRunning {
			t.Fatalf("restore %d: %v %s", i, err, rr.Body)
		}
	}
	// A new server process over the same manager state (a restarted
	// daemon) still recognises the retried restore: the manager's
	// metadata says which snapshot the VM was resumed from.
	_, _, c2 := serve(t, f, Options{Capacity: api.Resources{MemoryMib: 300, Vcpus: 4}})
	if rr, err := c2.RestoreHostInstanceWithResponse(ctx, "i-1", hostapi.RestoreRequest{SnapshotId: "s-i-1", Spec: spec}); err != nil || rr.JSON200 == nil {
		t.Fatalf("restore retried after a restart: %v %d %s", err, rr.StatusCode(), rr.Body)
	}
	rr, _ = c2.RestoreHostInstanceWithResponse(ctx, "i-1", hostapi.RestoreRequest{SnapshotId: "s-other", Spec: spec})
	wantCode(t, "restore of a running instance from another snapshot", rr.StatusCode(), rr.Body, api.ErrInvalidState)
	rr, _ = c.RestoreHostInstanceWithResponse(ctx, "i-9", hostapi.RestoreRequest{SnapshotId: "s-gone", Spec: spec})
	wantCode(t, "restore of an unknown snapshot", rr.StatusCode(), rr.Body, api.ErrNotFound)
	cs, _ := c.CreateHostSnapshotWithResponse(ctx, "i-1", hostapi.SnapshotRequest{SnapshotId: "s-n", Name: "n", Kind: api.SnapshotKindStandby})
	wantCode(t, "named snapshot", cs.StatusCode(), cs.Body, api.ErrInvalidState)
	gj, _ := c.GetHostJobWithResponse(ctx, "s-none")
	wantCode(t, "get absent job", gj.StatusCode(), gj.Body, api.ErrNotFound)
}

type fakeCache struct{}

func (fakeCache) Stats() cache.Stats { return cache.Stats{Entries: 2, Bytes: 20, MaxBytes: 100} }

// TestReport: the heartbeat body says what the host holds, and a failing
// upload makes the host degraded.
func TestReport(t *testing.T) {
	f := newFake(testDigest)
	s, _, c := serve(t, f, Options{Capacity: api.Resources{MemoryMib: 1024, Vcpus: 2}, Cache: fakeCache{}})
	ctx := context.Background()
	c.CreateHostInstanceWithResponse(ctx, "i-1", spec)
	c.CreateHostInstanceWithResponse(ctx, "i-2", spec)
	c.StandbyHostInstanceWithResponse(ctx, "i-2", hostapi.StandbyRequest{SnapshotId: "s-i-2", Compression: api.AppliedCompression{Algorithm: "lz4"}})
	f.mu.Lock()
	f.jobs = []manager.Job{{ID: "s-i-2", Kind: manager.JobKindUpload, InstanceID: "i-2", State: manager.JobRetrying, Error: "store unreachable",
		Progress: manager.Progress{Total: 100, Raw: 50}}}
	f.mu.Unlock()
	hb, err := s.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hb.Instances) != 2 || len(hb.Snapshots) != 1 || len(hb.Jobs) != 1 || hb.Allocated.MemoryMib != 128 || hb.Allocated.Vcpus != 1 ||
		hb.Capacity.MemoryMib != 1024 || hb.Cache.Chunks != 2 || hb.Cache.LimitBytes != 100 {
		t.Fatalf("report %+v", hb)
	}
	if hb.Health.Status != hostapi.HostHealthStatusDegraded || hb.Health.Message == nil || !strings.Contains(*hb.Health.Message, "store unreachable") {
		t.Errorf("health %+v", hb.Health)
	}
	if j := hb.Jobs[0]; j.Progress == nil || j.Progress.Done != 0.5 || j.State != api.JobStateRunning {
		t.Errorf("job %+v", j)
	}
	gi, _ := c.GetHostInstanceWithResponse(ctx, "i-2")
	if gi.JSON200 == nil || gi.JSON200.Job == nil || gi.JSON200.Job.Id != "s-i-2" {
		t.Errorf("instance without its job: %s", gi.Body)
	}
}

// TestCloseCancelsOperations: Close cancels a create in flight, which
// answers host_unavailable, and refuses new ones.
func TestCloseCancelsOperations(t *testing.T) {
	f := newFake(testDigest)
	f.bootFor = time.Hour
	s, _, c := serve(t, f, Options{})
	ctx := context.Background()
	done := make(chan *hostapi.CreateHostInstanceResponse, 1)
	go func() {
		r, _ := c.CreateHostInstanceWithResponse(ctx, "i-1", spec)
		done <- r
	}()
	for {
		f.mu.Lock()
		n := f.creates
		f.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Close()
	r := <-done
	wantCode(t, "create cancelled by Close", r.StatusCode(), r.Body, api.ErrHostUnavailable)
	r2, _ := c.CreateHostInstanceWithResponse(ctx, "i-2", spec)
	wantCode(t, "create after Close", r2.StatusCode(), r2.Body, api.ErrHostUnavailable)
}

// TestCreateRecordsPolicy: the instance spec's snapshot policy and image
// name reach the manager (which records them in manifests) and come back
// on the instance.
func TestCreateRecordsPolicy(t *testing.T) {
	f := newFake(testDigest)
	_, _, c := serve(t, f, Options{})
	ctx := context.Background()
	sp := spec
	sp.SnapshotPolicy = &api.SnapshotPolicy{Compression: &api.Compression{Algorithm: ptr("zstd"), Level: ptr(5)}}
	r, err := c.CreateHostInstanceWithResponse(ctx, "i-1", sp)
	if err != nil || r.JSON201 == nil {
		t.Fatalf("create: %v %s", err, r.Body)
	}
	in, _ := f.Get(ctx, "i-1")
	if p := in.SnapshotPolicy; p == nil || p.Algorithm != "zstd" || p.Level == nil || *p.Level != 5 || in.Image != "default" {
		t.Fatalf("manager got policy %+v, image %q", p, in.Image)
	}
	if p := r.JSON201.SnapshotPolicy; p == nil || p.Compression == nil || *p.Compression.Level != 5 {
		t.Fatalf("instance answered %s", r.Body)
	}
}
