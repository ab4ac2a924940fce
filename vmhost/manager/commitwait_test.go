package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/faulty"
)

// TestRestoreWaitsForCommit: a restore of a snapshot that another host is
// still uploading (its store is down, so the upload retries) waits for
// the manifest instead of failing at once, and resumes the guest once the
// upload commits; a snapshot that never commits is ErrNotFound after
// CommitWait, and a cancelled ctx ends the wait.
func TestRestoreWaitsForCommit(t *testing.T) {
	ctx := context.Background()
	shared := bucketStore(t)
	down := faulty.New(shared)
	a := newHost(t, "a", down, hostOpts{})
	b := newHost(t, "b", shared, hostOpts{cfg: Config{CommitWait: 3 * time.Minute}})
	id := a.create("late").ID
	token, before := writeToken(t, a.agentOf(id))
	down.SetOutage(true) // the upload fails and retries until the store is back
	const sid = "sb-late"
	if _, err := a.m.Standby(ctx, id, StandbyOptions{SnapshotID: sid, Compression: &compression.Setting{Algorithm: compression.LZ4}}); err != nil {
		t.Fatal(err)
	}
	a.waitStorage(id, StorageError, time.Minute)

	type result struct {
		in  Instance
		err error
	}
	done := make(chan result, 1)
	go func() {
		in, err := b.m.RestoreSnapshot(ctx, sid, ForkSpec{ID: "i-late-b", Name: "late"})
		done <- result{in, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("restore answered while the snapshot was not committed: %+v, %v", r.in, r.err)
	case <-time.After(time.Second):
	}
	down.SetOutage(false)
	a.waitStorage(id, StorageCentral, uploadTimeout)
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("restore still waiting after the commit")
	}
	if r.err != nil || r.in.State != StateRunning || r.in.RestoredFrom != sid {
		t.Fatalf("restore after the commit: %+v, %v", r.in, r.err)
	}
	checkResumed(t, b.agentOf("i-late-b"), token, before)

	short := newHost(t, "c", shared, hostOpts{cfg: Config{CommitWait: 300 * time.Millisecond}})
	start := time.Now()
	if _, err := short.m.RestoreSnapshot(ctx, "sb-never", ForkSpec{ID: "i-never", Name: "never"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("restore of a snapshot never committed: %v, want ErrNotFound", err)
	}
	t.Logf("gave up after %v (commit_wait 300ms)", time.Since(start))
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	if _, err := b.m.Fork(cctx, "sb-never", ForkSpec{Name: "never"}); !errors.Is(err, ErrNotFound) || !errors.Is(err, context.Canceled) {
		t.Fatalf("fork of a snapshot never committed, ctx cancelled: %v, want ErrNotFound and context.Canceled", err)
	}
}
