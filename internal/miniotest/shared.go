package miniotest

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/hangar-vm/hangar/internal/testenv"
)

// One server per test binary: starting MinIO costs about a second, so
// packages share it and give each test a fresh bucket or prefix.
var shared struct {
	mu  sync.Mutex
	srv *Server
	dir string
	err error
}

// Shared returns this test binary's shared server, starting it on first use.
// Call CloseShared from TestMain after m.Run to stop it (if a TestMain
// forgets, the server still dies with the test binary, but its temporary
// directory stays). A missing binary fails t like Start does. Tests must not
// Stop or Restart the shared server; an outage test Starts its own.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := testenv.MinIOBinary(t) // fails or skips t, every time, if missing
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "hangar-minio-")
		if shared.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
			shared.srv, shared.err = StartProcess(ctx, bin, shared.dir)
			cancel()
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	srv := shared.srv
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared minio log (%s), last 16 KiB:\n%s", srv.Endpoint, srv.LogTail(16<<10))
		}
	})
	return srv
}

// CloseShared stops the shared server, if one was started, and removes its
// data directory.
func CloseShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		shared.srv.Close()
		shared.srv = nil
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
		shared.dir = ""
	}
}
