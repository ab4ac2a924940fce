package manager

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage/faulty"
	"github.com/hangar-vm/hangar/storage/mem"
)

// TestRollback on a real TCG guest and MinIO: a named snapshot of a
// running guest; the guest writes on; a rollback is refused while it runs
// and while its standby snapshot exists only here; once that is central,
// the rollback resumes the state at snapshot time (same boot, the token
// of then) from a private copy of the named snapshot's local files (kept
// after the commit here; integration/rollback_test.go rolls back from the
// bucket); the replaced standby snapshot stays committed and its local
// files go; a stopped snapshot rolls a stopped instance back into a fresh
// boot.
func TestRollback(t *testing.T) {
	ctx := context.Background()
	store := faulty.New(bucketStore(t))
	a := newHost(t, "a", store, hostOpts{cfg: Config{KeepLocalAfterCommit: true}})
	src := a.create("rb-src")
	c := a.agentOf(src.ID)
	tok, before := writeToken(t, c)

	if _, err := a.m.Snapshot(ctx, src.ID, SnapshotSpec{SnapshotID: "n-rb", Name: "rb", Kind: KindStandby}); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if _, err := a.m.Snapshot(ctx, src.ID, SnapshotSpec{SnapshotID: "n-rb-cfg", Name: "rb-cfg", Kind: KindStopped}); err != nil {
		t.Fatalf("stopped snapshot: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WriteFile(cctx, "/run/token", []byte("written after the snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.Rollback(ctx, src.ID, "n-rb"); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("rollback of a running instance: %v, want ErrInvalidState", err)
	}
	a.waitNamed("n-rb", StorageCentral, 3*time.Minute)
	a.waitNamed("n-rb-cfg", StorageCentral, time.Minute)

	// The standby's upload cannot commit during the outage: its files
	// are the parked VM's only copy, and a rollback must not drop them.
	store.SetOutage(true)
	sb, err := a.m.Standby(ctx, src.ID, StandbyOptions{SnapshotID: "s-rb"})
	if err != nil {
		t.Fatalf("standby: %v", err)
	}
	_, err = a.m.Rollback(ctx, src.ID, "n-rb")
	if !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), "parked VM") {
		t.Fatalf("rollback over an uncommitted standby: %v, want ErrInvalidState", err)
	}
	if in, _ := a.m.Get(ctx, src.ID); in.State != StateStandby || in.Snapshot == nil || in.Snapshot.ID != sb.Snapshot.ID || !in.Snapshot.Local {
		t.Fatalf("refused rollback changed the instance: %+v", in)
	}
	if _, err := a.m.Rollback(ctx, src.ID, "s-rb"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("rollback to its own standby snapshot: %v, want ErrInvalidArgument", err)
	}
	store.SetOutage(false)
	a.waitStorage(src.ID, StorageCentral, 3*time.Minute)

	in, err := a.m.Rollback(ctx, src.ID, "n-rb")
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if in.State != StateRunning || in.RestoredFrom != "n-rb" || in.Snapshot != nil {
		t.Fatalf("after the rollback: %+v", in)
	}
	checkResumed(t, a.agentOf(src.ID), tok, before)
	if _, err := a.repo.Manifest(ctx, "s-rb"); err != nil {
		t.Fatalf("the replaced standby snapshot stays committed: %v", err)
	}
	if _, err := os.Stat(a.m.dirs.snapshotDir("s-rb")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("replaced standby's local files: %v", err)
	}
	if n, err := a.m.GetSnapshot(ctx, "n-rb"); err != nil || n.Storage != StorageCentral || !n.Local {
		t.Fatalf("the named snapshot outlives the rollback: %+v, %v", n, err)
	}

	// A stopped snapshot: a stopped instance boots afresh.
	if _, err := a.m.Stop(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	in, err = a.m.Rollback(ctx, src.ID, "n-rb-cfg")
	if err != nil || in.State != StateRunning || in.RestoredFrom != "n-rb-cfg" {
		t.Fatalf("rollback to a stopped snapshot: %+v, %v", in, err)
	}
	if st, err := a.agentOf(src.ID).State(cctx); err != nil || st.BootID == before.BootID {
		t.Fatalf("after the stopped rollback: %+v, %v; want a fresh boot (old boot id %s)", st, err, before.BootID)
	}
	if err := a.m.Delete(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackRefused without a guest: bad ids, unknown instances and
// snapshots, and a snapshot of another instance are refused, and nothing
// changes.
func TestRollbackRefused(t *testing.T) {
	ctx := context.Background()
	root := shortTemp(t)
	stoppedInstance(t, root, "idle")
	stoppedInstance(t, root, "other")
	h := newHost(t, "a", mem.New(), hostOpts{root: root, cfg: Config{CommitWait: -1}})
	if _, err := h.m.Snapshot(ctx, "other", SnapshotSpec{SnapshotID: "n-other", Name: "other", Kind: KindStopped}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, sid string
		want          error
	}{
		{"bad snapshot id", "idle", "../x", ErrNotFound},
		{"unknown instance", "nobody", "n-other", ErrNotFound},
		{"unknown snapshot", "idle", "n-none", ErrNotFound},
		{"another instance's snapshot", "idle", "n-other", ErrInvalidArgument},
	} {
		if _, err := h.m.Rollback(ctx, tc.id, tc.sid); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if in, err := h.m.Get(ctx, "idle"); err != nil || in.State != StateStopped || in.RestoredFrom != "" || in.RunDir != "" {
		t.Fatalf("refused rollbacks changed the instance: %+v, %v", in, err)
	}
}
