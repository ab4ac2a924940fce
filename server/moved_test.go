package server_test

import (
	"context"
	"testing"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

func (f *fakeHost) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.instances[id]
	return ok
}

// TestMovedInstanceForgotten: after a restore lands on another host, the
// origin host is told to drop its standby record (at once, or at its next
// heartbeat when it was unreachable), so that a later restore placed
// there does not trip over it (409 "its standby snapshot here is ...")
// and a deleted instance is never adopted back from that record.
func TestMovedInstanceForgotten(t *testing.T) {
	for _, unreachable := range []bool{false, true} {
		name := "reachable"
		if unreachable {
			name = "unreachable"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, testConfig(t))
			ctx := context.Background()
			a := e.addHost("host-a", 4096, 8)
			b := e.addHost("host-b", 4096, 8)

			in := e.create("box", 256, 1, "host-a", nil)
			sid := *e.standby(in.Id, nil).SnapshotId
			if _, err := a.commit(ctx, sid); err != nil {
				t.Fatal(err)
			}
			e.heartbeatAll()
			waitFor(t, "central", func() bool { return e.snapshot(sid).State == api.SnapshotStateCentral })

			a.mu.Lock()
			a.unreachable = unreachable
			a.mu.Unlock()
			rr, err := e.c.RestoreInstanceWithResponse(ctx, in.Id, api.RestoreRequest{Host: ptr("host-b")})
			if err != nil || rr.JSON200 == nil {
				t.Fatalf("restore on host-b: %v %s", err, rr.Body)
			}
			if unreachable {
				e.heartbeat(b) // host-a stays silent
				if !a.has(in.Id) {
					t.Fatal("host-a lost its record while unreachable")
				}
				a.mu.Lock()
				a.unreachable = false
				a.mu.Unlock()
				e.heartbeat(a)
			}
			waitFor(t, "host-a to forget the instance", func() bool { return !a.has(in.Id) })
			if !b.has(in.Id) {
				t.Fatal("host-b lost the instance")
			}

			// Standby again on host-b, the server restarts, and a restore
			// without a host lands on host-a (the most free memory).
			sid2 := *e.standby(in.Id, nil).SnapshotId
			if _, err := b.commit(ctx, sid2); err != nil {
				t.Fatal(err)
			}
			e.heartbeatAll()
			waitFor(t, "central", func() bool { return e.snapshot(sid2).State == api.SnapshotStateCentral })
			e.start()
			e.register(a)
			e.register(b)
			e.heartbeatAll()
			rr, err = e.c.RestoreInstanceWithResponse(ctx, in.Id, api.RestoreRequest{})
			if err != nil || rr.JSON200 == nil {
				t.Fatalf("restore after the restart: %v %d %s", err, rr.StatusCode(), rr.Body)
			}
			e.heartbeatAll()

			dr, err := e.c.DeleteInstanceWithResponse(ctx, in.Id)
			if err != nil || dr.StatusCode() != 204 {
				t.Fatalf("delete: %v %d %s", err, dr.StatusCode(), dr.Body)
			}
			e.heartbeatAll()
			e.start()
			e.register(a)
			e.register(b)
			e.heartbeatAll()
			if gr, _ := e.c.GetInstanceWithResponse(ctx, in.Id); gr.StatusCode() != 404 {
				t.Fatalf("deleted instance came back: %d %s", gr.StatusCode(), gr.Body)
			}
			if a.has(in.Id) || b.has(in.Id) {
				t.Fatalf("a host kept the deleted instance: a %v b %v", a.has(in.Id), b.has(in.Id))
			}
		})
	}
}

// TestDeletedNotAdopted: a host that still reports an instance the server
// deleted (a record it kept) gets no parked instance back in the catalog,
// and is told to drop the record.
func TestDeletedNotAdopted(t *testing.T) {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	a := e.addHost("host-a", 4096, 8)
	b := e.addHost("host-b", 4096, 8)
	in := e.create("box", 256, 1, "host-b", nil)
	dr, err := e.c.DeleteInstanceWithResponse(ctx, in.Id)
	if err != nil || dr.StatusCode() != 204 {
		t.Fatalf("delete: %v %d %s", err, dr.StatusCode(), dr.Body)
	}
	// host-a kept a standby record of it (the instance had lived there).
	a.mu.Lock()
	ghost := a.newInstance(in.Id, hostapi.InstanceSpec{Name: in.Name, Image: in.Image, MemoryMib: in.MemoryMib, Vcpus: in.Vcpus}, api.InstanceStateStandby)
	ghost.SnapshotId, ghost.Storage, ghost.Host = ptr("sb-0123456789abcdef"), ptr(api.SnapshotStateCentral), nil
	a.mu.Unlock()
	e.heartbeatAll()
	waitFor(t, "host-a to forget the deleted instance", func() bool { return !a.has(in.Id) })
	if gr, _ := e.c.GetInstanceWithResponse(ctx, in.Id); gr.StatusCode() != 404 {
		t.Fatalf("deleted instance adopted back: %d %s", gr.StatusCode(), gr.Body)
	}
	_ = b
}
