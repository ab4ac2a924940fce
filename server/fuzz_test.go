package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/server"
	"github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// fuzzServer is newFixture's world built for a fuzz target: a server on a
// real fs store with two fake hosts, a Running instance ($run), a Standby
// one ($sby) whose standby snapshot ($sbySnap) is central, and a named
// snapshot of $run ($named). The fuzz targets call its handler directly
// (no sockets, so that many inputs run per second). It lives as long as
// the fuzz target rather than one input, because env is tied to a
// *testing.T; every input starts from the same state, so that a crasher
// replays on its own: an accepted request that changed anything makes
// the next input rebuild the world.
type fuzzServer struct {
	tb    testing.TB // the fuzz target's F, or the input's T while it runs
	root  string     // lives as long as the fuzz target
	dir   string
	srv   *server.Server
	ts    *httptest.Server // the setup's generated clients talk to it
	hosts []*fakeHost
	ids   map[string]string // placeholder ("$run") -> id
	base  string            // state() of the fresh world
	dirty bool
}

// The placeholders seeds and inputs use for the fixture's ids, which
// differ from world to world.
var fuzzPlaceholders = []string{"$sbySnap", "$named", "$run", "$sby"}

func newFuzzServer(tb testing.TB) *fuzzServer {
	fz := &fuzzServer{tb: tb, root: tb.TempDir()}
	fz.build()
	tb.Cleanup(fz.close)
	return fz
}

func (fz *fuzzServer) close() {
	if fz.ts != nil {
		fz.ts.Close()
		_ = fz.srv.Close()
		_ = os.RemoveAll(fz.dir)
		fz.ts, fz.srv = nil, nil
	}
}

// build (re)creates the world, as newFixture does.
func (fz *fuzzServer) build() {
	tb := fz.tb
	tb.Helper()
	fz.close()
	var err error
	if fz.dir, err = os.MkdirTemp(fz.root, "world"); err != nil {
		tb.Fatal(err)
	}
	cfg := server.Config{
		Auth:     server.AuthConfig{UserToken: userToken, ClusterToken: clusterToken},
		Store:    server.StoreConfig{Kind: server.StoreFS, Dir: filepath.Join(fz.dir, "bucket")},
		StateDir: filepath.Join(fz.dir, "state"),
	}
	if err := os.MkdirAll(cfg.Store.Dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	store, err := fs.Open(cfg.Store.Dir)
	if err != nil {
		tb.Fatal(err)
	}
	repo, err := snapshot.New(store, snapshot.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	// Room for any one instance the API accepts (1 TiB, 256 vCPUs): a
	// valid request never meets no_capacity, so every 5xx is a bug.
	a := newFakeHost("host-a", 4<<20, 1024, repo, filepath.Join(fz.dir, "host-a"))
	b := newFakeHost("host-b", 4<<20, 1024, repo, filepath.Join(fz.dir, "host-b"))
	fz.hosts = []*fakeHost{a, b}
	for _, h := range fz.hosts {
		h.central = func(sid string) bool {
			_, err := repo.Manifest(context.Background(), sid)
			return err == nil
		}
	}
	fz.srv, err = server.New(cfg, server.WithClock(clk.Now), server.WithLogger(slog.New(slog.DiscardHandler)),
		server.WithHostDialer(func(id, _ string) (server.HostClient, error) {
			for _, h := range fz.hosts {
				if h.id == id {
					return h, nil
				}
			}
			return nil, fmt.Errorf("no host %s", id)
		}))
	if err != nil {
		tb.Fatal(err)
	}
	fz.ts = httptest.NewServer(fz.srv.Handler())
	c, err := api.NewClientWithResponses(fz.ts.URL, api.WithRequestEditorFn(api.BearerAuth(userToken)))
	if err != nil {
		tb.Fatal(err)
	}
	cluster, err := hostapi.NewClientWithResponses(fz.ts.URL, hostapi.WithRequestEditorFn(hostapi.RequestEditorFn(api.BearerAuth(clusterToken))))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	heartbeat := func() {
		for _, h := range fz.hosts {
			r, err := cluster.HeartbeatHostWithResponse(ctx, h.id, h.heartbeat())
			if err != nil || r.JSON200 == nil {
				tb.Fatalf("heartbeat %s: %v %s", h.id, err, r.Body)
			}
		}
	}
	for _, h := range fz.hosts {
		r, err := cluster.RegisterHostWithResponse(ctx, hostapi.RegisterRequest{
			Id: h.id, Address: "http://127.0.0.1:1/" + h.id, Capacity: h.capacity})
		if err != nil || r.JSON200 == nil {
			tb.Fatalf("register %s: %v %s", h.id, err, r.Body)
		}
	}
	heartbeat()
	create := func(name string, policy *api.Compression) api.Instance {
		req := api.CreateInstanceRequest{Name: name, Image: "default", MemoryMib: 256, Vcpus: 1, Host: ptr("host-a")}
		if policy != nil {
			req.SnapshotPolicy = &api.SnapshotPolicy{Compression: policy}
		}
		r, err := c.CreateInstanceWithResponse(ctx, req)
		if err != nil || r.JSON201 == nil {
			tb.Fatalf("create %s: %v %s", name, err, r.Body)
		}
		return *r.JSON201
	}
	run := create("run", nil)
	sby := create("sby", &api.Compression{Algorithm: ptr("lz4")})
	rs, err := c.StandbyInstanceWithResponse(ctx, sby.Id, api.StandbyRequest{})
	if err != nil || rs.JSON200 == nil || rs.JSON200.SnapshotId == nil {
		tb.Fatalf("standby: %v %s", err, rs.Body)
	}
	sbySnap := *rs.JSON200.SnapshotId
	if _, err := a.commit(ctx, sbySnap); err != nil {
		tb.Fatal(err)
	}
	heartbeat()
	// Central and read from its manifest: nothing changes behind the
	// before/after comparisons.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r, err := c.GetSnapshotWithResponse(ctx, sbySnap)
		if err == nil && r.JSON200 != nil && r.JSON200.State == api.SnapshotStateCentral && r.JSON200.CommittedAt != nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("standby snapshot %s never became central", sbySnap)
		}
	}
	rn, err := c.CreateSnapshotWithResponse(ctx, run.Id, api.CreateSnapshotRequest{Name: "named", Kind: api.SnapshotKindStandby})
	if err != nil || rn.JSON201 == nil {
		tb.Fatalf("named snapshot: %v %s", err, rn.Body)
	}
	fz.ids = map[string]string{"$run": run.Id, "$sby": sby.Id, "$sbySnap": sbySnap, "$named": rn.JSON201.Id}
	fz.dirty = false
	fz.base = fz.state()
}

// expand replaces the placeholders in s by this world's ids.
func (fz *fuzzServer) expand(s string) string {
	for _, p := range fuzzPlaceholders {
		s = strings.ReplaceAll(s, p, fz.ids[p])
	}
	return s
}

// do serves one request with the user token.
func (fz *fuzzServer) do(method, path string, body []byte) *httptest.ResponseRecorder {
	var r *http.Request
	if body == nil {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", jsonCT)
	}
	r.Header.Set("Authorization", "Bearer "+userToken)
	w := httptest.NewRecorder()
	fz.srv.Handler().ServeHTTP(w, r)
	return w
}

// state is what a user can list (instances, snapshots, hosts).
func (fz *fuzzServer) state() string {
	var sb strings.Builder
	for _, p := range []string{"/v1/instances", "/v1/snapshots", "/v1/hosts"} {
		w := fz.do("GET", p, nil)
		if w.Code != http.StatusOK {
			fz.tb.Fatalf("GET %s: %d %s", p, w.Code, w.Body)
		}
		sb.Write(w.Body.Bytes())
		sb.WriteByte('\n')
	}
	return sb.String()
}

func (fz *fuzzServer) hostCalls() []string {
	var calls []string
	for _, h := range fz.hosts {
		h.mu.Lock()
		for _, c := range h.calls {
			calls = append(calls, h.id+"."+c)
		}
		h.mu.Unlock()
	}
	return calls
}

// check serves method path body and holds the server to issue 5's rules
// for bad input: never a 5xx; an error is {code, message} with a
// documented code of its status; a rejected request changes nothing a
// user can list and reaches no host. An accepted request may change the
// world: the next input gets a fresh one.
func (fz *fuzzServer) check(t *testing.T, method, path string, body []byte) {
	fz.tb = t
	if fz.dirty {
		fz.build()
	}
	calls := len(fz.hostCalls())
	w := fz.do(method, path, body)
	if w.Code >= 500 {
		t.Fatalf("%s %s %q: %d %s", method, path, body, w.Code, truncateB(w.Body.Bytes()))
	}
	if w.Code < 400 {
		if after := fz.state(); after != fz.base || len(fz.hostCalls()) != calls {
			fz.dirty = true
		}
		return
	}
	var e api.Error
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || !e.Code.Valid() || e.Message == "" || api.StatusFor(e.Code) != w.Code {
		t.Fatalf("%s %s %q: %d with error body %s (%v)", method, path, body, w.Code, truncateB(w.Body.Bytes()), err)
	}
	if after := fz.state(); after != fz.base {
		fz.dirty = true
		t.Fatalf("%s %s %q: rejected with %d %s but changed state:\nbefore %s\nafter  %s", method, path, body, w.Code, e.Code, fz.base, after)
	}
	if c := fz.hostCalls(); len(c) != calls {
		fz.dirty = true
		t.Fatalf("%s %s %q: rejected with %d %s but reached a host: %v", method, path, body, w.Code, e.Code, c[calls:])
	}
}

// fuzzBodyRoutes are the public operations that take a JSON body, on the
// fixture objects for which a valid body succeeds.
var fuzzBodyRoutes = []struct{ path, valid string }{
	{"/v1/instances", `{"name":"fresh","image":"default","memory_mib":256,"vcpus":1,"snapshot_policy":{"compression":{"algorithm":"zstd","level":3}}}`},
	{"/v1/instances/$run/standby", `{"compression":{"algorithm":"zstd","level":1},"name":"park"}`},
	{"/v1/instances/$sby/restore", `{"host":"host-b"}`},
	{"/v1/instances/$sby/fork", `{"name":"twin","host":"host-b"}`},
	{"/v1/instances/$run/snapshots", `{"name":"s1","kind":"standby","compression":{"algorithm":"lz4","level":1}}`},
	{"/v1/snapshots/$named/fork", `{"name":"twin"}`},
	{"/v1/snapshots/$sbySnap/restore", `{}`},
}

// fuzzJunk is bad input of every kind, offered to every operation.
var fuzzJunk = []string{
	``, `{}`, `null`, `[]`, `"x"`, `0`, `{"a":`, `}`, "\xff\xfe\xfd", `{"name":"\xff"}`,
	`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"colour":"red"}`,
	`{"name":"x","image":"default","memory_mib":"256","vcpus":true}`,
	`{"name":"x","image":"default","memory_mib":1e400,"vcpus":-0}`,
	`{"name":"x","image":"default","memory_mib":99999999999999999999999,"vcpus":1.5}`,
	`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"host":"../host-a"}`,
	`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"snapshot_policy":{"compression":{"algorithm":"zstd","level":-2147483649}}}`,
	`{"name":"x","image":"default","memory_mib":256,"vcpus":1,"snapshot_policy":[{"x":{"y":[[[]]]}}]}`,
	`{"compression":{"algorithm":"zstd","level":99},"name":""}`,
	`{"compression":{"algorithm":"lz4","enabled":false}}`,
	`{"compression":null,"name":null,"host":null}`,
	`{"host":"host-z"}`, `{"host":""}`, `{"host":7}`,
	`{"name":"run"}`, `{"name":"twin","name":"twin"}`, `{"name":"\u0000"}`, `{"name":"a\ud800b"}`,
	`{"name":"s","kind":"frozen"}`, `{"name":"named","kind":"standby"}`,
	`{"name":"s","kind":"stopped","compression":{"algorithm":"none"}}`,
	strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000),
	strings.Repeat(`[`, 100000),
	`{"name":"` + strings.Repeat("n", 70000) + `"}`,
	"{\"name\":\"x\"}\n{\"name\":\"y\"}",
	"\ufeff{}", `{} trailing`,
}

func addBodySeeds(f *testing.F) {
	for op, r := range fuzzBodyRoutes {
		f.Add(uint8(op), []byte(r.valid))
		for _, j := range fuzzJunk {
			f.Add(uint8(op), []byte(j))
		}
	}
}

// FuzzRequestBodies sends arbitrary bytes as the body of every public
// operation that takes one (DESIGN §9, issue 5): see check for what it
// holds the server to.
func FuzzRequestBodies(f *testing.F) {
	addBodySeeds(f)
	fz := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		r := fuzzBodyRoutes[int(op)%len(fuzzBodyRoutes)]
		fz.check(t, "POST", fz.expand(r.path), body)
	})
}

// fuzzIDRoutes are the public operations with an id in their path, with
// a body that is valid for the fixture's objects.
var fuzzIDRoutes = []struct{ method, prefix, suffix, body string }{
	{"GET", "/v1/instances/", "", ""},
	{"DELETE", "/v1/instances/", "", ""},
	{"POST", "/v1/instances/", "/standby", `{}`},
	{"POST", "/v1/instances/", "/restore", `{}`},
	{"POST", "/v1/instances/", "/fork", `{"name":"twin"}`},
	{"POST", "/v1/instances/", "/snapshots", `{"name":"s1","kind":"stopped"}`},
	{"GET", "/v1/snapshots/", "", ""},
	{"DELETE", "/v1/snapshots/", "", ""},
	{"POST", "/v1/snapshots/", "/fork", `{"name":"twin"}`},
	{"POST", "/v1/snapshots/", "/restore", `{}`},
}

// FuzzPathIDs puts arbitrary strings, escaped, where an operation takes an
// id: a malformed or unknown id is a 400 or 404 with its code and changes
// nothing; no id reaches a host or a storage key unchecked.
func FuzzPathIDs(f *testing.F) {
	for op := range fuzzIDRoutes {
		for _, id := range []string{
			"$run", "$sby", "$sbySnap", "$named", "", ".", "..", "../etc", "..%2Fetc", "a/b", "$run/..", "$run/../$sby",
			"$sby\x00", " $sby", "$SBY", strings.ToUpper("$run"), "i-0000", "sn-0000", "-a", "a.b", strings.Repeat("a", 64),
			strings.Repeat("i-", 5000), "\xff\xfe", "é", "%", "?x=1", "#", "$run?", "$named#x", "\\..\\x", "i-\u202e",
		} {
			f.Add(uint8(op), id)
		}
	}
	fz := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, op uint8, id string) {
		r := fuzzIDRoutes[int(op)%len(fuzzIDRoutes)]
		var body []byte
		if r.body != "" {
			body = []byte(r.body)
		}
		fz.check(t, r.method, r.prefix+url.PathEscape(fz.expand(id))+r.suffix, body)
	})
}
