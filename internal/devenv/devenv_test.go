package devenv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/devenv"
	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// cluster is one devenv.Run in the background.
type cluster struct {
	info    devenv.Info
	stop    context.CancelFunc
	done    chan error
	stopped chan devenv.Stopping
	client  *api.ClientWithResponses
}

func start(t *testing.T, dir string) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{stop: cancel, done: make(chan error, 1), stopped: make(chan devenv.Stopping, 1)}
	ready := make(chan devenv.Info, 1)
	logf, err := os.OpenFile(filepath.Join(dir, "test.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cfg := devenv.Config{
		Dir: dir, Hosts: 2, Listen: "127.0.0.1:0", HostPort: 0, Accel: qemu.AccelTCG, HostMemoryMiB: 1024,
		Logger:  slog.New(slog.NewJSONHandler(logf, nil)),
		OnReady: func(i devenv.Info) { ready <- i },
		OnStop:  func(s devenv.Stopping) { c.stopped <- s },
	}
	go func() { c.done <- devenv.Run(ctx, cfg) }()
	select {
	case c.info = <-ready:
	case err := <-c.done:
		t.Fatalf("dev cluster ended before it was ready: %v\n%s", err, tail(dir))
	case <-time.After(5 * time.Minute):
		cancel()
		t.Fatalf("dev cluster not ready\n%s", tail(dir))
	}
	c.client, err = api.NewClientWithResponses(c.info.URL, api.WithRequestEditorFn(api.BearerAuth(c.info.UserToken.Reveal())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.shutdown(t) })
	return c
}

// shutdown stops the cluster as Ctrl-C would and returns what OnStop saw.
func (c *cluster) shutdown(t *testing.T) devenv.Stopping {
	t.Helper()
	if c.stop == nil {
		return devenv.Stopping{}
	}
	c.stop()
	c.stop = nil
	var s devenv.Stopping
	select {
	case s = <-c.stopped:
	case <-time.After(time.Minute):
		t.Error("OnStop was not called")
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("Run after shutdown: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Error("dev cluster did not stop")
	}
	return s
}

func tail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "test.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// TestDevRestartKeepsParked: one process runs the server and two hosts on
// an fs store; an instance put on standby is reported as parked at
// shutdown, is back after a restart on the same directory (same token),
// and restores on the other host with its memory.
func TestDevRestartKeepsParked(t *testing.T) {
	testenv.QEMUBinary(t)
	testenv.KernelDir(t)
	dir := t.TempDir()
	c := start(t, dir)
	if len(c.info.Hosts) != 2 || c.info.Hosts[0].ID != "host-1" || c.info.Hosts[1].Address == "" || !strings.HasPrefix(c.info.Store, "fs ") {
		t.Fatalf("info %+v", c.info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	host := "host-1"
	cr, err := c.client.CreateInstanceWithResponse(ctx, api.CreateInstanceRequest{Name: "dev-1", Image: "default", MemoryMib: 128, Vcpus: 1, Host: &host})
	if err != nil || cr.JSON201 == nil {
		t.Fatalf("create: %s", describe(cr, err))
	}
	id := cr.JSON201.Id
	in := waitInstance(t, c.client, id, func(i api.Instance) bool { return i.State == api.InstanceStateRunning })
	ag := dialAgent(t, c.info.Hosts[0].DataDir, id)
	token := randomHex(t)
	if err := ag.WriteFile(ctx, "/run/token", []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := ag.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ag.Close()

	sr, err := c.client.StandbyInstanceWithResponse(ctx, id, api.StandbyRequest{})
	if err != nil || sr.JSON200 == nil {
		t.Fatalf("standby: %s", describe(sr, err))
	}
	in = waitInstance(t, c.client, id, func(i api.Instance) bool {
		return i.State == api.InstanceStateStandby && i.Storage != nil && *i.Storage == api.SnapshotStateCentral
	})

	st := c.shutdown(t)
	if st.Err != nil || len(st.Running) != 0 || len(st.Parked) != 1 || st.Parked[0].Id != id {
		t.Fatalf("OnStop: %+v", st)
	}
	tok1 := c.info.UserToken

	c = start(t, dir)
	if c.info.UserToken != tok1 {
		t.Error("the user token changed across a restart")
	}
	got, err := c.client.GetInstanceWithResponse(ctx, id)
	if err != nil || got.JSON200 == nil || got.JSON200.State != api.InstanceStateStandby {
		t.Fatalf("after restart: %s", describe(got, err))
	}
	other := "host-2"
	rr, err := c.client.RestoreInstanceWithResponse(ctx, id, api.RestoreRequest{Host: &other})
	if err != nil || rr.JSON200 == nil {
		t.Fatalf("restore: %s", describe(rr, err))
	}
	in = waitInstance(t, c.client, id, func(i api.Instance) bool { return i.State == api.InstanceStateRunning })
	if in.Host == nil || *in.Host != other {
		t.Fatalf("restored on %v, want %s", in.Host, other)
	}
	ag = dialAgent(t, c.info.Hosts[1].DataDir, id)
	defer ag.Close()
	b, err := ag.ReadFile(ctx, "/run/token")
	if err != nil || string(b) != token {
		t.Fatalf("token after restore on %s = %q, %v; want %q", other, b, err, token)
	}
	after, err := ag.State(ctx)
	if err != nil || after.BootID != before.BootID || after.Counter < before.Counter {
		t.Fatalf("guest state after restore %+v (%v), before %+v", after, err, before)
	}
	st = c.shutdown(t)
	if len(st.Running) != 1 || st.Running[0].Id != id {
		t.Fatalf("OnStop: %+v", st)
	}
}

func waitInstance(t *testing.T, cl *api.ClientWithResponses, id string, ok func(api.Instance) bool) api.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var last *api.Instance
	for ctx.Err() == nil {
		r, err := cl.GetInstanceWithResponse(ctx, id)
		if err == nil && r.JSON200 != nil {
			last = r.JSON200
			if ok(*last) {
				return *last
			}
			if last.State == api.InstanceStateError {
				t.Fatalf("instance %s: Error: %v", id, deref(last.Error))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("instance %s: condition not reached; last %+v", id, last)
	return api.Instance{}
}

// dialAgent connects to the guest agent of instance id through the
// socket its host recorded in the instance's metadata: the public API has
// no access to guests, and the test runs on the hosts' machine.
func dialAgent(t *testing.T, dataDir, id string) *agent.Client {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "i", id, "instance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AgentSocket string `json:"agent_socket"`
	}
	if err := json.Unmarshal(b, &meta); err != nil || meta.AgentSocket == "" {
		t.Fatalf("instance %s has no agent socket (%v): %s", id, err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, meta.AgentSocket)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// describe is a failed call for a test message.
func describe(r interface {
	StatusCode() int
	GetBody() []byte
}, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("HTTP %d %s", r.StatusCode(), r.GetBody())
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
