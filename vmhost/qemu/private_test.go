package qemu_test

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/internal/vmtest"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
	"github.com/hangar-vm/hangar/vmhost/qemu"
	"github.com/hangar-vm/hangar/vmhost/qemu/migstream"
)

// privateDriver is a TCG driver that maps guest RAM share=off. The shared
// driver of the same test checks, when it closes, that no QEMU is left.
func privateDriver(t testing.TB) *qemu.Driver {
	t.Helper()
	d, err := qemu.New(context.Background(), qemu.Settings{Binary: testenv.QEMUBinary(t), Accel: qemu.AccelTCG, PrivateMemory: true})
	if err != nil {
		t.Fatalf("qemu.New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// TestPrivateMemoryStandby parks a share=off guest through the migration
// stream converter and resumes it with the ordinary share=on restore:
// boot shared, standby; restore private (the memory file only read);
// write a second token; standby private (every RAM page through
// migstream); restore shared from the converted files.
func TestPrivateMemoryStandby(t *testing.T) {
	im := testImage(t)
	root := shortTemp(t)
	d := newDriver(t, root)
	dp := privateDriver(t)
	ctx := context.Background()
	const mem = 256

	vm, c, _ := bootGuest(t, d, config(im, filepath.Join(root, "run1"), mem))
	token1, token2 := randomToken(t), randomToken(t)
	if err := c.WriteFile(ctx, "/run/token1", []byte(token1), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap1 := filepath.Join(root, "snap1")
	if _, err := vm.Standby(ctx, snap1); err != nil {
		t.Fatalf("shared standby: %v", err)
	}
	base := fileSum(t, filepath.Join(snap1, vmhost.MemoryFile))

	// Private restore: the guest runs over snap1/memory without writing it.
	vm2, err := dp.Restore(ctx, config(im, filepath.Join(root, "run2"), mem), vmhost.RestoreSource{Dir: snap1})
	if err != nil {
		t.Fatalf("private restore: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Reconnect(rctx, vm2.Paths().AgentSocket); err != nil {
		t.Fatalf("agent after private restore: %v", err)
	}
	if got, err := c.ReadFile(ctx, "/run/token1"); err != nil || string(got) != token1 {
		t.Fatalf("token1 after private restore = %q, %v", got, err)
	}
	if err := c.WriteFile(ctx, "/run/token2", []byte(token2), 0o600); err != nil {
		t.Fatal(err)
	}
	// Dirty a few MiB more, so that the converter has real pages to move.
	if res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", "head -c 8388608 /dev/urandom > /run/noise"}, Timeout: 120}); err != nil || res.ExitCode != 0 {
		t.Fatalf("dirty guest memory: %+v, %v", res, err)
	}
	mid, err := c.State(ctx)
	if err != nil || mid.BootID != before.BootID || mid.Counter < before.Counter {
		t.Fatalf("state after private restore = %+v, %v; before standby %+v", mid, err, before)
	}
	// A snapshot of a private VM goes through the converter too, and the
	// guest goes on.
	snapx := filepath.Join(root, "snapx")
	if _, err := vm2.Snapshot(ctx, snapx); err != nil {
		t.Fatalf("snapshot of a private-memory VM: %v", err)
	}
	if vm2.State() != vmhost.StateRunning {
		t.Fatalf("after a private snapshot the vm is %s", vm2.State())
	}
	if got, err := c.ReadFile(ctx, "/run/token2"); err != nil || string(got) != token2 {
		t.Fatalf("token2 after a private snapshot = %q, %v", got, err)
	}

	// A standby cancelled while the RAM streams leaves no file, and the
	// guest running. The cancel lands once the converter has sized its
	// memory file, that is once QEMU's stream has begun.
	t.Run("cancelled", func(t *testing.T) {
		dir := filepath.Join(root, "cancelled")
		cctx, ccancel := context.WithCancel(ctx)
		defer ccancel()
		go func() {
			for cctx.Err() == nil {
				tmps, _ := filepath.Glob(filepath.Join(dir, "."+vmhost.MemoryFile+".tmp-*"))
				for _, p := range tmps {
					if st, err := os.Stat(p); err == nil && st.Size() > 0 {
						ccancel()
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
		if _, err := vm2.Standby(cctx, dir); err == nil {
			t.Fatal("standby cancelled while streaming: no error")
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("cancelled standby left %v", ents)
		}
		if vm2.State() != vmhost.StateRunning {
			t.Fatalf("after a cancelled standby the vm is %s", vm2.State())
		}
		if got, err := c.ReadFile(ctx, "/run/token2"); err != nil || string(got) != token2 {
			t.Fatalf("token2 after a cancelled standby = %q, %v", got, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	snap2 := filepath.Join(root, "snap2")
	info, err := vm2.Standby(ctx, snap2)
	if err != nil {
		t.Fatalf("private standby: %v", err)
	}
	if got := fileSum(t, filepath.Join(snap1, vmhost.MemoryFile)); got != base {
		t.Error("the private guest wrote into the memory file it was restored from")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(snap2, vmhost.MemoryFile), &st); err != nil || st.Size != mem<<20 {
		t.Fatalf("converted memory file: size %d, %v", st.Size, err)
	}
	t.Logf("private standby: paused-to-durable %v, device state %d bytes, memory file %d MiB allocated of %d",
		info.PauseDuration, info.DeviceStateBytes, st.Blocks*512>>20, mem)
	if st.Blocks*512 >= mem<<20 {
		t.Errorf("converted memory file is not sparse: %d bytes allocated", st.Blocks*512)
	}
	// The device state holds no page of ram0, as a shared standby's would.
	dev, err := os.Open(filepath.Join(snap2, vmhost.DeviceStateFile))
	if err != nil {
		t.Fatal(err)
	}
	scratch, err := os.Create(filepath.Join(root, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := migstream.Convert(dev, io.Discard, scratch, "ram0")
	dev.Close()
	scratch.Close()
	if err != nil || cs.Pages != 0 || cs.ZeroPages != 0 || cs.InBytes != info.DeviceStateBytes {
		t.Fatalf("converted device state re-read: %+v, %v", cs, err)
	}

	// The ordinary shared restore resumes the converted snapshot.
	vm3, err := d.Restore(ctx, config(im, filepath.Join(root, "run3"), mem), vmhost.RestoreSource{Dir: snap2})
	if err != nil {
		t.Fatalf("shared restore of the converted snapshot: %v", err)
	}
	if err := c.Reconnect(rctx, vm3.Paths().AgentSocket); err != nil {
		t.Fatalf("agent after shared restore: %v", err)
	}
	for path, want := range map[string]string{"/run/token1": token1, "/run/token2": token2} {
		if got, err := c.ReadFile(ctx, path); err != nil || string(got) != want {
			t.Errorf("%s after shared restore = %q, %v; want %q", path, got, err, want)
		}
	}
	after, err := c.State(ctx)
	if err != nil || after.BootID != before.BootID || after.Counter < mid.Counter {
		t.Fatalf("state after shared restore = %+v, %v; before %+v", after, err, mid)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := vmtest.WaitCounterPast(waitCtx, c, after.Counter); err != nil {
		t.Fatalf("after restore: %v", err)
	}
	if res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", "sha256sum /run/noise >/dev/null"}, Timeout: 120}); err != nil || res.ExitCode != 0 {
		t.Fatalf("guest after shared restore: %+v, %v", res, err)
	}
	vm3.Kill()

	// The private snapshot taken on the way restores too, with both tokens.
	vm4, err := d.Restore(ctx, config(im, filepath.Join(root, "run4"), mem), vmhost.RestoreSource{Dir: snapx})
	if err != nil {
		t.Fatalf("shared restore of the private snapshot: %v", err)
	}
	if err := c.Reconnect(rctx, vm4.Paths().AgentSocket); err != nil {
		t.Fatalf("agent after restoring the private snapshot: %v", err)
	}
	for path, want := range map[string]string{"/run/token1": token1, "/run/token2": token2} {
		if got, err := c.ReadFile(ctx, path); err != nil || string(got) != want {
			t.Errorf("%s after restoring the private snapshot = %q, %v; want %q", path, got, err, want)
		}
	}
	c.Close()
	vm4.Kill()
}

// TestPrivateRestoreAttach: privacy is a fact of each VM, not only of the
// host. A shared driver restores one VM private (RestoreSource), hands it
// over to another shared driver (a restarted daemon), and the attached VM
// still parks through the converter: its memory file stays as it was and
// the standby writes a new one that a shared restore resumes.
func TestPrivateRestoreAttach(t *testing.T) {
	im := testImage(t)
	root := shortTemp(t)
	d1 := newDriver(t, root)
	ctx := context.Background()
	const mem = 128

	vm, c, _ := bootGuest(t, d1, config(im, filepath.Join(root, "run1"), mem))
	token := randomToken(t)
	if err := c.WriteFile(ctx, "/run/token", []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	snap1 := filepath.Join(root, "snap1")
	if _, err := vm.Standby(ctx, snap1); err != nil {
		t.Fatalf("shared standby: %v", err)
	}
	base := fileSum(t, filepath.Join(snap1, vmhost.MemoryFile))
	run2 := filepath.Join(root, "run2")
	vm2, err := d1.Restore(ctx, config(im, run2, mem), vmhost.RestoreSource{Dir: snap1, PrivateMemory: true})
	if err != nil {
		t.Fatalf("private restore on a shared driver: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Reconnect(rctx, vm2.Paths().AgentSocket); err != nil {
		t.Fatalf("agent after private restore: %v", err)
	}
	// The snapshot was only read: it is still a whole snapshot.
	if _, err := vmhost.ReadSnapshotInfo(snap1); err != nil {
		t.Fatalf("private restore consumed its snapshot: %v", err)
	}
	vm2.(*qemu.VM).Release()

	d2 := newDriver(t, root)
	vm3, err := d2.Attach(rctx, run2)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	snap2 := filepath.Join(root, "snap2")
	if _, err := vm3.Standby(ctx, snap2); err != nil {
		t.Fatalf("standby of the attached private vm: %v", err)
	}
	if got := fileSum(t, filepath.Join(snap1, vmhost.MemoryFile)); got != base {
		t.Error("the private guest wrote into the memory file it was restored from")
	}
	vm4, err := d2.Restore(ctx, config(im, filepath.Join(root, "run3"), mem), vmhost.RestoreSource{Dir: snap2})
	if err != nil {
		t.Fatalf("shared restore of the converted snapshot: %v", err)
	}
	if err := c.Reconnect(rctx, vm4.Paths().AgentSocket); err != nil {
		t.Fatalf("agent after shared restore: %v", err)
	}
	if got, err := c.ReadFile(ctx, "/run/token"); err != nil || string(got) != token {
		t.Fatalf("token after attach, private standby, shared restore = %q, %v", got, err)
	}
	c.Close()
	vm4.Kill()
}
