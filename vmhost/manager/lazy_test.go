package manager

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// needFUSE skips a test that needs lazy mounts where they cannot be made
// (scripts/deps.sh provides /dev/fuse; lazyfs mounts as root).
func needFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Skip("lazy restore needs /dev/fuse and root")
	}
}

// lazyMounts counts the mounts under root (from /proc/self/mountinfo).
func lazyMounts(t testing.TB, root string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], root+"/") {
			n++
		}
	}
	return n
}

// waitDropped waits until id's committed snapshot is no longer held
// locally, so that a restore here goes to central storage.
func (h *host) waitDropped(id string) Instance {
	h.t.Helper()
	in := h.waitStorage(id, StorageCentral, uploadTimeout)
	deadline := time.Now().Add(time.Minute)
	for in.Snapshot.Local {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: snapshot of %s still local after its commit", h.name, id)
		}
		time.Sleep(20 * time.Millisecond)
		var err error
		if in, err = h.m.Get(context.Background(), id); err != nil {
			h.t.Fatal(err)
		}
	}
	return in
}

func (h *host) vmPID(id string) int {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	return h.m.insts[id].vm.PID()
}

func readToken(t testing.TB, c *agent.Client, path string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := c.ReadFile(ctx, path)
	return string(b), err
}

// TestLazyRestore: standby on host A; a lazy restore of the committed
// snapshot on host B (empty cache) resumes the very guest (token, boot
// id, counter) over a FUSE mount, and a lazy fork of it runs beside it
// on its own mount until deleted; a second token written on B, a named
// snapshot taken of the lazy guest; standby on
// B goes through the private standby (every page read through the mount,
// converted into a new memory file), the mount goes, the upload commits;
// the ordinary restore on A finds both tokens.
func TestLazyRestore(t *testing.T) {
	needFUSE(t)
	ctx := context.Background()
	store := bucketStore(t)
	a := newHost(t, "a", store, hostOpts{})
	b := newHost(t, "b", store, hostOpts{cfg: Config{RestoreLazy: true}})

	id := a.create("lazy").ID
	ca := a.agentOf(id)
	tok1, before := writeToken(t, ca)
	ca.Close()
	const sid1, sid2 = "sb-lazy-a", "sb-lazy-b"
	if _, err := a.m.Standby(ctx, id, StandbyOptions{SnapshotID: sid1}); err != nil {
		t.Fatal(err)
	}
	a.waitStorage(id, StorageCentral, uploadTimeout)

	in, err := b.m.RestoreSnapshot(ctx, sid1, ForkSpec{})
	if err != nil {
		t.Fatalf("lazy restore on b: %v", err)
	}
	if in.ID != id || in.State != StateRunning || in.LazyFrom == nil || in.LazyFrom.ID != sid1 {
		t.Fatalf("lazily restored instance: %+v; want running over a lazy mount of %s", in, sid1)
	}
	if n := lazyMounts(t, b.root); n != 1 {
		t.Fatalf("%d mounts under b's root while the lazy guest runs, want 1", n)
	}
	// A fork of the same snapshot beside it: its own mount, chunks shared
	// through the host cache; deleting it leaves the other mount alone.
	fork, err := b.m.Fork(ctx, sid1, ForkSpec{ID: "lazy-fork", Name: "lazy-fork"})
	if err != nil || fork.LazyFrom == nil {
		t.Fatalf("lazy fork on b: %+v, %v", fork, err)
	}
	if n := lazyMounts(t, b.root); n != 2 {
		t.Fatalf("%d mounts under b's root with a lazy restore and a lazy fork, want 2", n)
	}
	cf := b.agentOf(fork.ID)
	checkResumed(t, cf, tok1, before)
	cf.Close()
	if err := b.m.Delete(ctx, fork.ID); err != nil {
		t.Fatal(err)
	}
	if n := lazyMounts(t, b.root); n != 1 {
		t.Fatalf("%d mounts under b's root after deleting the fork, want 1", n)
	}
	cb := b.agentOf(id)
	checkResumed(t, cb, tok1, before)
	// The guest goes on over the lazy file: dirty some memory, leave a
	// second token.
	tok2 := randomToken(t)
	if err := cb.WriteFile(ctx, "/run/token2", []byte(tok2), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := cb.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", "head -c 4194304 /dev/urandom > /run/noise"}, Timeout: 120}); err != nil || res.ExitCode != 0 {
		t.Fatalf("dirty guest memory: %+v, %v", res, err)
	}
	mid, err := cb.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A named snapshot of the lazy guest converts its RAM too, and the
	// guest goes on over its mount.
	if _, err := b.m.Snapshot(ctx, id, SnapshotSpec{SnapshotID: "n-lazy", Name: "while-lazy", Kind: KindStandby}); err != nil {
		t.Fatalf("named snapshot of the lazy guest: %v", err)
	}
	if got, err := readToken(t, cb, "/run/token2"); err != nil || got != tok2 {
		t.Fatalf("lazy guest after its named snapshot: token2 %q, %v", got, err)
	}
	cb.Close()
	b.waitNamed("n-lazy", StorageCentral, uploadTimeout)

	parked, err := b.m.Standby(ctx, id, StandbyOptions{SnapshotID: sid2})
	if err != nil {
		t.Fatalf("standby of the lazy guest: %v", err)
	}
	if parked.State != StateStandby || parked.LazyFrom != nil || parked.Snapshot.ID != sid2 {
		t.Fatalf("after the lazy guest's standby: %+v", parked)
	}
	if n := lazyMounts(t, b.root); n != 0 {
		t.Fatalf("%d mounts under b's root after the standby, want 0", n)
	}
	b.waitStorage(id, StorageCentral, uploadTimeout)

	// Back on A, the ordinary (eager) way, as a new instance.
	back, err := a.m.RestoreSnapshot(ctx, sid2, ForkSpec{ID: "lazy-back", Name: "lazy-back"})
	if err != nil {
		t.Fatalf("restore on a of b's standby: %v", err)
	}
	if back.LazyFrom != nil {
		t.Fatalf("a restores eagerly, yet %+v", back)
	}
	ca = a.agentOf(back.ID)
	checkResumed(t, ca, tok1, mid)
	if got, err := readToken(t, ca, "/run/token2"); err != nil || got != tok2 {
		t.Fatalf("token written on b = %q, %v; want %q", got, err, tok2)
	}
	if _, err := a.m.Stop(ctx, back.ID); err != nil {
		t.Fatal(err)
	}
	ca.Close()

	// The named snapshot taken while lazy restores on A too.
	named, err := a.m.RestoreSnapshot(ctx, "n-lazy", ForkSpec{ID: "lazy-named", Name: "lazy-named"})
	if err != nil {
		t.Fatalf("restore on a of the snapshot taken while lazy: %v", err)
	}
	ca = a.agentOf(named.ID)
	checkResumed(t, ca, tok1, before)
	if got, err := readToken(t, ca, "/run/token2"); err != nil || got != tok2 {
		t.Fatalf("token2 in the snapshot taken while lazy = %q, %v; want %q", got, err, tok2)
	}
}

// TestLazyRestoreRestart: what a host with restore.lazy does around its
// lazy mounts.
//
//   - FUSE unavailable (the mount fails): the restore downloads eagerly.
//   - A manager that goes away (Detach: the FUSE server dies as with the
//     process, the mount is left stale, the guest still runs): the next
//     manager kills the guest, removes the stale mount and puts the
//     instance back on standby on the committed snapshot it was restored
//     from; what the guest did since is gone, and it restores again.
//   - Delete of a lazily restored instance leaves no mount and no runtime
//     directory.
func TestLazyRestoreRestart(t *testing.T) {
	needFUSE(t)
	ctx := context.Background()
	store := bucketStore(t)
	a := newHost(t, "a", store, hostOpts{cfg: Config{RestoreLazy: true}})
	id := a.create("lazy-restart").ID
	c := a.agentOf(id)
	tok1, before := writeToken(t, c)
	c.Close()
	if _, err := a.m.Standby(ctx, id, StandbyOptions{SnapshotID: "sb-lr-1"}); err != nil {
		t.Fatal(err)
	}
	a.waitDropped(id)

	// No FUSE on this host: the restore falls back to the download.
	lazyMount = func(string, snapshot.File, lazyfs.Fetcher, lazyfs.Options) (*lazyfs.Server, error) {
		return nil, errors.New("open /dev/fuse: no such device")
	}
	in, err := a.m.Restore(ctx, id)
	lazyMount = lazyfs.Mount
	if err != nil {
		t.Fatalf("restore without FUSE: %v", err)
	}
	if in.LazyFrom != nil || lazyMounts(t, a.root) != 0 {
		t.Fatalf("restore without FUSE is lazy: %+v", in)
	}
	c = a.agentOf(id)
	checkResumed(t, c, tok1, before)
	c.Close()
	if _, err := a.m.Standby(ctx, id, StandbyOptions{SnapshotID: "sb-lr-2"}); err != nil {
		t.Fatal(err)
	}
	a.waitDropped(id)

	in, err = a.m.Restore(ctx, id)
	if err != nil || in.LazyFrom == nil || in.LazyFrom.ID != "sb-lr-2" {
		t.Fatalf("lazy restore: %+v, %v", in, err)
	}
	c = a.agentOf(id)
	checkResumed(t, c, tok1, before)
	if err := c.WriteFile(ctx, "/run/token2", []byte("lost"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Close()
	pid := a.vmPID(id)
	a.m.Detach() // the daemon dies: its FUSE server with it
	a.cache.Close()

	r := newHost(t, "a-restarted", store, hostOpts{root: a.root, cfg: Config{RestoreLazy: true}})
	got, err := r.m.Get(ctx, id)
	if err != nil || got.State != StateStandby || got.Snapshot == nil || got.Snapshot.ID != "sb-lr-2" || got.Snapshot.Storage != StorageCentral ||
		got.LazyFrom != nil || got.RunDir != "" {
		t.Fatalf("lazy instance after the restart: %+v, %v; want standby on its committed snapshot sb-lr-2", got, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the lazy guest's QEMU (pid %d) still runs after the restart", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := lazyMounts(t, r.root); n != 0 {
		t.Fatalf("%d mounts left under the root after the restart", n)
	}

	in, err = r.m.Restore(ctx, id)
	if err != nil || in.LazyFrom == nil {
		t.Fatalf("lazy restore after the restart: %+v, %v", in, err)
	}
	c = r.agentOf(id)
	checkResumed(t, c, tok1, before)
	if tok, err := readToken(t, c, "/run/token2"); err == nil {
		t.Fatalf("token written after the lazy restore survived the restart (%q): the guest was not put back", tok)
	}
	c.Close()
	if err := r.m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := lazyMounts(t, r.root); n != 0 {
		t.Fatalf("%d mounts left after delete", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.root, "d", runDir)); len(ents) != 0 {
		t.Fatalf("runtime directories left after delete: %v", ents)
	}
}
