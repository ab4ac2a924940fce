package manager

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage/mem"
	"github.com/hangar-vm/hangar/vmhost"
)

// TestLifecycle: stop and start (a fresh boot), one operation at a time
// (a second one is ErrBusy), a guest that dies on its own puts the
// instance in Error, and delete removes every local file.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	a := newHost(t, "a", mem.New(), hostOpts{})
	in := a.create("cycle")
	id := in.ID
	_, before := writeToken(t, a.agentOf(id))

	st, err := a.m.Stop(ctx, id)
	if err != nil || st.State != StateStopped || st.RunDir != "" {
		t.Fatalf("stop: %+v, %v", st, err)
	}
	if _, err := os.Stat(in.RunDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("runtime dir after stop: %v", err)
	}
	for name, op := range map[string]func() error{
		"stop":    func() error { _, err := a.m.Stop(ctx, id); return err },
		"standby": func() error { _, err := a.m.Standby(ctx, id, StandbyOptions{}); return err },
		"restore": func() error { _, err := a.m.Restore(ctx, id); return err },
	} {
		if err := op(); !errors.Is(err, ErrInvalidState) {
			t.Errorf("%s of a stopped instance: %v, want ErrInvalidState", name, err)
		}
	}

	// Start boots for a while; meanwhile the slot is taken.
	started := make(chan error, 1)
	go func() {
		_, err := a.m.Start(ctx, id)
		started <- err
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		a.m.mu.Lock()
		op := a.m.insts[id].op
		a.m.mu.Unlock()
		if op == "start" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("start never took the operation slot")
		}
		time.Sleep(time.Millisecond)
	}
	if err := a.m.Delete(ctx, id); !errors.Is(err, ErrBusy) {
		t.Fatalf("delete during start: %v, want ErrBusy", err)
	}
	if err := <-started; err != nil {
		t.Fatalf("start: %v", err)
	}
	c := a.agentOf(id)
	now, err := c.State(ctx)
	if err != nil || now.BootID == before.BootID {
		t.Fatalf("after start: %+v, %v; want a fresh boot (old boot id %s)", now, err, before.BootID)
	}

	// The guest dies behind the manager's back.
	cur, _ := a.m.Get(ctx, id)
	pids := qemuUnder(cur.RunDir)
	if len(pids) != 1 {
		t.Fatalf("qemu processes for %s: %v", cur.RunDir, pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		cur, _ = a.m.Get(ctx, id)
		if cur.State == StateError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance after its guest was killed: %+v", cur)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(cur.Error, "SIGKILL") {
		t.Fatalf("error message %q does not say what happened", cur.Error)
	}
	if _, err := a.m.Standby(ctx, id, StandbyOptions{}); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("standby of a crashed instance: %v, want ErrInvalidState", err)
	}
	if err := a.m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.m.dirs.instanceDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("instance dir after delete: %v", err)
	}
	if _, err := a.m.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

// TestRecoverInterruptedRestore: the manager died after moving a standby
// snapshot into a runtime directory, before the guest resumed (vm.json is
// still there). Open puts the snapshot back and resumes its upload; no VM
// is involved. A second instance whose restore had resumed the guest
// (vm.json retired) and died is not given stale memory back.
func TestRecoverInterruptedRestore(t *testing.T) {
	ctx := context.Background()
	root := shortTemp(t)
	data := filepath.Join(root, "d")
	dirs := layout{root: data}
	if err := dirs.init(); err != nil {
		t.Fatal(err)
	}
	im := testImage(t)
	write := func(id, sid, run string, withInfo bool) *Instance {
		t.Helper()
		if err := os.MkdirAll(run, 0o700); err != nil {
			t.Fatal(err)
		}
		mem := make([]byte, 64<<20)
		copy(mem[1<<20:], "not all zero")
		os.WriteFile(filepath.Join(run, vmhost.MemoryFile), mem, 0o600)
		os.WriteFile(filepath.Join(run, vmhost.DeviceStateFile), []byte("device state"), 0o600)
		if withInfo {
			vmhost.WriteSnapshotInfo(run, vmhost.SnapshotInfo{Version: vmhost.SnapshotInfoVersion, Hypervisor: "qemu", MemoryMiB: 64, VCPUs: 1,
				Boot: im.Boot(), MemoryBytes: 64 << 20, DeviceStateBytes: 12, Created: time.Now()})
		}
		in := &Instance{ID: id, Name: id, State: StateStandby, MemoryMiB: 64, VCPUs: 1, ImageDigest: im.Digest, RunDir: run,
			Snapshot: &SnapshotRef{ID: sid, Kind: KindStandby, Storage: StorageLocal, Local: true, Compression: "zstd:1"}}
		if err := dirs.saveInstance(in); err != nil {
			t.Fatal(err)
		}
		return in
	}
	write("intact", "s-intact", filepath.Join(data, runDir, "11111111"), true)
	write("spent", "s-spent", filepath.Join(data, runDir, "22222222"), false)
	// A standby whose files became durable (the VMM quit) just before the
	// manager died: the metadata still says running, with the pending id.
	half := write("half", "s-half", dirs.snapshotDir("s-half"), true)
	half.State, half.RunDir, half.Snapshot, half.Pending = StateRunning, filepath.Join(data, runDir, "33333333"), nil, "s-half"
	half.PendingName = "half-standby" // the name the server gave it (StandbyOptions.Name)
	if err := dirs.saveInstance(half); err != nil {
		t.Fatal(err)
	}

	h := newHost(t, "a", mem.New(), hostOpts{root: root})
	in := h.waitStorage("intact", StorageCentral, time.Minute)
	if in.State != StateStandby || in.RunDir != "" {
		t.Fatalf("intact instance after recovery: %+v", in)
	}
	man, err := h.repo.Manifest(ctx, "s-intact")
	if err != nil {
		t.Fatalf("the put-back snapshot was not uploaded: %v", err)
	}
	var rec vmRecord
	if err := json.Unmarshal(man.VM, &rec); err != nil || rec.InstanceID != "intact" || rec.MemoryMiB != 64 {
		t.Fatalf("manifest vm record %s: %v", man.VM, err)
	}
	hs := h.waitStorage("half", StorageCentral, time.Minute)
	if hs.State != StateStandby || hs.Pending != "" || hs.PendingName != "" || hs.Snapshot.ID != "s-half" {
		t.Fatalf("interrupted standby after recovery: %+v %+v", hs, hs.Snapshot)
	}
	if man, err := h.repo.Manifest(ctx, "s-half"); err != nil || man.Labels[LabelSnapshotName] != "half-standby" || man.Labels[LabelRole] != RoleStandby {
		t.Fatalf("interrupted standby's manifest lost its name: %v, %v", man.Labels, err)
	}
	spent, err := h.m.Get(ctx, "spent")
	if err != nil || spent.State != StateError {
		t.Fatalf("spent instance after recovery: %+v, %v; want error", spent, err)
	}
	if _, err := os.Stat(filepath.Join(data, snapshotsDir, "s-spent")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale memory was put back as a snapshot: %v", err)
	}
}
