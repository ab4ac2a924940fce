package manager

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage/faulty"
	"github.com/hangar-vm/hangar/storage/mem"
)

// waitNamed polls until named snapshot sid's storage is want.
func (h *host) waitNamed(sid string, want Storage, timeout time.Duration) NamedSnapshot {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := h.m.GetSnapshot(context.Background(), sid)
		if err != nil {
			h.t.Fatal(err)
		}
		if n.Storage == want {
			return n
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: named snapshot %s: %+v, waited %v for storage %s", h.name, sid, n, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNamedSnapshot on real TCG guests and MinIO: a standby snapshot of a
// running guest leaves it running, and what it writes afterwards is not
// in the snapshot; a fork of the snapshot on another host resumes the
// state at snapshot time; a stopped snapshot forks into a fresh boot;
// delete forgets the snapshot here while its central copy stays.
func TestNamedSnapshot(t *testing.T) {
	ctx := context.Background()
	store := bucketStore(t)
	a := newHost(t, "a", store, hostOpts{})
	b := newHost(t, "b", store, hostOpts{})
	src := a.create("named-src")
	c := a.agentOf(src.ID)
	tok, before := writeToken(t, c)

	spec := SnapshotSpec{SnapshotID: "n-first", Name: "first", Kind: KindStandby,
		Override: &compression.Policy{Algorithm: "lz4", Level: ptrInt(3)}}
	n, err := a.m.Snapshot(ctx, src.ID, spec)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if n.ID != "n-first" || n.Kind != KindStandby || n.InstanceID != src.ID || n.Name != "first" || n.Compression != "lz4:3" || n.MemoryMiB != guestMiB {
		t.Fatalf("named snapshot %+v", n)
	}
	// The guest goes on, and writes over the token.
	if in, _ := a.m.Get(ctx, src.ID); in.State != StateRunning || in.Snapshot != nil {
		t.Fatalf("instance after a named snapshot: %+v", in)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WriteFile(cctx, "/run/token", []byte("written after the snapshot"), 0o600); err != nil {
		t.Fatalf("the guest does not run on after the snapshot: %v", err)
	}

	// A retry answers the same snapshot; the id for anything else is taken.
	if again, err := a.m.Snapshot(ctx, src.ID, spec); err != nil || again.ID != n.ID || again.Created != n.Created {
		t.Fatalf("retried snapshot: %+v, %v", again, err)
	}
	other := spec
	other.Name = "second"
	if _, err := a.m.Snapshot(ctx, src.ID, other); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("snapshot id reused for another name: %v, want ErrAlreadyExists", err)
	}

	stopped, err := a.m.Snapshot(ctx, src.ID, SnapshotSpec{SnapshotID: "n-config", Name: "config", Kind: KindStopped})
	if err != nil || stopped.Kind != KindStopped {
		t.Fatalf("stopped snapshot: %+v, %v", stopped, err)
	}
	if list, _ := a.m.Snapshots(ctx, src.ID); len(list) != 2 || list[0].ID != "n-first" || list[1].ID != "n-config" {
		t.Fatalf("snapshots of %s: %+v", src.ID, list)
	}

	n = a.waitNamed("n-first", StorageCentral, 3*time.Minute)
	if n.Local || n.Totals == nil || n.Totals.Raw < guestMiB<<20 {
		t.Fatalf("committed named snapshot %+v", n)
	}
	if _, err := os.Stat(a.m.dirs.snapshotDir("n-first")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("local files after the commit: %v", err)
	}
	man, err := a.repo.Manifest(ctx, "n-first")
	if err != nil {
		t.Fatal(err)
	}
	if man.Kind != KindStandby || man.Labels[LabelRole] != RoleNamed || man.Labels[LabelSnapshotName] != "first" ||
		man.Labels[LabelInstanceName] != "named-src" || man.Compression.Algorithm != "lz4" || man.Compression.Level != 3 {
		t.Fatalf("manifest kind %s labels %v compression %+v", man.Kind, man.Labels, man.Compression)
	}
	a.waitNamed("n-config", StorageCentral, time.Minute)
	man, err = a.repo.Manifest(ctx, "n-config")
	if err != nil {
		t.Fatal(err)
	}
	var rec vmRecord
	if man.Kind != KindStopped || len(man.Files) != 1 || man.Files[0].Name != ConfigFile || man.Labels[LabelRole] != RoleNamed ||
		json.Unmarshal(man.VM, &rec) != nil || rec.InstanceID != src.ID || rec.MemoryMiB != guestMiB {
		t.Fatalf("stopped manifest kind %s files %+v labels %v vm %s", man.Kind, man.Files, man.Labels, man.VM)
	}

	// Host b never saw the snapshot: the fork downloads it and resumes
	// the guest as it was at snapshot time.
	f, err := b.m.Fork(ctx, "n-first", ForkSpec{Name: "named-fork"})
	if err != nil {
		t.Fatalf("fork on b: %v", err)
	}
	checkResumed(t, b.agentOf(f.ID), tok, before)
	if got, err := c.ReadFile(cctx, "/run/token"); err != nil || string(got) != "written after the snapshot" {
		t.Fatalf("the source's own later write: %q, %v", got, err)
	}

	// The stopped snapshot forks into a fresh boot of the same size.
	sf, err := b.m.Fork(ctx, "n-config", ForkSpec{Name: "config-fork"})
	if err != nil {
		t.Fatalf("fork of the stopped snapshot: %v", err)
	}
	if sf.MemoryMiB != guestMiB || sf.State != StateRunning || sf.RestoredFrom != "n-config" {
		t.Fatalf("fork of the stopped snapshot: %+v", sf)
	}
	if st, err := b.agentOf(sf.ID).State(cctx); err != nil || st.BootID == before.BootID {
		t.Fatalf("stopped fork: %+v, %v; want a fresh boot (source boot id %s)", st, err, before.BootID)
	}

	if err := a.m.DeleteSnapshot(ctx, "n-first"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.GetSnapshot(ctx, "n-first"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := a.repo.Manifest(ctx, "n-first"); err != nil {
		t.Fatalf("the central copy is the server's to delete: %v", err)
	}
	for _, h := range []*host{a, b} {
		ins, _ := h.m.List(ctx)
		for _, in := range ins {
			if err := h.m.Delete(ctx, in.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func ptrInt(v int) *int { return &v }

// stoppedInstance writes the metadata of a stopped instance into a data
// directory, for tests that need no guest.
func stoppedInstance(t *testing.T, root, id string) {
	t.Helper()
	dirs := layout{root: filepath.Join(root, "d")}
	if err := dirs.init(); err != nil {
		t.Fatal(err)
	}
	im := testImage(t)
	in := &Instance{ID: id, Name: id + "-name", State: StateStopped, MemoryMiB: 64, VCPUs: 1, ImageDigest: im.Digest, Image: "default",
		Created: time.Now().UTC(), Updated: time.Now().UTC()}
	if err := dirs.saveInstance(in); err != nil {
		t.Fatal(err)
	}
}

// TestNamedSnapshotNoGuest: bad specs are refused before anything
// changes; a stopped snapshot of a stopped instance uploads, survives a
// restart, and outlives its instance; delete cancels a running upload and
// removes the files; a restart resumes an interrupted upload.
func TestNamedSnapshotNoGuest(t *testing.T) {
	ctx := context.Background()
	root := shortTemp(t)
	stoppedInstance(t, root, "idle")
	// An upload that cannot finish: every attempt fails during the outage.
	store := faulty.New(mem.New())
	h := newHost(t, "a", store, hostOpts{root: root})

	for name, spec := range map[string]SnapshotSpec{
		"no name":             {Kind: KindStopped},
		"bad kind":            {Name: "x", Kind: "paused"},
		"bad id":              {SnapshotID: "../x", Name: "x", Kind: KindStopped},
		"stopped compression": {Name: "x", Kind: KindStopped, Compression: &compression.Setting{Algorithm: compression.Zstd, Level: 1}},
	} {
		if _, err := h.m.Snapshot(ctx, "idle", spec); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := h.m.Snapshot(ctx, "idle", SnapshotSpec{Name: "x", Kind: KindStandby}); !errors.Is(err, ErrInvalidState) {
		t.Errorf("standby snapshot of a stopped instance: %v, want ErrInvalidState", err)
	}
	if _, err := h.m.Snapshot(ctx, "nobody", SnapshotSpec{Name: "x", Kind: KindStopped}); !errors.Is(err, ErrNotFound) {
		t.Errorf("snapshot of an unknown instance: %v, want ErrNotFound", err)
	}
	if l, _ := h.m.Snapshots(ctx, ""); len(l) != 0 {
		t.Fatalf("refused requests left snapshots: %+v", l)
	}

	store.SetOutage(true)
	n, err := h.m.Snapshot(ctx, "idle", SnapshotSpec{SnapshotID: "n-cfg", Name: "cfg", Kind: KindStopped})
	if err != nil || n.Kind != KindStopped || !n.Local || n.Compression != "none" {
		t.Fatalf("stopped snapshot of a stopped instance: %+v, %v", n, err)
	}
	h.waitNamed("n-cfg", StorageError, time.Minute)
	del, err := h.m.Snapshot(ctx, "idle", SnapshotSpec{SnapshotID: "n-del", Name: "del", Kind: KindStopped})
	if err != nil {
		t.Fatal(err)
	}
	// Delete cancels the job that retries and removes every trace.
	if err := h.m.DeleteSnapshot(ctx, del.ID); err != nil {
		t.Fatal(err)
	}
	if js, _ := h.m.Jobs(ctx); len(js) != 1 || js[0].ID != "n-cfg" || js[0].Role != RoleNamed {
		t.Fatalf("jobs after delete: %+v", js)
	}
	for _, p := range []string{h.m.dirs.snapshotDir("n-del"), h.m.dirs.jobFile("n-del"), h.m.dirs.namedFile("n-del")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after delete: %v", p, err)
		}
	}
	if err := h.m.DeleteSnapshot(ctx, del.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}

	// A restart resumes the upload, which commits once the store answers;
	// the snapshot outlives its instance.
	h.m.Close()
	h.cache.Close()
	store.SetOutage(false)
	h2 := newHost(t, "a2", store, hostOpts{root: root})
	if err := h2.m.Delete(ctx, "idle"); err != nil {
		t.Fatal(err)
	}
	n = h2.waitNamed("n-cfg", StorageCentral, time.Minute)
	if n.Local || n.InstanceName != "idle-name" {
		t.Fatalf("after the restart: %+v", n)
	}
	man, err := h2.repo.Manifest(ctx, "n-cfg")
	if err != nil || man.Kind != KindStopped || man.Labels[LabelSnapshotName] != "cfg" || man.Labels[LabelInstanceName] != "idle-name" {
		t.Fatalf("manifest: %+v, %v", man, err)
	}
}
