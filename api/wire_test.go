package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"

	"github.com/hangar-vm/hangar/api"
)

// fakeServer implements the two operations these tests call; the embedded
// nil interface makes any other call panic, which would fail the test.
type fakeServer struct {
	api.StrictServerInterface
	mu     sync.Mutex
	bodies []*api.StandbyRequest
}

func (f *fakeServer) GetInstance(_ context.Context, req api.GetInstanceRequestObject) (api.GetInstanceResponseObject, error) {
	if err := api.ValidateID("instance", req.Id); err != nil {
		return nil, err
	}
	if req.Id != "i-1" {
		return nil, fmt.Errorf("instance %s: %w", req.Id, api.ErrNotFound)
	}
	now := time.Unix(1700000000, 0).UTC()
	return api.GetInstance200JSONResponse{Id: "i-1", Name: "box", State: api.InstanceStateRunning,
		Image: "default", MemoryMib: 256, Vcpus: 1, CreatedAt: now, UpdatedAt: now}, nil
}

func (f *fakeServer) StandbyInstance(_ context.Context, req api.StandbyInstanceRequestObject) (api.StandbyInstanceResponseObject, error) {
	f.mu.Lock()
	f.bodies = append(f.bodies, req.Body)
	f.mu.Unlock()
	if req.Body != nil && req.Body.Compression != nil && req.Body.Compression.Level != nil && *req.Body.Compression.Level > 19 {
		return nil, api.NewError(api.ErrorCodeInvalidSnapshotCompression, "compression.level: %d is out of range for zstd (1-19)", *req.Body.Compression.Level)
	}
	return api.StandbyInstance200JSONResponse{Id: req.Id, State: api.InstanceStateStandby}, nil
}

// newWireServer wires the generated strict handler the way package server is
// expected to: request decode errors become invalid_request, handler errors
// go through ToError, and unknown body fields are refused by gin's decoder.
func newWireServer(t *testing.T) (*fakeServer, *api.ClientWithResponses) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	binding.EnableDecoderDisallowUnknownFields = true
	t.Cleanup(func() { binding.EnableDecoderDisallowUnknownFields = false })
	writeErr := func(c *gin.Context, err error) {
		e := api.ToError(err)
		c.JSON(e.Status(), e)
	}
	fake := &fakeServer{}
	h := api.NewStrictHandlerWithOptions(fake, nil, api.StrictGinServerOptions{
		RequestErrorHandlerFunc: func(c *gin.Context, err error) {
			writeErr(c, fmt.Errorf("%w: body: %v", api.ErrInvalidRequest, err))
		},
		HandlerErrorFunc:         writeErr,
		ResponseErrorHandlerFunc: writeErr,
	})
	r := gin.New()
	api.RegisterHandlersWithOptions(r, h, api.GinServerOptions{
		ErrorHandler: func(c *gin.Context, err error, status int) {
			writeErr(c, api.NewError(api.CodeFor(status), "%v", err))
		},
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	c, err := api.NewClientWithResponses(srv.URL, api.WithRequestEditorFn(api.BearerAuth("secret")))
	if err != nil {
		t.Fatal(err)
	}
	return fake, c
}

// TestWireErrors: an error returned by a handler arrives at the generated
// client as the same sentinel.
func TestWireErrors(t *testing.T) {
	_, c := newWireServer(t)
	ctx := context.Background()

	rsp, err := c.GetInstanceWithResponse(ctx, "i-1")
	if err != nil || rsp.JSON200 == nil || rsp.JSON200.State != api.InstanceStateRunning {
		t.Fatalf("get i-1: %v %+v", err, rsp)
	}

	rsp, err = c.GetInstanceWithResponse(ctx, "i-2")
	if err != nil {
		t.Fatal(err)
	}
	if rsp.JSON404 == nil || rsp.JSON404.Code != api.ErrorCodeNotFound {
		t.Fatalf("typed 404 missing: %d %s", rsp.StatusCode(), rsp.Body)
	}
	if err := api.FromResponse(rsp.StatusCode(), rsp.Body); !errors.Is(err, api.ErrNotFound) || err.Error() != "instance i-2: not found" {
		t.Fatalf("got %v", err)
	}

	rsp, err = c.GetInstanceWithResponse(ctx, "UPPER")
	if err != nil {
		t.Fatal(err)
	}
	if err := api.FromResponse(rsp.StatusCode(), rsp.Body); rsp.StatusCode() != 400 || !errors.Is(err, api.ErrInvalidRequest) {
		t.Fatalf("bad id: %d %v", rsp.StatusCode(), err)
	}
}

// TestWireStandbyBody: the optional standby body may be absent, empty or
// {}; unknown fields and bad JSON are invalid_request; a bad level is
// invalid_snapshot_compression.
func TestWireStandbyBody(t *testing.T) {
	fake, c := newWireServer(t)
	ctx := context.Background()
	level := 25
	tests := []struct {
		name    string
		do      func() (*api.StandbyInstanceResponse, error)
		want    *api.Error // nil: 200
		wantNil bool       // the handler saw no body
	}{
		{"no body", func() (*api.StandbyInstanceResponse, error) {
			return c.StandbyInstanceWithBodyWithResponse(ctx, "i-1", "", nil)
		}, nil, true},
		{"empty json body", func() (*api.StandbyInstanceResponse, error) {
			return c.StandbyInstanceWithBodyWithResponse(ctx, "i-1", "application/json", strings.NewReader(""))
		}, nil, true},
		{"{}", func() (*api.StandbyInstanceResponse, error) {
			return c.StandbyInstanceWithResponse(ctx, "i-1", api.StandbyInstanceJSONRequestBody{})
		}, nil, false},
		{"unknown field", func() (*api.StandbyInstanceResponse, error) {
			return c.StandbyInstanceWithBodyWithResponse(ctx, "i-1", "application/json", strings.NewReader(`{"compresion":{}}`))
		}, api.ErrInvalidRequest, false},
		{"nested unknown field", func() (*api.StandbyInstanceResponse, error) {
			return c.StandbyInstanceWithBodyWithResponse(ctx, "i-1", "application/json", strings.NewReader(`{"compression":{"algo":"zstd"}}`))
		}, api.ErrInvalidRequest, false},
		{"malformed", func() (*api.StandbyInstanceResponse, error) {
			return c.StandbyInstanceWithBodyWithResponse(ctx, "i-1", "application/json", strings.NewReader(`{"compression":`))
		}, api.ErrInvalidRequest, false},
		{"wrong type", func() (*api.StandbyInstanceResponse, error) {
			return c.StandbyInstanceWithBodyWithResponse(ctx, "i-1", "application/json", strings.NewReader(`{"compression":{"level":"high"}}`))
		}, api.ErrInvalidRequest, false},
		{"level out of range", func() (*api.StandbyInstanceResponse, error) {
			alg := "ZSTD"
			return c.StandbyInstanceWithResponse(ctx, "i-1", api.StandbyInstanceJSONRequestBody{
				Compression: &api.Compression{Algorithm: &alg, Level: &level}})
		}, api.ErrInvalidSnapshotCompression, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.bodies = nil
			fake.mu.Unlock()
			rsp, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			got := api.FromResponse(rsp.StatusCode(), rsp.Body)
			if tt.want == nil {
				if got != nil || rsp.JSON200 == nil || rsp.JSON200.State != api.InstanceStateStandby {
					t.Fatalf("want 200 Standby, got %d %s", rsp.StatusCode(), rsp.Body)
				}
				fake.mu.Lock()
				defer fake.mu.Unlock()
				if len(fake.bodies) != 1 || (fake.bodies[0] == nil) != tt.wantNil {
					t.Fatalf("handler saw bodies %v, want nil=%v", fake.bodies, tt.wantNil)
				}
				return
			}
			if !errors.Is(got, tt.want) || rsp.StatusCode() != tt.want.Status() {
				t.Fatalf("want %s (%d), got %d %s", tt.want.Code, tt.want.Status(), rsp.StatusCode(), rsp.Body)
			}
			if rsp.JSON400 == nil || rsp.JSON400.Code != tt.want.Code {
				t.Errorf("typed JSON400 missing: %s", rsp.Body)
			}
		})
	}
}

// TestWireAuthHeader: BearerAuth sets the header the server checks.
func TestWireAuthHeader(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	defer srv.Close()
	c, err := api.NewClientWithResponses(srv.URL, api.WithRequestEditorFn(api.BearerAuth("tok")))
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := c.ListHostsWithResponse(context.Background())
	if err != nil || rsp.JSON200 == nil {
		t.Fatalf("list hosts: %v %+v", err, rsp)
	}
	if got != "Bearer tok" {
		t.Errorf("Authorization %q", got)
	}
}
