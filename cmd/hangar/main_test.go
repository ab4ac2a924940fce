package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
)

// fakeAPI answers GetInstance for i-1; any other operation panics (and
// fails the test through the 500 it becomes).
type fakeAPI struct{ api.StrictServerInterface }

func (fakeAPI) GetInstance(_ context.Context, req api.GetInstanceRequestObject) (api.GetInstanceResponseObject, error) {
	if req.Id != "i-1" {
		return nil, fmt.Errorf("instance %s: %w", req.Id, api.ErrNotFound)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return api.GetInstance200JSONResponse{Id: "i-1", Name: "box", State: api.InstanceStateRunning, Image: "default",
		MemoryMib: 256, Vcpus: 1, CreatedAt: now, UpdatedAt: now}, nil
}

func serve(t *testing.T) string {
	gin.SetMode(gin.TestMode)
	writeErr := func(c *gin.Context, err error) {
		e := api.ToError(err)
		c.AbortWithStatusJSON(e.Status(), e)
	}
	h := api.NewStrictHandlerWithOptions(fakeAPI{}, nil, api.StrictGinServerOptions{
		RequestErrorHandlerFunc: writeErr, HandlerErrorFunc: writeErr, ResponseErrorHandlerFunc: writeErr,
	})
	r := gin.New()
	r.Use(func(c *gin.Context) {
		if c.GetHeader("Authorization") != "Bearer tok-0123456789abcdef" {
			writeErr(c, api.NewError(api.ErrorCodeUnauthorized, "wrong token"))
		}
	})
	api.RegisterHandlers(r, h)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestBinary builds the real hangar binary and runs it as a script would.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "hangar")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	url := serve(t)
	run := func(env []string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}

	out, _, code := run(nil, "--help")
	if code != 0 || !strings.Contains(out, "instances") || !strings.Contains(out, "Exit codes") {
		t.Fatalf("--help: exit %d\n%s", code, out)
	}

	env := []string{"HANGAR_SERVER=" + url, "HANGAR_TOKEN=tok-0123456789abcdef"}
	out, stderr, code := run(env, "--json", "instances", "get", "i-1")
	var inst api.Instance
	if code != 0 || json.Unmarshal([]byte(out), &inst) != nil || inst.Id != "i-1" || inst.State != api.InstanceStateRunning {
		t.Fatalf("get i-1: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}

	out, stderr, code = run(env, "instances", "get", "i-2")
	if code != 3 || out != "" || !strings.Contains(stderr, "instance i-2: not found (not_found)") {
		t.Fatalf("get i-2: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	_, stderr, code = run([]string{"HANGAR_SERVER=" + url, "HANGAR_TOKEN=wrong"}, "instances", "get", "i-1")
	if code != 6 || !strings.Contains(stderr, "unauthorized") {
		t.Fatalf("wrong token: exit %d, stderr %q", code, stderr)
	}

	_, _, code = run(env, "instances", "get")
	if code != 2 {
		t.Fatalf("usage: exit %d", code)
	}
}
