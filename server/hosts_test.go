package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestHostUnavailable: a host that misses its heartbeats is unavailable in
// GET /v1/hosts, its running instance gets 503 host_unavailable, and its
// standby instance, whose snapshot is central, restores on another host.
func TestHostUnavailable(t *testing.T) {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)
	e.addHost("host-b", 4096, 8)
	runA := e.create("run-a", 256, 1, "host-a", nil)
	parked := e.create("parked", 256, 1, "host-a", nil)
	parked = e.standby(parked.Id, nil)
	local := e.create("local", 256, 1, "host-a", nil)
	local = e.standby(local.Id, nil)
	if _, err := a.commit(ctx, *parked.SnapshotId); err != nil {
		t.Fatal(err)
	}
	e.heartbeatAll()
	waitFor(t, "central", func() bool { return e.snapshot(*parked.SnapshotId).State == api.SnapshotStateCentral })

	// Two intervals of silence from host-a: still available (3 allowed).
	e.clock.Advance(2 * server5s)
	e.heartbeatAll("host-a")
	if st := hostState(t, e, "host-a"); st != api.HostStateAvailable {
		t.Fatalf("host-a after 2 missed heartbeats: %s", st)
	}
	e.clock.Advance(2 * server5s)
	e.heartbeatAll("host-a")
	if st := hostState(t, e, "host-a"); st != api.HostStateUnavailable {
		t.Fatalf("host-a after 4 missed heartbeats: %s", st)
	}
	if st := hostState(t, e, "host-b"); st != api.HostStateAvailable {
		t.Fatalf("host-b: %s", st)
	}

	before := e.state()
	for name, do := range map[string]func() (int, []byte, error){
		"standby": func() (int, []byte, error) {
			return call(e.c.StandbyInstanceWithBodyWithResponse(ctx, runA.Id, "", nil))
		},
		"delete": func() (int, []byte, error) { return call(e.c.DeleteInstanceWithResponse(ctx, runA.Id)) },
		"snapshot": func() (int, []byte, error) {
			return call(e.c.CreateSnapshotWithResponse(ctx, runA.Id, api.CreateSnapshotRequest{Name: "s", Kind: api.SnapshotKindStandby}))
		},
		"create there": func() (int, []byte, error) {
			return call(e.c.CreateInstanceWithResponse(ctx, api.CreateInstanceRequest{Name: "x", Image: "default", MemoryMib: 128, Vcpus: 1, Host: ptr("host-a")}))
		},
		"restore local-only snapshot": func() (int, []byte, error) {
			return call(e.c.RestoreInstanceWithResponse(ctx, local.Id, api.RestoreRequest{}))
		},
	} {
		status, b, err := do()
		if err != nil {
			t.Fatal(err)
		}
		if status != 503 || !errors.Is(api.FromResponse(status, b), api.ErrHostUnavailable) {
			t.Errorf("%s: %d %s, want 503 host_unavailable", name, status, b)
		}
	}
	if after := e.state(); after != before {
		t.Fatalf("state changed:\n%s\n%s", before, after)
	}

	// New instances avoid host-a without being told.
	if in := e.create("new", 256, 1, "", nil); *in.Host != "host-b" {
		t.Fatalf("new instance on %s", *in.Host)
	}
	// The central snapshot restores elsewhere.
	r, err := e.c.RestoreInstanceWithResponse(ctx, parked.Id, api.RestoreRequest{})
	if err != nil || r.JSON200 == nil || *r.JSON200.Host != "host-b" || r.JSON200.State != api.InstanceStateRunning {
		t.Fatalf("restore of central snapshot: %v %d %s", err, r.StatusCode(), r.Body)
	}

	// host-a comes back.
	e.heartbeat(a)
	if st := hostState(t, e, "host-a"); st != api.HostStateAvailable {
		t.Fatalf("host-a after a heartbeat: %s", st)
	}
}

const server5s = 5 * time.Second // the default heartbeat interval

func hostState(t *testing.T, e *env, id string) api.HostState {
	t.Helper()
	r, err := e.c.ListHostsWithResponse(context.Background())
	if err != nil || r.JSON200 == nil {
		t.Fatal(err)
	}
	for _, h := range r.JSON200.Items {
		if h.Id == id {
			return h.State
		}
	}
	t.Fatalf("host %s not listed", id)
	return ""
}
