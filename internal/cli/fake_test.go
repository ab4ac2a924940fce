package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/cli"
)

const testToken = "user-token-0123456789"

// fake is a small in-memory implementation of the public API, enough for
// the CLI: instances i-1 (Running) and i-2 (Standby), snapshot s-1 whose
// upload advances a quarter per GET until central, host h-1.
type fake struct {
	api.StrictServerInterface // any operation not written here panics
	mu                        sync.Mutex
	instances                 map[string]*api.Instance
	snapshots                 map[string]*api.Snapshot
	polls                     int  // GETs of an uploading snapshot
	failUpload                bool // the upload ends in state error
	lastStandby               *api.StandbyRequest
	lastCreate                *api.CreateInstanceRequest
}

var now = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newFake() *fake {
	host := "h-1"
	snap := "s-1"
	central := api.SnapshotStateCentral
	return &fake{
		instances: map[string]*api.Instance{
			"i-1": {Id: "i-1", Name: "box", State: api.InstanceStateRunning, Host: &host, Image: "default", MemoryMib: 256, Vcpus: 1, CreatedAt: now, UpdatedAt: now},
			"i-2": {Id: "i-2", Name: "parked", State: api.InstanceStateStandby, Storage: &central, SnapshotId: &snap, Image: "default", MemoryMib: 512, Vcpus: 2, CreatedAt: now, UpdatedAt: now},
		},
		snapshots: map[string]*api.Snapshot{
			"s-1": {Id: "s-1", Name: "parked-standby-1", InstanceId: "i-2", Kind: api.SnapshotKindStandby, State: api.SnapshotStateCentral,
				RawBytes: 512 << 20, MemoryMib: 512, Vcpus: 2, CreatedAt: now, Compression: &api.AppliedCompression{Algorithm: api.AlgorithmZstd, Level: 1}},
		},
	}
}

func notFound(kind, id string) error { return fmt.Errorf("%s %s: %w", kind, id, api.ErrNotFound) }

func (f *fake) ListHosts(context.Context, api.ListHostsRequestObject) (api.ListHostsResponseObject, error) {
	return api.ListHosts200JSONResponse{Items: []api.Host{{Id: "h-1", Address: "http://127.0.0.1:7081", State: api.HostStateAvailable,
		Capacity: api.Resources{MemoryMib: 4096, Vcpus: 4}, Free: api.Resources{MemoryMib: 3840, Vcpus: 3}, Instances: 1, CacheBytes: 3 << 20}}}, nil
}

func (f *fake) ListInstances(_ context.Context, req api.ListInstancesRequestObject) (api.ListInstancesResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := api.ListInstances200JSONResponse{Items: []api.Instance{}}
	for _, id := range []string{"i-1", "i-2", "i-3"} {
		if i, ok := f.instances[id]; ok && (req.Params.State == nil || *req.Params.State == i.State) {
			out.Items = append(out.Items, *i)
		}
	}
	return out, nil
}

func (f *fake) CreateInstance(_ context.Context, req api.CreateInstanceRequestObject) (api.CreateInstanceResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCreate = req.Body
	if req.Body.Host != nil && *req.Body.Host == "full" {
		return nil, api.NewError(api.ErrorCodeNoCapacity, "host full: 0 MiB free, %d MiB asked", req.Body.MemoryMib)
	}
	i := &api.Instance{Id: "i-3", Name: req.Body.Name, State: api.InstanceStateRunning, Image: req.Body.Image, MemoryMib: req.Body.MemoryMib,
		Vcpus: req.Body.Vcpus, SnapshotPolicy: req.Body.SnapshotPolicy, CreatedAt: now, UpdatedAt: now}
	f.instances[i.Id] = i
	return api.CreateInstance201JSONResponse(*i), nil
}

func (f *fake) GetInstance(_ context.Context, req api.GetInstanceRequestObject) (api.GetInstanceResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.instances[req.Id]
	if !ok {
		return nil, notFound("instance", req.Id)
	}
	if s := f.snapshots["s-2"]; s != nil && i.SnapshotId != nil && *i.SnapshotId == "s-2" {
		st := s.State
		i.Storage = &st
	}
	return api.GetInstance200JSONResponse(*i), nil
}

func (f *fake) StandbyInstance(_ context.Context, req api.StandbyInstanceRequestObject) (api.StandbyInstanceResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastStandby = req.Body
	i, ok := f.instances[req.Id]
	if !ok {
		return nil, notFound("instance", req.Id)
	}
	if i.State != api.InstanceStateRunning {
		return nil, api.NewError(api.ErrorCodeInvalidState, "instance %s is %s: standby needs Running", i.Id, i.State)
	}
	if req.Body != nil && req.Body.Compression != nil && req.Body.Compression.Level != nil && *req.Body.Compression.Level > 19 {
		return nil, api.NewError(api.ErrorCodeInvalidSnapshotCompression, "compression.level: %d is out of range for zstd (1-19)", *req.Body.Compression.Level)
	}
	sid := "s-2"
	local := api.SnapshotStateLocal
	i.State, i.Storage, i.SnapshotId = api.InstanceStateStandby, &local, &sid
	f.snapshots[sid] = &api.Snapshot{Id: sid, Name: i.Name + "-standby-1", InstanceId: i.Id, Kind: api.SnapshotKindStandby,
		State: api.SnapshotStateUploading, RawBytes: 256 << 20, CreatedAt: now,
		Progress: &api.Progress{TotalBytes: 256 << 20}}
	f.polls = 0
	return api.StandbyInstance200JSONResponse(*i), nil
}

func (f *fake) GetSnapshot(_ context.Context, req api.GetSnapshotRequestObject) (api.GetSnapshotResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snapshots[req.Id]
	if !ok {
		return nil, notFound("snapshot", req.Id)
	}
	if s.State == api.SnapshotStateUploading {
		f.polls++
		s.Progress.RawBytes = min(s.Progress.TotalBytes, int64(f.polls)*s.Progress.TotalBytes/4)
		s.Progress.Done = float64(s.Progress.RawBytes) / float64(s.Progress.TotalBytes)
		switch {
		case f.failUpload && f.polls == 2:
			msg := "put chunk 3f2a: connection reset"
			s.State, s.Error, s.Progress = api.SnapshotStateError, &msg, nil
		case f.polls >= 4:
			s.State, s.Progress = api.SnapshotStateCentral, nil
			committed := now
			s.CommittedAt = &committed
		}
	}
	return api.GetSnapshot200JSONResponse(*s), nil
}

func (f *fake) ListSnapshots(context.Context, api.ListSnapshotsRequestObject) (api.ListSnapshotsResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := api.ListSnapshots200JSONResponse{Items: []api.Snapshot{}}
	for _, id := range []string{"s-1", "s-2"} {
		if s, ok := f.snapshots[id]; ok {
			out.Items = append(out.Items, *s)
		}
	}
	return out, nil
}

func (f *fake) DeleteInstance(_ context.Context, req api.DeleteInstanceRequestObject) (api.DeleteInstanceResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.instances[req.Id]; !ok {
		return nil, notFound("instance", req.Id)
	}
	delete(f.instances, req.Id)
	return api.DeleteInstance204Response{}, nil
}

func (f *fake) RestoreInstance(_ context.Context, req api.RestoreInstanceRequestObject) (api.RestoreInstanceResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.instances[req.Id]
	if !ok {
		return nil, notFound("instance", req.Id)
	}
	if req.Body != nil && req.Body.Host != nil && *req.Body.Host == "gone" {
		return nil, api.NewError(api.ErrorCodeHostUnavailable, "host gone: missed 3 heartbeats")
	}
	// The restore downloads: Creating with a restore job, then Running.
	i.State, i.Storage = api.InstanceStateCreating, nil
	i.Job = &api.Job{Id: "j-1", Kind: api.JobKindRestore, State: api.JobStateRunning, StartedAt: now, Progress: &api.Progress{TotalBytes: 512 << 20}}
	f.polls = 0
	return api.RestoreInstance200JSONResponse(*i), nil
}

func (f *fake) ForkSnapshot(_ context.Context, req api.ForkSnapshotRequestObject) (api.ForkSnapshotResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.snapshots[req.Id]; !ok {
		return nil, notFound("snapshot", req.Id)
	}
	i := &api.Instance{Id: "i-4", Name: req.Body.Name, State: api.InstanceStateRunning, Image: "default", MemoryMib: 512, Vcpus: 2, SnapshotId: &req.Id, CreatedAt: now, UpdatedAt: now}
	f.instances[i.Id] = i
	return api.ForkSnapshot201JSONResponse(*i), nil
}

func (f *fake) DeleteSnapshot(_ context.Context, req api.DeleteSnapshotRequestObject) (api.DeleteSnapshotResponseObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snapshots[req.Id]
	if !ok {
		return nil, notFound("snapshot", req.Id)
	}
	if s.Standby != nil && *s.Standby || s.InstanceId == "i-2" {
		return nil, api.NewError(api.ErrorCodeConflict, "snapshot %s is the standby snapshot of instance %s: delete the instance", s.Id, s.InstanceId)
	}
	delete(f.snapshots, req.Id)
	return api.DeleteSnapshot204Response{}, nil
}

// advanceRestore moves a restore job along; the instance GET handler calls
// it through getInstanceHook.
func (f *fake) advanceRestore(i *api.Instance) {
	if i.Job == nil || i.Job.State != api.JobStateRunning {
		return
	}
	f.polls++
	p := i.Job.Progress
	p.RawBytes = min(p.TotalBytes, int64(f.polls)*p.TotalBytes/3)
	if f.polls >= 3 {
		i.Job.State = api.JobStateSucceeded
		i.State = api.InstanceStateRunning
	}
}

// serve starts the fake behind the generated gin strict handler with bearer
// auth, wired as package server wires it.
func serve(t *testing.T, f *fake) string {
	t.Helper()
	gin.SetMode(gin.TestMode)
	binding.EnableDecoderDisallowUnknownFields = true
	writeErr := func(c *gin.Context, err error) {
		e := api.ToError(err)
		c.AbortWithStatusJSON(e.Status(), e)
	}
	h := api.NewStrictHandlerWithOptions(&restoring{f}, nil, api.StrictGinServerOptions{
		RequestErrorHandlerFunc: func(c *gin.Context, err error) {
			writeErr(c, fmt.Errorf("%w: body: %v", api.ErrInvalidRequest, err))
		},
		HandlerErrorFunc:         writeErr,
		ResponseErrorHandlerFunc: writeErr,
	})
	r := gin.New()
	r.Use(func(c *gin.Context) {
		if c.GetHeader("Authorization") != "Bearer "+testToken {
			writeErr(c, api.NewError(api.ErrorCodeUnauthorized, "missing or wrong bearer token"))
		}
	})
	api.RegisterHandlersWithOptions(r, h, api.GinServerOptions{
		ErrorHandler: func(c *gin.Context, err error, status int) {
			writeErr(c, api.NewError(api.CodeFor(status), "%v", err))
		},
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// restoring advances restore jobs on each instance GET.
type restoring struct{ *fake }

func (r *restoring) GetInstance(ctx context.Context, req api.GetInstanceRequestObject) (api.GetInstanceResponseObject, error) {
	r.mu.Lock()
	if i, ok := r.instances[req.Id]; ok {
		r.advanceRestore(i)
	}
	r.mu.Unlock()
	return r.fake.GetInstance(ctx, req)
}

type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs the command tree in-process against url, with the token in
// the environment, as a user with a shell profile would.
func runCLI(t *testing.T, url string, terminal bool, args ...string) result {
	t.Helper()
	return runEnv(t, map[string]string{"HANGAR_SERVER": url, "HANGAR_TOKEN": testToken}, terminal, args...)
}

func runEnv(t *testing.T, env map[string]string, terminal bool, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Options{
		Stdout: &out, Stderr: &errb,
		LookupEnv:    func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		IsTerminal:   func(io.Writer) bool { return terminal },
		PollInterval: time.Millisecond,
	})
	t.Logf("hangar %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return result{out.String(), errb.String(), code}
}

// syncWriter serializes writes from the server's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
