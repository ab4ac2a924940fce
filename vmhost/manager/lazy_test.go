package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost"
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

// sameChunkBytes is the raw bytes of the non-hole chunks of snapshot to's
// memory file that have the id snapshot from's has at the same index.
func sameChunkBytes(t testing.TB, h *host, from, to string) int64 {
	t.Helper()
	mem := func(sid string) snapshot.File {
		man, err := h.repo.Manifest(context.Background(), sid)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range man.Files {
			if f.Name == vmhost.MemoryFile {
				return f
			}
		}
		t.Fatalf("snapshot %s has no %s", sid, vmhost.MemoryFile)
		return snapshot.File{}
	}
	a, b := mem(from), mem(to)
	var n int64
	for i, c := range b.Chunks {
		if !c.Hole && i < len(a.Chunks) && !a.Chunks[i].Hole && a.Chunks[i].ID == c.ID {
			n += int64(c.RawLen)
		}
	}
	return n
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
// converted into a new memory file, which gets chunk digests from the
// chunks the daemon filled), the mount goes, the upload commits with most
// chunks recalled, not hashed; the ordinary restore on A finds both
// tokens.
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
	// The new memory file got chunk digests from the chunks b's daemon
	// filled (lazydigests.go): its upload takes the ids of what the guest
	// left alone instead of hashing them.
	p := b.waitStorage(id, StorageCentral, uploadTimeout).Snapshot.Progress
	t.Logf("upload after the lazy guest's standby: %d of %d non-zero bytes unchanged since the lazy restore (not hashed), %d uploaded",
		p.Unchanged, p.NonZero, p.Uploaded)
	// Exactly the chunks that are what they were in the restored snapshot
	// (QEMU read every page at standby, so every non-hole chunk was filled
	// and recorded): the rest were hashed.
	same := sameChunkBytes(t, b, sid1, sid2)
	t.Logf("%d bytes in chunks the same as in %s at the same place", same, sid1)
	if p.Unchanged == 0 || p.Unchanged != same {
		t.Fatalf("upload after the lazy guest's standby: progress %+v, want %d bytes unchanged (the chunks the guest left alone)", p, same)
	}

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
// lazy mounts and their server processes.
//
//   - FUSE unavailable (the server cannot start): the restore downloads
//     eagerly.
//   - The manager dies (Detach, as kill -9) while the guest, without
//     prefetch, writes into memory it never touched: the lazy server
//     waits for chunks until the next manager's chunk socket answers; the
//     guest goes on (same QEMU, its tokens), re-attached.
//   - A graceful Close and a new manager: the same.
//   - The lazy server dies with the manager: the next manager kills the
//     guest and puts the instance back on standby on the committed
//     snapshot it was restored from; what it did since is gone.
//   - Delete of a lazily restored instance leaves no mount, no server
//     process and no runtime directory.
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
	lazyStart = func(context.Context, lazyfs.ChildConfig) (*lazyChild, error) {
		return nil, errors.New("open /dev/fuse: no such device")
	}
	in, err := a.m.Restore(ctx, id)
	lazyStart = startLazyChild
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

	// No prefetch: chunks come only when the guest touches them, so some
	// are still missing when the manager goes away.
	lazyNoPrefetch = true
	defer func() { lazyNoPrefetch = false }()
	in, err = a.m.Restore(ctx, id)
	if err != nil || in.LazyFrom == nil || in.LazyFrom.ID != "sb-lr-2" {
		t.Fatalf("lazy restore: %+v, %v", in, err)
	}
	run := in.RunDir
	c = a.agentOf(id)
	checkResumed(t, c, tok1, before)
	tok2 := randomToken(t)
	if err := c.WriteFile(ctx, "/run/token2", []byte(tok2), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := a.vmPID(id)

	// The daemon dies (kill -9: Detach drops everything, the chunk socket
	// goes) while the guest fills a 48 MiB buffer in memory it never touched:
	// the lazy server, its own process, waits for chunks until a
	// successor's chunk socket answers.
	a.m.Detach()
	a.cache.Close()
	touched := make(chan error, 1)
	go func() {
		res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", "dd if=/dev/urandom of=/dev/null bs=48M count=1 2>&1"}, Timeout: 600})
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("exit %d: %s", res.ExitCode, res.Stderr)
		}
		touched <- err
	}()
	waitLog(t, filepath.Join(run, lazyfs.ChildLogFile), "chunk server away")
	r := newHost(t, "a-restarted", store, hostOpts{root: a.root, cfg: Config{RestoreLazy: true}})
	got, err := r.m.Get(ctx, id)
	if err != nil || got.State != StateRunning || got.LazyFrom == nil || got.RunDir != run {
		t.Fatalf("lazy instance after the manager's death: %+v, %v; want still running over its lazy mount", got, err)
	}
	if err := <-touched; err != nil {
		t.Fatalf("the guest touching missing chunks while the manager was away: %v", err)
	}
	if r.vmPID(id) != pid {
		t.Fatalf("the guest's QEMU is pid %d after the restart, was %d", r.vmPID(id), pid)
	}
	checkResumed(t, c, tok1, before)
	if got, err := readToken(t, c, "/run/token2"); err != nil || got != tok2 {
		t.Fatalf("token written after the lazy restore: %q, %v; want %q", got, err, tok2)
	}
	c.Close()

	// A graceful stop of the manager: the guest and its lazy server go
	// on; the next manager re-attaches both.
	r.m.Close()
	releaseVMs(r)
	r.cache.Close()
	r2 := newHost(t, "a-closed-reopened", store, hostOpts{root: a.root, cfg: Config{RestoreLazy: true}})
	got, err = r2.m.Get(ctx, id)
	if err != nil || got.State != StateRunning || got.LazyFrom == nil || r2.vmPID(id) != pid {
		t.Fatalf("lazy instance after a graceful restart: %+v, %v; want still running (pid %d)", got, err, pid)
	}
	c = r2.agentOf(id)
	checkResumed(t, c, tok1, before)
	if got, err := readToken(t, c, "/run/token2"); err != nil || got != tok2 {
		t.Fatalf("token2 after the graceful restart: %q, %v; want %q", got, err, tok2)
	}
	c.Close()

	// The lazy server itself dies with the manager (kill -9 of both): the
	// guest cannot go on; the next manager kills it and puts the instance
	// back on standby on the committed snapshot it was restored from.
	srvPID, ok := lazyfs.ChildPID(run)
	if !ok {
		t.Fatal("no lazy server process found for the running lazy guest")
	}
	r2.m.Detach()
	r2.cache.Close()
	syscall.Kill(srvPID, syscall.SIGKILL)

	r = newHost(t, "a-restarted-2", store, hostOpts{root: a.root, cfg: Config{RestoreLazy: true}})
	got, err = r.m.Get(ctx, id)
	if err != nil || got.State != StateStandby || got.Snapshot == nil || got.Snapshot.ID != "sb-lr-2" || got.Snapshot.Storage != StorageCentral ||
		got.LazyFrom != nil || got.RunDir != "" {
		t.Fatalf("lazy instance after its lazy server died: %+v, %v; want standby on its committed snapshot sb-lr-2", got, err)
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
		t.Fatalf("token written after the lazy restore survived its lazy server's death (%q): the guest was not put back", tok)
	}
	c.Close()
	srvPID, _ = lazyfs.ChildPID(in.RunDir)
	if err := r.m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := lazyMounts(t, r.root); n != 0 {
		t.Fatalf("%d mounts left after delete", n)
	}
	if srvPID == 0 || syscall.Kill(srvPID, 0) == nil {
		t.Fatalf("lazy server (pid %d) still runs after delete", srvPID)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.root, "d", runDir)); len(ents) != 0 {
		t.Fatalf("runtime directories left after delete: %v", ents)
	}
}

// releaseVMs lets go of h's VMs' control sockets, as the end of a
// gracefully stopped daemon's process does.
func releaseVMs(h *host) {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	for _, e := range h.m.insts {
		if r, ok := e.vm.(interface{ Release() }); ok {
			r.Release()
		}
	}
}

// waitLog waits until the file at path contains s.
func waitLog(t *testing.T, path, s string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never said %q:\n%s", path, s, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
