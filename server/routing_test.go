package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestRestoreWhileUploading is the server's routing of a restore whose
// snapshot is not central yet (DESIGN §5): without a host, it goes to the
// host that holds the files (the origin), even when another host has more
// room, and resumes at once from local files; with another host named, the
// request waits for the upload to commit and only then calls that host,
// which then reads the committed snapshot from the bucket.
func TestRestoreWhileUploading(t *testing.T) {
	e := newEnv(t, testConfig(t))
	ctx := context.Background()
	a := e.addHost("host-a", 2048, 8)
	b := e.addHost("host-b", 8192, 16) // more room: a free-memory choice would pick it

	// Origin preferred while local/uploading.
	in := e.create("near", 512, 1, "host-a", nil)
	in = e.standby(in.Id, nil)
	if st := e.snapshot(*in.SnapshotId).State; st == api.SnapshotStateCentral {
		t.Fatalf("snapshot %s already central", *in.SnapshotId)
	}
	rr, err := e.c.RestoreInstanceWithResponse(ctx, in.Id, api.RestoreRequest{})
	if err != nil || rr.JSON200 == nil || rr.JSON200.Host == nil || *rr.JSON200.Host != "host-a" {
		t.Fatalf("restore while uploading: %v %s; want it on host-a, the holder", err, rr.Body)
	}
	for _, c := range b.calls {
		if c == "Restore" {
			t.Fatalf("host-b was asked to restore: %v", b.calls)
		}
	}

	// Another host named: the request waits for the commit.
	far := e.create("far", 512, 1, "host-a", nil)
	far = e.standby(far.Id, nil)
	sid := *far.SnapshotId
	type result struct {
		host string
		err  error
		body string
	}
	done := make(chan result, 1)
	go func() {
		r, err := e.c.RestoreInstanceWithResponse(ctx, far.Id, api.RestoreRequest{Host: ptr("host-b")})
		res := result{err: err}
		if r != nil {
			res.body = string(r.Body)
			if r.JSON200 != nil && r.JSON200.Host != nil {
				res.host = *r.JSON200.Host
			}
		}
		done <- res
	}()
	select {
	case r := <-done:
		t.Fatalf("restore on host-b answered before the upload committed: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	b.mu.Lock()
	for _, c := range b.calls {
		if c == "Restore" {
			t.Fatalf("host-b called before the commit: %v", b.calls)
		}
	}
	b.mu.Unlock()
	if _, err := a.commit(ctx, sid); err != nil {
		t.Fatal(err)
	}
	e.heartbeat(a) // the origin reports the commit
	select {
	case r := <-done:
		if r.err != nil || r.host != "host-b" {
			t.Fatalf("restore on host-b after the commit: %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("restore on host-b still waiting after the commit")
	}
	if got := b.calls; len(got) == 0 || got[len(got)-1] != "Restore" {
		t.Fatalf("host-b calls %v", got)
	}

	// A named host while the upload has failed: 409 invalid_state, no wait.
	fail := e.create("fail", 512, 1, "host-a", nil)
	fail = e.standby(fail.Id, nil)
	a.mu.Lock()
	msg := "store unreachable"
	a.snapshots[*fail.SnapshotId].State = api.SnapshotStateError
	a.snapshots[*fail.SnapshotId].Error = &msg
	a.mu.Unlock()
	e.heartbeat(a)
	r, err := e.c.RestoreInstanceWithResponse(ctx, fail.Id, api.RestoreRequest{Host: ptr("host-b")})
	if err != nil || r.StatusCode() != 409 {
		t.Fatalf("restore elsewhere of a failed upload: %v %d %s", err, r.StatusCode(), r.Body)
	}
}
