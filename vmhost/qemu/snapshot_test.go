package qemu_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// TestGuestSnapshotKeepsRunning: Snapshot pauses a real guest only while
// its device state and a private copy of its RAM are taken, then the guest
// runs on (same boot, counter advancing, new writes); the snapshot,
// restored elsewhere, holds the state at snapshot time, not the writes
// made after it. A second snapshot of the same guest works too.
func TestGuestSnapshotKeepsRunning(t *testing.T) {
	im := testImage(t)
	root := shortTemp(t)
	d := newDriver(t, root)
	ctx := context.Background()
	vm, c, _ := bootGuest(t, d, config(im, filepath.Join(root, "run1"), 128))

	token := randomToken(t)
	if err := c.WriteFile(ctx, "/run/token", []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snapDir := filepath.Join(root, "snap1")
	info, err := vm.Snapshot(ctx, snapDir)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	t.Logf("snapshot of a running 128 MiB guest: paused %v, device state %d bytes", info.PauseDuration, info.DeviceStateBytes)
	if vm.State() != vmhost.StateRunning {
		t.Fatalf("state after snapshot = %s, want running", vm.State())
	}
	if got, err := vmhost.ReadSnapshotInfo(snapDir); err != nil || got.MemoryMiB != 128 || got.Boot.ImageDigest != im.Digest {
		t.Fatalf("snapshot info %+v, %v", got, err)
	}
	if st, err := os.Stat(filepath.Join(snapDir, vmhost.MemoryFile)); err != nil || st.Size() != 128<<20 {
		t.Fatalf("snapshot memory file: %v, %v", st, err)
	}

	// The guest goes on, and its later writes do not reach the snapshot.
	later := randomToken(t)
	if err := c.WriteFile(ctx, "/run/token", []byte(later), 0o600); err != nil {
		t.Fatalf("write after snapshot: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := c.State(ctx)
		if err != nil || s.BootID != before.BootID {
			t.Fatalf("guest after snapshot: %+v, %v (boot %s before)", s, err, before.BootID)
		}
		if s.Counter > before.Counter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter stuck at %d after the snapshot", s.Counter)
		}
		time.Sleep(agent.CounterInterval)
	}
	if _, err := vm.Snapshot(ctx, snapDir); !errors.Is(err, vmhost.ErrInvalidState) {
		t.Errorf("snapshot into a directory holding one: %v, want ErrInvalidState", err)
	}
	if _, err := vm.Snapshot(ctx, filepath.Join(root, "snap2")); err != nil || vm.State() != vmhost.StateRunning {
		t.Fatalf("second snapshot: %v, state %s", err, vm.State())
	}

	// Restored elsewhere: the state at snapshot time.
	dirB := filepath.Join(root, "hostB")
	copySnapshot(t, snapDir, dirB)
	vm2, err := d.Restore(ctx, config(im, filepath.Join(root, "run2"), 128), vmhost.RestoreSource{Dir: dirB})
	if err != nil {
		t.Fatalf("restore of the snapshot: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c2, err := guest.WaitReady(rctx, vm2)
	if err != nil {
		t.Fatalf("agent of the restored copy: %v", err)
	}
	defer c2.Close()
	got, err := c2.ReadFile(ctx, "/run/token")
	if err != nil || string(got) != token {
		t.Fatalf("restored copy reads %q, %v; want the token at snapshot time %q", got, err, token)
	}
	s2, err := c2.State(ctx)
	if err != nil || s2.BootID != before.BootID || s2.Counter < before.Counter {
		t.Fatalf("restored copy state %+v, %v; before the snapshot %+v", s2, err, before)
	}
	// The original still runs with its own memory.
	if got, err := c.ReadFile(ctx, "/run/token"); err != nil || string(got) != later {
		t.Fatalf("original reads %q, %v; want %q", got, err, later)
	}
	vm2.Kill()
	vm.Kill()
}
