package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/server"
)

// TestHTTPHostClient: the real adapter sends the cluster token, keeps a
// host's error code across the wire, retries a gateway error, and never
// retries the host's own answer.
func TestHTTPHostClient(t *testing.T) {
	var calls, gateway atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+clusterToken {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/host/v1/instances/i-1/standby":
			w.WriteHeader(409)
			w.Write([]byte(`{"code":"invalid_state","message":"instance i-1 is Standby"}`))
		case "/host/v1/instances/i-2":
			if gateway.Add(1) == 1 {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(502)
				return
			}
			w.Write([]byte(`{"id":"i-2","name":"b","state":"Running","image":"default","memory_mib":256,"vcpus":1,"created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}`))
		case "/host/v1/instances/i-3":
			w.WriteHeader(503)
			w.Write([]byte(`{"code":"no_capacity","message":"full"}`))
		}
	}))
	defer srv.Close()
	c, err := server.NewHTTPHostClient("h", srv.URL, server.HTTPHostClientOptions{Token: clusterToken, Timeout: 10 * time.Second, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Standby(ctx, "i-1", hostapi.StandbyRequest{SnapshotId: "sb-1", Compression: api.AppliedCompression{Algorithm: "zstd", Level: 1}})
	if !errors.Is(err, api.ErrInvalidState) || calls.Load() != 1 {
		t.Fatalf("standby: %v after %d calls", err, calls.Load())
	}
	in, err := c.GetInstance(ctx, "i-2")
	if err != nil || in.State != api.InstanceStateRunning || gateway.Load() != 2 {
		t.Fatalf("get after a 502: %v %+v (%d attempts)", err, in, gateway.Load())
	}
	before := calls.Load()
	if _, err := c.CreateInstance(ctx, "i-3", hostapi.InstanceSpec{Name: "c", Image: "default", MemoryMib: 256, Vcpus: 1}); !errors.Is(err, api.ErrNoCapacity) || calls.Load() != before+1 {
		t.Fatalf("create: %v after %d calls", err, calls.Load()-before)
	}
	srv.Close()
	if _, err := c.GetInstance(ctx, "i-2"); err == nil || errors.As(err, new(*api.Error)) {
		t.Fatalf("unreachable host: %v (want a transport error, not an api code)", err)
	}
}
