package manager

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hangar-vm/hangar/storage/digests"
	"github.com/hangar-vm/hangar/vmhost"
)

// TestStandbyRestoreStandbyOneHost: standby, restore from central storage
// and standby again on one host, with the daemon killed (-9 style) while
// the restored guest runs. The restore records the memory file's chunk
// digests; the restarted daemon finds the same key in its data directory,
// so the second upload takes the ids of chunks the guest did not change
// from the record. The guest's writes since the restore (a token) are in
// changed chunks, which must be hashed: the token reads back after the
// next restore.
func TestStandbyRestoreStandbyOneHost(t *testing.T) {
	ctx := context.Background()
	store := bucketStore(t)
	a := newHost(t, "a", store, hostOpts{})
	keyPath := filepath.Join(a.m.cfg.DataDir, digestKeyFile)
	key0, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatalf("the host has no digest key: %v", err)
	}
	if st, _ := os.Stat(keyPath); len(key0) != digests.KeySize || st.Mode().Perm() != 0o600 {
		t.Fatalf("digest key: %d bytes, mode %v", len(key0), st.Mode().Perm())
	}
	id := a.create("homebody").ID
	writeToken(t, a.agentOf(id))

	st, err := a.m.Standby(ctx, id, StandbyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := a.waitStorage(id, StorageCentral, uploadTimeout).Snapshot
	if first.Progress.Unchanged != 0 {
		t.Fatalf("first upload of a fresh guest's memory: %d bytes unchanged, want 0", first.Progress.Unchanged)
	}
	r, err := a.m.Restore(ctx, id) // local files were dropped at the commit: from central
	if err != nil {
		t.Fatal(err)
	}
	if r.RestoredFrom != st.Snapshot.ID {
		t.Fatalf("restored %+v", r)
	}
	if _, err := os.Stat(digests.PathFor(filepath.Join(r.RunDir, vmhost.MemoryFile))); err != nil {
		t.Fatalf("restored memory has no chunk digests: %v", err)
	}
	token, before := writeToken(t, a.agentOf(id))

	// The daemon dies; its successor opens the same data directory.
	for _, c := range a.agents {
		c.Close()
	}
	a.m.Detach()
	a.cache.Close()
	b := newHost(t, "a-restarted", store, hostOpts{root: a.root})
	if key, err := os.ReadFile(keyPath); err != nil || !bytes.Equal(key, key0) {
		t.Fatalf("digest key after the restart: changed or unreadable (%v)", err)
	}
	checkResumed(t, b.agentOf(id), token, before)
	for _, c := range b.agents {
		c.Close()
	}
	clear(b.agents)

	if _, err := b.m.Standby(ctx, id, StandbyOptions{}); err != nil {
		t.Fatal(err)
	}
	second := b.waitStorage(id, StorageCentral, uploadTimeout).Snapshot
	p := second.Progress
	t.Logf("second upload: %d of %d non-zero bytes unchanged since the restore (not hashed), %d uploaded", p.Unchanged, p.NonZero, p.Uploaded)
	if p.Unchanged == 0 || p.Unchanged > p.NonZero {
		t.Fatalf("second upload on the same host: progress %+v, want some unchanged bytes from the restore's record", p)
	}
	if _, err := b.m.Restore(ctx, id); err != nil {
		t.Fatal(err)
	}
	checkResumed(t, b.agentOf(id), token, before)
	if err := b.m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}
