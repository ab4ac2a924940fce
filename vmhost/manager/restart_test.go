package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/faulty"
)

// TestRestart: a manager is dropped without any cleanup while one guest
// runs and another's upload is half done (as if the daemon were killed
// with -9; Detach releases the guests' control sockets the way the
// process's death would). A new manager opened on the same data directory,
// with a fresh Repo (an empty index, as in a new process), finds both
// instances, re-attaches the running guest, and completes the upload
// without storing any chunk twice.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	counting := newCountingStore(bucketStore(t))
	slow := faulty.New(counting)
	a := newHost(t, "a", slow, hostOpts{})
	runID := a.create("keeps-running").ID
	runAgent := a.agentOf(runID)
	runTok, runBefore := writeToken(t, runAgent)
	parkID := a.create("parked").ID
	parkTok, parkBefore := writeToken(t, a.agentOf(parkID))

	// Let a few creates through (the lock, some chunks), then hang the rest.
	slow.AddFault(faulty.OpCreate, faulty.Fault{Skip: 6, Delay: time.Hour, Times: -1})
	// The server's way: its snapshot id (the idempotency key) and the
	// setting it resolved.
	const sid = "sb-restart"
	park := StandbyOptions{SnapshotID: sid, Compression: &compression.Setting{Algorithm: compression.Zstd, Level: 1}}
	st, err := a.m.Standby(ctx, parkID, park)
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot.ID != sid || st.Snapshot.Compression != "zstd:1" {
		t.Fatalf("standby: snapshot %+v, want id %s with zstd:1", st.Snapshot, sid)
	}
	deadline := time.Now().Add(time.Minute)
	for slow.Calls(faulty.OpCreate) <= 6 {
		if time.Now().After(deadline) {
			t.Fatal("the upload never reached the store")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stored, _ := counting.chunkWrites()
	t.Logf("chunks stored before the crash: %d", stored)
	runAgent.Close() // the guest's serial port takes one client at a time
	a.m.Detach()     // the crash: jobs stop where they are, guests keep running
	a.cache.Close()  // and the dead process's lock on its cache goes with it

	b := newHost(t, "a-restarted", counting, hostOpts{root: a.root})
	// The server retries the standby it never got an answer to: the
	// restarted daemon recognises it by the snapshot id.
	if again, err := b.m.Standby(ctx, parkID, park); err != nil || again.State != StateStandby || again.Snapshot.ID != sid {
		t.Fatalf("standby retried after the restart: %+v, %v; want the instance on standby with %s", again, err, sid)
	}
	list, err := b.m.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("after restart: %+v, %v; want both instances", list, err)
	}
	r, err := b.m.Get(ctx, runID)
	if err != nil || r.State != StateRunning {
		t.Fatalf("running instance after restart: %+v, %v", r, err)
	}
	checkResumed(t, b.agentOf(runID), runTok, runBefore) // same guest, never rebooted
	p := b.waitStorage(parkID, StorageCentral, uploadTimeout)
	if p.State != StateStandby || p.Snapshot.ID != sid {
		t.Fatalf("parked instance after restart: %+v", p)
	}
	n, twice := counting.chunkWrites()
	if len(twice) > 0 {
		t.Fatalf("chunks stored twice: %v", twice)
	}
	man, err := b.repo.Manifest(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the restart: %d chunk objects in all, none written twice; new_stored of the resumed upload %d", n, man.Totals.NewStored)

	// Both are fully usable.
	if _, err := b.m.Restore(ctx, parkID); err != nil {
		t.Fatalf("restore after restart: %v", err)
	}
	checkResumed(t, b.agentOf(parkID), parkTok, parkBefore)
	for _, ac := range b.agents { // one client at a time per serial port
		ac.Close()
	}
	// The snapshot it runs from is remembered across a restart (a retried
	// restore is recognised by it), and its id cannot name a new standby.
	b.m.Detach()
	b.cache.Close()
	c := newHost(t, "a-restarted-twice", counting, hostOpts{root: a.root})
	if r, err := c.m.Get(ctx, parkID); err != nil || r.State != StateRunning || r.RestoredFrom != sid {
		t.Fatalf("restored instance after a second restart: %+v, %v; want running, restored from %s", r, err, sid)
	}
	if _, err := c.m.Standby(ctx, parkID, park); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("standby reusing the id of the snapshot it runs from: %v, want ErrAlreadyExists", err)
	}
	b = c
	if _, err := b.m.Stop(ctx, runID); err != nil {
		t.Fatal(err)
	}
	if err := b.m.Delete(ctx, runID); err != nil {
		t.Fatal(err)
	}
}
