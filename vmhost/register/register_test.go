package register

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// fakeServer implements /cluster/v1 the way the spec says: strict bodies,
// bearer token, 404 for a heartbeat of an unknown host. failNext makes the
// next requests fail with a bare 503, as a proxy in front of a restarting
// server would.
type fakeServer struct {
	t     *testing.T
	token string

	mu         sync.Mutex
	hosts      map[string]hostapi.RegisterRequest
	registers  int
	heartbeats []hostapi.Heartbeat
	failNext   int
	requests   int
	interval   int32
	beat       chan struct{}
}

func newFakeServer(t *testing.T, token string) (*fakeServer, *httptest.Server) {
	f := &fakeServer{t: t, token: token, hosts: map[string]hostapi.RegisterRequest{}, interval: 1, beat: make(chan struct{}, 100)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cluster/v1/hosts", f.register)
	mux.HandleFunc("PUT /cluster/v1/hosts/{id}/heartbeat", f.heartbeat)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// gate applies the injected faults and the auth check; it reports whether
// the request may proceed.
func (f *fakeServer) gate(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	f.requests++
	fail := f.failNext > 0
	if fail {
		f.failNext--
	}
	f.mu.Unlock()
	if fail {
		http.Error(w, "upstream restarting", http.StatusServiceUnavailable)
		return false
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		writeJSON(w, 401, api.NewError(api.ErrorCodeUnauthorized, "bad cluster token"))
		return false
	}
	return true
}

func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (f *fakeServer) register(w http.ResponseWriter, r *http.Request) {
	if !f.gate(w, r) {
		return
	}
	var req hostapi.RegisterRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		writeJSON(w, 400, api.NewError(api.ErrorCodeInvalidRequest, "%v", err))
		return
	}
	f.mu.Lock()
	f.hosts[req.Id] = req
	f.registers++
	iv := f.interval
	f.mu.Unlock()
	writeJSON(w, 200, hostapi.RegisterResponse{HeartbeatIntervalSeconds: iv})
}

func (f *fakeServer) heartbeat(w http.ResponseWriter, r *http.Request) {
	if !f.gate(w, r) {
		return
	}
	var hb hostapi.Heartbeat
	if err := decodeStrict(r.Body, &hb); err != nil {
		writeJSON(w, 400, api.NewError(api.ErrorCodeInvalidRequest, "%v", err))
		return
	}
	id := r.PathValue("id")
	f.mu.Lock()
	_, known := f.hosts[id]
	if known {
		f.heartbeats = append(f.heartbeats, hb)
	}
	iv := f.interval
	f.mu.Unlock()
	if !known {
		writeJSON(w, 404, api.NewError(api.ErrorCodeNotFound, "host %s: not found", id))
		return
	}
	select {
	case f.beat <- struct{}{}:
	default:
	}
	writeJSON(w, 200, hostapi.RegisterResponse{HeartbeatIntervalSeconds: iv})
}

// forget drops every host, as a restarted server would.
func (f *fakeServer) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts = map[string]hostapi.RegisterRequest{}
}

func (f *fakeServer) counts() (registers, heartbeats, requests int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.registers, len(f.heartbeats), f.requests
}

func testConfig(url string) Config {
	return Config{
		ServerURL: url, Token: "cluster-secret", HostID: "host-a", Address: "http://127.0.0.1:7081",
		Capacity: api.Resources{MemoryMib: 4096, Vcpus: 4}, Version: "test",
		ImageDigests: map[string]string{"default": "sha256:abc"},
		RetryMin:     5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
	}
}

var report = ReporterFunc(func(context.Context) (hostapi.Heartbeat, error) {
	return hostapi.Heartbeat{
		Capacity:  api.Resources{MemoryMib: 4096, Vcpus: 4},
		Instances: []api.Instance{}, Snapshots: []api.Snapshot{}, Jobs: []api.Job{},
		Cache:  hostapi.CacheSummary{Chunks: 3, Bytes: 300, LimitBytes: 1000},
		Health: hostapi.HostHealth{Status: hostapi.HostHealthStatusOk},
	}, nil
})

func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// waitBeats waits for n more heartbeats to reach the server.
func waitBeats(t *testing.T, f *fakeServer, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-f.beat:
		case <-time.After(30 * time.Second):
			t.Fatalf("heartbeat %d of %d never arrived", i+1, n)
		}
	}
}

// TestRunRetriesThenReregisters: the first requests fail with 503 and are
// retried (inside a call and by the loop); once registered the host
// heartbeats with its report; a server that forgot the host gets a new
// registration; cancelling ctx ends Run with nil.
func TestRunRetriesThenReregisters(t *testing.T) {
	f, srv := newFakeServer(t, "cluster-secret")
	f.failNext = 6 // more than one call's retries (3): the loop must retry too
	c, err := New(testConfig(srv.URL), report, quietLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	waitBeats(t, f, 2)
	regs, beats, reqs := f.counts()
	if regs != 1 || beats < 2 || reqs < 6+1+2 {
		t.Fatalf("after faults: %d registrations, %d heartbeats, %d requests", regs, beats, reqs)
	}
	f.mu.Lock()
	got := f.hosts["host-a"]
	hb := f.heartbeats[0]
	f.mu.Unlock()
	if got.Address != "http://127.0.0.1:7081" || got.Capacity.MemoryMib != 4096 || got.Capacity.Vcpus != 4 ||
		got.Version == nil || *got.Version != "test" || got.ImageDigests == nil || (*got.ImageDigests)["default"] != "sha256:abc" {
		t.Errorf("registration %+v", got)
	}
	if hb.Cache.Chunks != 3 || hb.Health.Status != hostapi.HostHealthStatusOk || hb.SentAt.IsZero() {
		t.Errorf("heartbeat %+v", hb)
	}
	if st := c.Status(); !st.Registered || st.LastError != nil || st.Interval != time.Second {
		t.Errorf("status %+v", st)
	}

	f.forget()
	waitBeats(t, f, 1)
	if regs, _, _ := f.counts(); regs != 2 {
		t.Fatalf("after the server forgot the host: %d registrations, want 2", regs)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

// TestWrongToken: a refused token is an unauthorized error, not retried
// inside the call, and the loop keeps trying without registering.
func TestWrongToken(t *testing.T) {
	f, srv := newFakeServer(t, "another-secret")
	c, err := New(testConfig(srv.URL), report, quietLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(context.Background())
	if !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("register with a wrong token: %v", err)
	}
	if _, _, reqs := f.counts(); reqs != 1 {
		t.Errorf("a 401 was retried: %d requests", reqs)
	}
	if st := c.Status(); st.Registered || st.LastError == nil {
		t.Errorf("status %+v", st)
	}
	// Heartbeat of an unknown host: not_found, which Run answers by
	// registering again.
	f.token = "cluster-secret"
	if _, err := c.Heartbeat(context.Background()); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("heartbeat of an unregistered host: %v", err)
	}
}

// TestRunStopsWhileServerDown: with no server at all, Run backs off and
// still returns promptly on cancel.
func TestRunStopsWhileServerDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := New(testConfig(url), report, quietLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.Registered || st.LastError == nil {
		t.Errorf("status %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	err := (Config{ServerURL: "ftp://x", HostID: "Bad/Id", RetryMin: time.Second, RetryMax: time.Millisecond}).Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"server URL", "cluster token", "host id", "advertised address", "capacity", "retry max"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	if err := testConfig("http://127.0.0.1:1").WithDefaults().Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{20, 500 * time.Millisecond, time.Second}, // capped
	}
	for _, tt := range tests {
		for range 50 {
			d := backoff(100*time.Millisecond, time.Second, tt.attempt)
			if d < tt.min || d > tt.max {
				t.Fatalf("attempt %d: %v outside [%v, %v]", tt.attempt, d, tt.min, tt.max)
			}
		}
	}
}
