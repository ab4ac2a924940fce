package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

type resp interface {
	StatusCode() int
	GetBody() []byte
}

// call adapts a generated client call to (status, body).
func call[R resp](r R, err error) (int, []byte, error) {
	if err != nil {
		return 0, nil, err
	}
	return r.StatusCode(), r.GetBody(), nil
}

// fixture: host-a runs "run"; "sby" is on standby with a central
// snapshot; "named" is a named snapshot of "run".
type fixture struct {
	e                *env
	a, b             *fakeHost
	run, sby         api.Instance
	sbySnap, named   string
	noAuth, badToken *api.ClientWithResponses
	clusterAsUser    *api.ClientWithResponses
	userAsCluster    *hostapi.ClientWithResponses
}

func newFixture(t *testing.T) *fixture {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	f := &fixture{e: e}
	f.a = e.addHost("host-a", 4096, 8)
	f.b = e.addHost("host-b", 2048, 4)
	f.run = e.create("run", 256, 1, "host-a", nil)
	f.sby = e.create("sby", 256, 1, "host-a", &api.Compression{Algorithm: ptr("lz4")})
	f.sby = e.standby(f.sby.Id, nil)
	f.sbySnap = *f.sby.SnapshotId
	if _, err := f.a.commit(ctx, f.sbySnap); err != nil {
		t.Fatal(err)
	}
	e.heartbeatAll()
	// Central and read from its manifest: nothing changes behind the
	// tests' before/after comparisons.
	waitFor(t, "standby snapshot central", func() bool {
		s := e.snapshot(f.sbySnap)
		return s.State == api.SnapshotStateCentral && s.CommittedAt != nil
	})
	r, err := e.c.CreateSnapshotWithResponse(ctx, f.run.Id, api.CreateSnapshotRequest{Name: "named", Kind: api.SnapshotKindStandby})
	if err != nil || r.JSON201 == nil {
		t.Fatalf("named snapshot: %v %s", err, r.Body)
	}
	f.named = r.JSON201.Id
	mk := func(editors ...api.ClientOption) *api.ClientWithResponses {
		c, err := api.NewClientWithResponses(e.ts.URL, editors...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f.noAuth = mk()
	f.badToken = mk(api.WithRequestEditorFn(api.BearerAuth("wrong-token-0123456789")))
	f.clusterAsUser = mk(api.WithRequestEditorFn(api.BearerAuth(clusterToken)))
	f.userAsCluster, err = hostapi.NewClientWithResponses(e.ts.URL, hostapi.WithRequestEditorFn(hostapi.RequestEditorFn(api.BearerAuth(userToken))))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const jsonCT = "application/json"

// TestBadInput: every endpoint, every kind of bad input, gets its
// documented 4xx and code, and changes nothing a user can list.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	e := f.e
	c := e.c
	ctx := context.Background()
	run, sby := f.run.Id, f.sby.Id
	body := func(s string) io.Reader { return strings.NewReader(s) }
	huge := `{"name":"x","image":"` + strings.Repeat("a", 2<<20) + `","memory_mib":256,"vcpus":1}`
	longID := strings.Repeat("a", 64)
	escapes := []string{"../etc", "..%2Fetc", "a/b", longID, "ABC", "-a", "a.b"}

	type tc struct {
		name string
		do   func() (int, []byte, error)
		code api.ErrorCode
	}
	createRaw := func(s string) func() (int, []byte, error) {
		return func() (int, []byte, error) {
			return call(c.CreateInstanceWithBodyWithResponse(ctx, jsonCT, body(s)))
		}
	}
	createReq := func(r api.CreateInstanceRequest) func() (int, []byte, error) {
		return func() (int, []byte, error) { return call(c.CreateInstanceWithResponse(ctx, r)) }
	}
	pol := func(alg string, level int) *api.SnapshotPolicy {
		return &api.SnapshotPolicy{Compression: &api.Compression{Algorithm: &alg, Level: &level}}
	}
	ok := api.CreateInstanceRequest{Name: "fresh", Image: "default", MemoryMib: 256, Vcpus: 1}
	with := func(m func(*api.CreateInstanceRequest)) api.CreateInstanceRequest { r := ok; m(&r); return r }
	standbyRaw := func(id, s string) func() (int, []byte, error) {
		return func() (int, []byte, error) {
			return call(c.StandbyInstanceWithBodyWithResponse(ctx, id, jsonCT, body(s)))
		}
	}
	snapRaw := func(id, s string) func() (int, []byte, error) {
		return func() (int, []byte, error) {
			return call(c.CreateSnapshotWithBodyWithResponse(ctx, id, jsonCT, body(s)))
		}
	}
	const (
		bad    = api.ErrorCodeInvalidRequest
		badC   = api.ErrorCodeInvalidSnapshotCompression
		badP   = api.ErrorCodeInvalidSnapshotPolicy
		unauth = api.ErrorCodeUnauthorized
		nf     = api.ErrorCodeNotFound
		state  = api.ErrorCodeInvalidState
		confl  = api.ErrorCodeConflict
		nocap  = api.ErrorCodeNoCapacity
	)
	cases := []tc{
		// POST /v1/instances
		{"create/malformed", createRaw(`{"name":`), bad},
		{"create/empty body", createRaw(``), bad},
		{"create/not an object", createRaw(`[1,2]`), bad},
		{"create/wrong type", createRaw(`{"name":"x","image":"default","memory_mib":"big","vcpus":1}`), bad},
		{"create/int overflow", createRaw(`{"name":"x","image":"default","memory_mib":99999999999,"vcpus":1}`), bad},
		{"create/unknown field", createRaw(`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"colour":"red"}`), bad},
		{"create/nested unknown field", createRaw(`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"snapshot_policy":{"compression":{"algo":"zstd"}}}`), bad},
		{"create/oversize body", createRaw(huge), bad},
		{"create/memory too small", createReq(with(func(r *api.CreateInstanceRequest) { r.MemoryMib = 32 })), bad},
		{"create/memory too large", createReq(with(func(r *api.CreateInstanceRequest) { r.MemoryMib = 2 << 20 })), bad},
		{"create/vcpus 0", createReq(with(func(r *api.CreateInstanceRequest) { r.Vcpus = 0 })), bad},
		{"create/vcpus 300", createReq(with(func(r *api.CreateInstanceRequest) { r.Vcpus = 300 })), bad},
		{"create/name upper case", createReq(with(func(r *api.CreateInstanceRequest) { r.Name = "BOX" })), bad},
		{"create/name path", createReq(with(func(r *api.CreateInstanceRequest) { r.Name = "../x" })), bad},
		{"create/name long", createReq(with(func(r *api.CreateInstanceRequest) { r.Name = longID })), bad},
		{"create/image empty", createReq(with(func(r *api.CreateInstanceRequest) { r.Image = "" })), bad},
		{"create/host bad id", createReq(with(func(r *api.CreateInstanceRequest) { r.Host = ptr("../host-a") })), bad},
		{"create/policy zstd 25", createReq(with(func(r *api.CreateInstanceRequest) { r.SnapshotPolicy = pol("zstd", 25) })), badP},
		{"create/policy lz4 10", createReq(with(func(r *api.CreateInstanceRequest) { r.SnapshotPolicy = pol("lz4", 10) })), badP},
		{"create/policy zstd 0", createReq(with(func(r *api.CreateInstanceRequest) { r.SnapshotPolicy = pol("zstd", 0) })), badP},
		{"create/policy gzip", createReq(with(func(r *api.CreateInstanceRequest) { r.SnapshotPolicy = pol("gzip", 1) })), badP},
		{"create/policy empty algorithm", createRaw(`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"snapshot_policy":{"compression":{"algorithm":""}}}`), badP},
		{"create/policy level without algorithm", createRaw(`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"snapshot_policy":{"compression":{"level":3}}}`), badP},
		{"create/policy none with enabled", createRaw(`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"snapshot_policy":{"compression":{"algorithm":"none","enabled":true}}}`), badP},
		{"create/unknown host", createReq(with(func(r *api.CreateInstanceRequest) { r.Host = ptr("nope") })), nf},
		{"create/name taken", createReq(with(func(r *api.CreateInstanceRequest) { r.Name = "run" })), confl},
		{"create/no room anywhere", createReq(with(func(r *api.CreateInstanceRequest) { r.MemoryMib = 100000 })), nocap},
		{"create/no room on host", createReq(with(func(r *api.CreateInstanceRequest) { r.Host = ptr("host-b"); r.MemoryMib = 4000 })), nocap},

		// GET/DELETE /v1/instances/{id}
		{"get/unknown", func() (int, []byte, error) { return call(c.GetInstanceWithResponse(ctx, "i-0000")) }, nf},
		{"delete/unknown", func() (int, []byte, error) { return call(c.DeleteInstanceWithResponse(ctx, "i-0000")) }, nf},
		{"list/bad state", func() (int, []byte, error) {
			return call(c.ListInstancesWithResponse(ctx, &api.ListInstancesParams{State: ptr(api.InstanceState("Sleeping"))}))
		}, bad},
		{"list/bad host", func() (int, []byte, error) {
			return call(c.ListInstancesWithResponse(ctx, &api.ListInstancesParams{Host: ptr("HOST")}))
		}, bad},
		{"list/bad name", func() (int, []byte, error) {
			return call(c.ListInstancesWithResponse(ctx, &api.ListInstancesParams{Name: ptr("a b")}))
		}, bad},

		// POST /v1/instances/{id}/standby
		{"standby/malformed", standbyRaw(run, `{"compression":`), bad},
		{"standby/wrong type", standbyRaw(run, `{"compression":{"level":"high"}}`), bad},
		{"standby/unknown field", standbyRaw(run, `{"compresion":{}}`), bad},
		{"standby/nested unknown field", standbyRaw(run, `{"compression":{"algo":"zstd"}}`), bad},
		{"standby/zstd 20", standbyRaw(run, `{"compression":{"algorithm":"zstd","level":20}}`), badC},
		{"standby/lz4 -1", standbyRaw(run, `{"compression":{"algorithm":"LZ4","level":-1}}`), badC},
		{"standby/brotli", standbyRaw(run, `{"compression":{"algorithm":"brotli"}}`), badC},
		{"standby/empty algorithm", standbyRaw(run, `{"compression":{"algorithm":""}}`), badC},
		{"standby/oversize", standbyRaw(run, `{"compression":{"algorithm":"`+strings.Repeat("z", 2<<20)+`"}}`), bad},
		{"standby/unknown", standbyRaw("i-0000", `{}`), nf},
		{"standby/not running", standbyRaw(sby, `{}`), state},

		// POST /v1/instances/{id}/restore
		{"restore/running", func() (int, []byte, error) {
			return call(c.RestoreInstanceWithResponse(ctx, run, api.RestoreRequest{}))
		}, state},
		{"restore/unknown field", func() (int, []byte, error) {
			return call(c.RestoreInstanceWithBodyWithResponse(ctx, sby, jsonCT, body(`{"hots":"host-b"}`)))
		}, bad},
		{"restore/wrong type", func() (int, []byte, error) {
			return call(c.RestoreInstanceWithBodyWithResponse(ctx, sby, jsonCT, body(`{"host":7}`)))
		}, bad},
		{"restore/bad host", func() (int, []byte, error) {
			return call(c.RestoreInstanceWithResponse(ctx, sby, api.RestoreRequest{Host: ptr("Host-B")}))
		}, bad},
		{"restore/unknown host", func() (int, []byte, error) {
			return call(c.RestoreInstanceWithResponse(ctx, sby, api.RestoreRequest{Host: ptr("host-z")}))
		}, nf},
		{"restore/unknown", func() (int, []byte, error) {
			return call(c.RestoreInstanceWithResponse(ctx, "i-0000", api.RestoreRequest{}))
		}, nf},

		// POST /v1/instances/{id}/fork
		{"fork/running", func() (int, []byte, error) {
			return call(c.ForkInstanceWithResponse(ctx, run, api.ForkRequest{Name: "f"}))
		}, state},
		{"fork/no name", func() (int, []byte, error) {
			return call(c.ForkInstanceWithBodyWithResponse(ctx, sby, jsonCT, body(`{}`)))
		}, bad},
		{"fork/unknown field", func() (int, []byte, error) {
			return call(c.ForkInstanceWithBodyWithResponse(ctx, sby, jsonCT, body(`{"name":"f","memory_mib":1}`)))
		}, bad},
		{"fork/name taken", func() (int, []byte, error) {
			return call(c.ForkInstanceWithResponse(ctx, sby, api.ForkRequest{Name: "run"}))
		}, confl},
		{"fork/unknown", func() (int, []byte, error) {
			return call(c.ForkInstanceWithResponse(ctx, "i-0000", api.ForkRequest{Name: "f"}))
		}, nf},

		// POST /v1/instances/{id}/snapshots
		{"snapshot/malformed", snapRaw(run, `{"name":"s",`), bad},
		{"snapshot/bad kind", snapRaw(run, `{"name":"s","kind":"frozen"}`), bad},
		{"snapshot/no kind", snapRaw(run, `{"name":"s"}`), bad},
		{"snapshot/unknown field", snapRaw(run, `{"name":"s","kind":"standby","when":"now"}`), bad},
		{"snapshot/zstd 99", snapRaw(run, `{"name":"s","kind":"standby","compression":{"algorithm":"zstd","level":99}}`), badC},
		{"snapshot/stopped with compression", snapRaw(run, `{"name":"s","kind":"stopped","compression":{"algorithm":"zstd"}}`), bad},
		{"snapshot/name taken", snapRaw(run, `{"name":"named","kind":"standby"}`), confl},
		{"snapshot/unknown instance", snapRaw("i-0000", `{"name":"s","kind":"standby"}`), nf},

		// /v1/snapshots
		{"snapshots/list bad state", func() (int, []byte, error) {
			return call(c.ListSnapshotsWithResponse(ctx, &api.ListSnapshotsParams{State: ptr(api.SnapshotState("lost"))}))
		}, bad},
		{"snapshots/list bad instance", func() (int, []byte, error) {
			return call(c.ListSnapshotsWithResponse(ctx, &api.ListSnapshotsParams{Instance: ptr("../i")}))
		}, bad},
		{"snapshots/get unknown", func() (int, []byte, error) { return call(c.GetSnapshotWithResponse(ctx, "sn-0000")) }, nf},
		{"snapshots/delete unknown", func() (int, []byte, error) { return call(c.DeleteSnapshotWithResponse(ctx, "sn-0000")) }, nf},
		{"snapshots/delete standby of standby instance", func() (int, []byte, error) {
			return call(c.DeleteSnapshotWithResponse(ctx, f.sbySnap))
		}, state},
		{"snapshots/fork unknown", func() (int, []byte, error) {
			return call(c.ForkSnapshotWithResponse(ctx, "sn-0000", api.ForkRequest{Name: "f"}))
		}, nf},
		{"snapshots/fork malformed", func() (int, []byte, error) {
			return call(c.ForkSnapshotWithBodyWithResponse(ctx, f.named, jsonCT, body(`{"name":}`)))
		}, bad},
		{"snapshots/fork no room on host", func() (int, []byte, error) {
			return call(c.ForkSnapshotWithResponse(ctx, f.sbySnap, api.ForkRequest{Name: "f", Host: ptr("host-z")}))
		}, nf},
		{"snapshots/restore unknown", func() (int, []byte, error) {
			return call(c.RestoreSnapshotWithResponse(ctx, "sn-0000", api.RestoreRequest{}))
		}, nf},
		{"snapshots/restore running source", func() (int, []byte, error) {
			return call(c.RestoreSnapshotWithResponse(ctx, f.named, api.RestoreRequest{}))
		}, state},
		{"snapshots/restore unknown field", func() (int, []byte, error) {
			return call(c.RestoreSnapshotWithBodyWithResponse(ctx, f.sbySnap, jsonCT, body(`{"host":"host-b","x":1}`)))
		}, bad},

		// Tokens.
		{"auth/none", func() (int, []byte, error) { return call(f.noAuth.ListInstancesWithResponse(ctx, nil)) }, unauth},
		{"auth/wrong", func() (int, []byte, error) { return call(f.badToken.ListInstancesWithResponse(ctx, nil)) }, unauth},
		{"auth/cluster token on user API", func() (int, []byte, error) {
			return call(f.clusterAsUser.ListInstancesWithResponse(ctx, nil))
		}, unauth},
		{"auth/cluster token creates", func() (int, []byte, error) {
			return call(f.clusterAsUser.CreateInstanceWithResponse(ctx, ok))
		}, unauth},
		{"auth/none on metrics", func() (int, []byte, error) { return call(f.noAuth.GetMetricsWithResponse(ctx)) }, unauth},
		{"auth/none on openapi", func() (int, []byte, error) { return call(f.noAuth.GetOpenAPIWithResponse(ctx)) }, unauth},
		{"auth/none on hosts", func() (int, []byte, error) { return call(f.noAuth.ListHostsWithResponse(ctx)) }, unauth},
		{"auth/user token registers", func() (int, []byte, error) {
			return call(f.userAsCluster.RegisterHostWithResponse(ctx, hostapi.RegisterRequest{Id: "evil", Address: "http://127.0.0.1:9", Capacity: api.Resources{MemoryMib: 1 << 20, Vcpus: 64}}))
		}, unauth},
		{"auth/user token heartbeats", func() (int, []byte, error) {
			return call(f.userAsCluster.HeartbeatHostWithResponse(ctx, "host-a", f.a.heartbeat()))
		}, unauth},

		// Cluster endpoints.
		{"cluster/register unknown field", func() (int, []byte, error) {
			return call(e.cluster.RegisterHostWithBodyWithResponse(ctx, jsonCT, body(`{"id":"h","address":"http://x:1","capacity":{"memory_mib":1,"vcpus":1},"zone":"z"}`)))
		}, bad},
		{"cluster/register bad address", func() (int, []byte, error) {
			return call(e.cluster.RegisterHostWithResponse(ctx, hostapi.RegisterRequest{Id: "h", Address: "file:///etc/passwd", Capacity: api.Resources{MemoryMib: 1, Vcpus: 1}}))
		}, bad},
		{"cluster/register bad id", func() (int, []byte, error) {
			return call(e.cluster.RegisterHostWithResponse(ctx, hostapi.RegisterRequest{Id: "../h", Address: "http://x:1", Capacity: api.Resources{MemoryMib: 1, Vcpus: 1}}))
		}, bad},
		{"cluster/register negative capacity", func() (int, []byte, error) {
			return call(e.cluster.RegisterHostWithResponse(ctx, hostapi.RegisterRequest{Id: "h", Address: "http://x:1", Capacity: api.Resources{MemoryMib: -1, Vcpus: 1}}))
		}, bad},
		{"cluster/heartbeat unknown host", func() (int, []byte, error) {
			return call(e.cluster.HeartbeatHostWithResponse(ctx, "host-z", f.a.heartbeat()))
		}, nf},
		{"cluster/heartbeat malformed", func() (int, []byte, error) {
			return call(e.cluster.HeartbeatHostWithBodyWithResponse(ctx, "host-a", jsonCT, body(`{"capacity":`)))
		}, bad},
		{"cluster/heartbeat trailing data", func() (int, []byte, error) {
			return call(e.cluster.HeartbeatHostWithBodyWithResponse(ctx, "host-a", jsonCT, body(`{} {}`)))
		}, bad},
	}
	// Ids that try to escape a path, on every endpoint with an id.
	for _, id := range escapes {
		cases = append(cases,
			tc{"get instance " + id, func() (int, []byte, error) { return call(c.GetInstanceWithResponse(ctx, id)) }, bad},
			tc{"delete instance " + id, func() (int, []byte, error) { return call(c.DeleteInstanceWithResponse(ctx, id)) }, bad},
			tc{"standby " + id, standbyRaw(id, `{}`), bad},
			tc{"restore " + id, func() (int, []byte, error) { return call(c.RestoreInstanceWithResponse(ctx, id, api.RestoreRequest{})) }, bad},
			tc{"fork instance " + id, func() (int, []byte, error) {
				return call(c.ForkInstanceWithResponse(ctx, id, api.ForkRequest{Name: "f"}))
			}, bad},
			tc{"snapshot " + id, snapRaw(id, `{"name":"s","kind":"standby"}`), bad},
			tc{"get snapshot " + id, func() (int, []byte, error) { return call(c.GetSnapshotWithResponse(ctx, id)) }, bad},
			tc{"delete snapshot " + id, func() (int, []byte, error) { return call(c.DeleteSnapshotWithResponse(ctx, id)) }, bad},
			tc{"fork snapshot " + id, func() (int, []byte, error) {
				return call(c.ForkSnapshotWithResponse(ctx, id, api.ForkRequest{Name: "f"}))
			}, bad},
			tc{"restore snapshot " + id, func() (int, []byte, error) {
				return call(c.RestoreSnapshotWithResponse(ctx, id, api.RestoreRequest{}))
			}, bad},
			tc{"heartbeat " + id, func() (int, []byte, error) {
				return call(e.cluster.HeartbeatHostWithResponse(ctx, id, f.a.heartbeat()))
			}, bad},
		)
	}

	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			before := e.state()
			calls := f.a.callCount() + f.b.callCount()
			status, b, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			want := api.Sentinel(tt.code)
			got := api.FromResponse(status, b)
			if status != want.Status() || !errors.Is(got, want) {
				t.Fatalf("got %d %s, want %d %s", status, truncateB(b), want.Status(), tt.code)
			}
			var e2 *api.Error
			if !errors.As(got, &e2) || e2.Message == "" {
				t.Fatalf("no message: %s", truncateB(b))
			}
			if after := e.state(); after != before {
				t.Fatalf("state changed by a rejected request:\nbefore %s\nafter  %s", before, after)
			}
			if n := f.a.callCount() + f.b.callCount(); n != calls {
				t.Fatalf("a rejected request reached a host (%d calls)", n-calls)
			}
		})
	}
}

func truncateB(b []byte) string {
	if len(b) > 300 {
		return fmt.Sprintf("%s...(%d bytes)", b[:300], len(b))
	}
	return string(b)
}

// TestHostRefuses: a host's own refusal keeps its code (invalid_state →
// 409), an unreachable host is 503 host_unavailable, and neither changes
// the catalog.
func TestHostRefuses(t *testing.T) {
	f := newFixture(t)
	e := f.e
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		inject func()
		do     func() (int, []byte, error)
		code   api.ErrorCode
	}{
		{"standby invalid_state", func() { f.a.fail["Standby"] = api.NewError(api.ErrorCodeInvalidState, "guest is paused") },
			func() (int, []byte, error) {
				return call(e.c.StandbyInstanceWithBodyWithResponse(ctx, f.run.Id, "", nil))
			},
			api.ErrorCodeInvalidState},
		{"snapshot conflict", func() { f.a.fail["CreateSnapshot"] = api.NewError(api.ErrorCodeConflict, "busy") },
			func() (int, []byte, error) {
				return call(e.c.CreateSnapshotWithResponse(ctx, f.run.Id, api.CreateSnapshotRequest{Name: "s2", Kind: api.SnapshotKindStopped}))
			}, api.ErrorCodeConflict},
		{"delete unreachable", func() { f.a.unreachable = true },
			func() (int, []byte, error) { return call(e.c.DeleteInstanceWithResponse(ctx, f.run.Id)) },
			api.ErrorCodeHostUnavailable},
		{"create host no capacity", func() { f.a.fail["CreateInstance"] = api.NewError(api.ErrorCodeNoCapacity, "full") },
			func() (int, []byte, error) {
				return call(e.c.CreateInstanceWithResponse(ctx, api.CreateInstanceRequest{Name: "n", Image: "default", MemoryMib: 128, Vcpus: 1, Host: ptr("host-a")}))
			}, api.ErrorCodeNoCapacity},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := e.state()
			f.a.mu.Lock()
			tt.inject()
			f.a.mu.Unlock()
			defer func() { f.a.mu.Lock(); f.a.unreachable = false; f.a.mu.Unlock() }()
			status, b, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			want := api.Sentinel(tt.code)
			if status != want.Status() || !errors.Is(api.FromResponse(status, b), want) {
				t.Fatalf("got %d %s, want %s", status, b, tt.code)
			}
			if after := e.state(); after != before {
				t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestSystemEndpoints: /healthz without a token, /openapi.yaml verbatim,
// /metrics in Prometheus format with the server's instruments, unknown
// routes 404 with a code.
func TestSystemEndpoints(t *testing.T) {
	f := newFixture(t)
	e := f.e
	ctx := context.Background()
	h, err := f.noAuth.GetHealthWithResponse(ctx)
	if err != nil || h.JSON200 == nil || h.JSON200.Status != api.HealthStatusOk {
		t.Fatalf("healthz: %v %+v", err, h)
	}
	// The generated GetOpenAPIWithResponse tries to decode the YAML into
	// a string and fails; the raw call is what a user does anyway.
	o, err := e.c.GetOpenAPI(ctx)
	if err != nil {
		t.Fatalf("openapi: %v", err)
	}
	ob, _ := io.ReadAll(o.Body)
	o.Body.Close()
	if o.StatusCode != 200 || string(ob) != api.OpenAPIYAML() || o.Header.Get("Content-Type") != api.OpenAPIContentType {
		t.Fatalf("openapi: %d %s %.200s", o.StatusCode, o.Header.Get("Content-Type"), ob)
	}
	m, err := e.c.GetMetricsWithResponse(ctx)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	if m.StatusCode() != 200 {
		t.Fatalf("metrics: %d %.200s", m.StatusCode(), m.Body)
	}
	for _, want := range []string{
		`hangar_server_requests_total{method="POST",otel_scope_name`, `route="/v1/instances"`, `status="201"`,
		`hangar_server_hosts{otel_scope_name="github.com/hangar-vm/hangar/server",otel_scope_version="",state="available"} 2`,
		`hangar_server_placements_total{op="create"`, `reason="explicit"`, `hangar_store_calls_total`,
	} {
		if !strings.Contains(string(m.Body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	req, _ := http.NewRequest("GET", e.ts.URL+"/v2/nothing", nil)
	req.Header.Set("Authorization", "Bearer "+userToken)
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if rsp.StatusCode != 404 || !errors.Is(api.FromResponse(rsp.StatusCode, b), api.ErrNotFound) || !strings.Contains(string(b), `"code":"not_found"`) {
		t.Fatalf("unknown route: %d %s", rsp.StatusCode, b)
	}
}
