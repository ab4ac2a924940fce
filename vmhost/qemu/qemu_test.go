package qemu_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/internal/vmtest"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// bootTimeout is generous: guests run under TCG on a shared machine.
const bootTimeout = 3 * time.Minute

// The real-guest helpers are shared with the other vmhost packages
// (internal/vmtest); these names keep this package's tests short.
var (
	testImage = vmtest.Image
	shortTemp = vmtest.ShortTemp
)

// newDriver returns a TCG driver that is closed, and checked to have left
// no QEMU behind, when the test ends.
func newDriver(t testing.TB, root string) *qemu.Driver { return vmtest.Driver(t, root, nil) }

func config(im guest.Image, dir string, memMiB int) vmhost.Config {
	return vmhost.Config{MemoryMiB: memMiB, VCPUs: 1, Boot: im.Boot(), Dir: dir}
}

func bootGuest(t testing.TB, d *qemu.Driver, cfg vmhost.Config) (vmhost.VM, *agent.Client, time.Duration) {
	t.Helper()
	start := time.Now()
	vm, err := d.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	c, err := guest.WaitReady(ctx, vm)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return vm, c, time.Since(start)
}

// copySnapshot copies a snapshot directory the way another host would
// receive it: fresh, sparse files.
func copySnapshot(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{vmhost.MemoryFile, vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		out, err := exec.Command("cp", "--sparse=always", filepath.Join(from, name), filepath.Join(to, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("cp %s: %v: %s", name, err, out)
		}
	}
}

func randomToken(t testing.TB) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// TestGuestStandbyRestore is the main integration test: one real guest
// boots, is parked on "host A", its files travel to "host B", and it is
// resumed there with its RAM intact.
func TestGuestStandbyRestore(t *testing.T) {
	im := testImage(t)
	root := shortTemp(t)
	d := newDriver(t, root)
	ctx := context.Background()

	vm, c, boot := bootGuest(t, d, config(im, filepath.Join(root, "run1"), 256))
	t.Logf("boot to agent ready (TCG, 256 MiB): %v", boot)
	if vm.State() != vmhost.StateRunning {
		t.Fatalf("state after boot = %s, want running", vm.State())
	}

	token := randomToken(t)
	var before agent.State
	t.Run("agent", func(t *testing.T) {
		if p, err := c.Ping(ctx); err != nil || p.Version != agent.Version {
			t.Fatalf("ping = %+v, %v", p, err)
		}
		res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"echo", "hello", "guest"}})
		if err != nil || res.ExitCode != 0 || string(res.Stdout) != "hello guest\n" {
			t.Fatalf("exec echo = %+v, %v", res, err)
		}
		res, err = c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", "echo oops >&2; exit 3"}})
		if err != nil || res.ExitCode != 3 || string(res.Stderr) != "oops\n" {
			t.Fatalf("exec exit 3 = %+v, %v", res, err)
		}
		res, err = c.Exec(ctx, agent.ExecRequest{Argv: []string{"sleep", "30"}, Timeout: 0.5})
		if err != nil || !res.TimedOut || res.ExitCode != -1 {
			t.Fatalf("exec with timeout = %+v, %v", res, err)
		}
		if _, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"/no/such/program"}}); err == nil {
			t.Fatal("exec of a missing program: no error")
		}
		// /run is tmpfs: the token exists only in guest RAM.
		out, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", "grep ' /run ' /proc/mounts"}})
		if err != nil || !strings.Contains(string(out.Stdout), "tmpfs") {
			t.Fatalf("/run is not tmpfs: %+v, %v", out, err)
		}
		if err := c.WriteFile(ctx, "/run/token", []byte(token), 0o600); err != nil {
			t.Fatalf("write_file: %v", err)
		}
		got, err := c.ReadFile(ctx, "/run/token")
		if err != nil || string(got) != token {
			t.Fatalf("read_file = %q, %v; want %q", got, err, token)
		}
		var ae *agent.Error
		if _, err := c.ReadFile(ctx, "/run/missing"); !errors.As(err, &ae) || ae.Code != agent.CodeNotFound {
			t.Fatalf("read of a missing file: %v, want code %s", err, agent.CodeNotFound)
		}
		// A large file both ways: the serial line carries long lines intact.
		big := make([]byte, 64<<10)
		rand.Read(big)
		t0 := time.Now()
		if err := c.WriteFile(ctx, "/tmp/big", big, 0); err != nil {
			t.Fatalf("write 64 KiB: %v", err)
		}
		t1 := time.Now()
		back, err := c.ReadFile(ctx, "/tmp/big")
		if err != nil || !bytes.Equal(back, big) {
			t.Fatalf("read 64 KiB back: %d bytes, %v", len(back), err)
		}
		t2 := time.Now()
		if res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"head", "-c", "262144", "/dev/zero"}}); err != nil || len(res.Stdout) != 256<<10 {
			t.Fatalf("exec with 256 KiB of output: %d bytes, %v", len(res.Stdout), err)
		}
		t.Logf("serial line: 64 KiB host->guest in %v, 64 KiB guest->host in %v, 256 KiB of exec output in %v", t1.Sub(t0), t2.Sub(t1), time.Since(t2))
		s1, err := c.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * agent.CounterInterval)
		before, err = c.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if before.BootID == "" || before.BootID != s1.BootID || before.Counter <= s1.Counter {
			t.Fatalf("state did not advance: %+v then %+v", s1, before)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// A standby whose ctx has ended does nothing: the guest runs on.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := vm.Standby(cctx, filepath.Join(root, "cancelled")); !errors.Is(err, context.Canceled) {
		t.Fatalf("standby with a cancelled ctx: %v", err)
	}
	if s, err := c.State(ctx); err != nil || vm.State() != vmhost.StateRunning || s.BootID != before.BootID {
		t.Fatalf("after a cancelled standby: vm %s, agent %+v, %v", vm.State(), s, err)
	}
	if _, err := os.Stat(filepath.Join(root, "cancelled", vmhost.DeviceStateFile)); err == nil {
		t.Fatal("a cancelled standby left a device-state file")
	}

	dirA := filepath.Join(root, "hostA")
	start := time.Now()
	info, err := vm.Standby(ctx, dirA)
	standby := time.Since(start)
	if err != nil {
		t.Fatalf("standby: %v", err)
	}
	t.Logf("standby (256 MiB, request to durable+stopped): %v, paused-to-durable %v, device state %d bytes", standby, info.PauseDuration, info.DeviceStateBytes)
	if vm.State() != vmhost.StateStopped {
		t.Errorf("state after standby = %s, want stopped", vm.State())
	}
	if st, _ := vm.Wait(ctx); !st.Requested {
		t.Errorf("exit after standby not marked requested: %+v", st)
	}
	if _, err := c.Ping(ctx); !errors.Is(err, agent.ErrDisconnected) {
		t.Errorf("ping after standby: %v, want ErrDisconnected", err)
	}
	if got, err := vmhost.ReadSnapshotInfo(dirA); err != nil || got.MemoryMiB != 256 || got.Boot.ImageDigest != im.Digest {
		t.Fatalf("snapshot info = %+v, %v", got, err)
	}
	if st, err := os.Stat(filepath.Join(dirA, vmhost.MemoryFile)); err != nil || st.Size() != 256<<20 {
		t.Fatalf("memory file: %v, %v", st, err)
	}
	if _, err := vm.Standby(ctx, filepath.Join(root, "again")); !errors.Is(err, vmhost.ErrInvalidState) {
		t.Errorf("standby of a stopped VM: %v, want ErrInvalidState", err)
	}

	// "Host B": its own copy of the files, its own runtime directory.
	dirB := filepath.Join(root, "hostB")
	copySnapshot(t, dirA, dirB)
	start = time.Now()
	vm2, err := d.Restore(ctx, config(im, filepath.Join(root, "run2"), 256), vmhost.RestoreSource{Dir: dirB})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	resumed := time.Since(start)
	if _, err := vmhost.ReadSnapshotInfo(dirB); !errors.Is(err, vmhost.ErrSnapshotMismatch) {
		t.Errorf("hostB still looks like a snapshot after its memory went live: %v", err)
	}
	if _, err := vmhost.ReadSnapshotInfo(dirA); err != nil {
		t.Errorf("hostA, restored from a copy, is no longer a snapshot: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Reconnect(rctx, vm2.Paths().AgentSocket); err != nil {
		t.Fatalf("agent after restore: %v", err)
	}
	t.Logf("restore: running after %v, agent answering after %v", resumed, time.Since(start))

	got, err := c.ReadFile(ctx, "/run/token")
	if err != nil || string(got) != token {
		t.Fatalf("token after restore = %q, %v; want %q", got, err, token)
	}
	after, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.BootID != before.BootID {
		t.Errorf("boot id changed: %s -> %s", before.BootID, after.BootID)
	}
	if after.Counter < before.Counter {
		t.Errorf("counter went back: %d -> %d", before.Counter, after.Counter)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := vmtest.WaitCounterPast(waitCtx, c, after.Counter); err != nil {
		t.Fatalf("after restore: %v", err)
	}

	// Second generation: the restored VM runs from hostB/memory; standby
	// into another directory on the same filesystem moves the file there,
	// and that snapshot restores too.
	t.Run("second standby", func(t *testing.T) {
		dirC := filepath.Join(root, "hostC")
		info, err := vm2.Standby(ctx, dirC)
		if err != nil {
			t.Fatalf("standby of the restored VM: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dirB, vmhost.MemoryFile)); !os.IsNotExist(err) {
			t.Errorf("memory file still in hostB: %v", err)
		}
		// The memory file may live apart from the rest of the snapshot.
		mem := filepath.Join(root, "memory-elsewhere")
		if err := os.Rename(filepath.Join(dirC, vmhost.MemoryFile), mem); err != nil {
			t.Fatal(err)
		}
		vm3, err := d.Restore(ctx, config(im, filepath.Join(root, "run3"), 256), vmhost.RestoreSource{Dir: dirC, MemoryPath: mem})
		if err != nil {
			t.Fatalf("restore of the second snapshot: %v", err)
		}
		if err := c.Reconnect(rctx, vm3.Paths().AgentSocket); err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadFile(ctx, "/run/token")
		s3, serr := c.State(ctx)
		if err != nil || string(got) != token || serr != nil || s3.BootID != before.BootID || s3.Counter < after.Counter {
			t.Fatalf("after second restore: token %q (%v), state %+v (%v); device state %d bytes", got, err, s3, serr, info.DeviceStateBytes)
		}
		vm2 = vm3
	})
	if t.Failed() {
		t.FailNow()
	}

	// A QEMU killed behind the driver's back is a crash, noticed at once.
	t.Run("crash", func(t *testing.T) {
		if err := syscall.Kill(vm2.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := vm2.Wait(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if vm2.State() != vmhost.StateCrashed || st.Requested || st.Signal != "SIGKILL" {
			t.Fatalf("after kill: state %s, exit %+v", vm2.State(), st)
		}
		if _, err := vm2.Standby(ctx, filepath.Join(root, "crashed")); !errors.Is(err, vmhost.ErrInvalidState) {
			t.Fatalf("standby of a crashed VM: %v", err)
		}
	})
}

// TestAttach hands a running guest from one driver to another, as a
// restarted daemon would take it over.
func TestAttach(t *testing.T) {
	im := testImage(t)
	root := shortTemp(t)
	d1 := newDriver(t, root)
	dir := filepath.Join(root, "vm")
	vm, c, _ := bootGuest(t, d1, config(im, dir, 128))
	s1, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pid := vm.PID()

	d2 := newDriver(t, root)
	if _, err := d2.Attach(context.Background(), filepath.Join(root, "nothing")); !errors.Is(err, vmhost.ErrNotFound) {
		t.Fatalf("attach to an empty dir: %v, want ErrNotFound", err)
	}
	vm.(*qemu.VM).Release()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vm2, err := d2.Attach(ctx, dir)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if vm2.PID() != pid || vm2.State() != vmhost.StateRunning || vm2.Config().MemoryMiB != 128 {
		t.Fatalf("attached vm: pid %d (want %d), state %s, config %+v", vm2.PID(), pid, vm2.State(), vm2.Config())
	}
	if _, err := d2.Start(ctx, config(im, dir, 128)); !errors.Is(err, vmhost.ErrInvalidState) {
		t.Fatalf("second start in a live dir: %v, want ErrInvalidState", err)
	}
	s2, err := c.State(ctx)
	if err != nil || s2.BootID != s1.BootID {
		t.Fatalf("guest after attach: %+v, %v (before %+v)", s2, err, s1)
	}
	if err := vm2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := vm2.Wait(ctx)
	if err != nil || !st.Requested || vm2.State() != vmhost.StateStopped {
		t.Fatalf("after stop: %+v, %v, state %s", st, err, vm2.State())
	}
}

// TestNeverBoots: a kernel that is garbage starts a QEMU whose guest never
// answers; waiting for it ends with ErrNotReady and the console, and no
// QEMU survives.
func TestNeverBoots(t *testing.T) {
	im := testImage(t)
	root := shortTemp(t)
	d := newDriver(t, root)
	bogus := filepath.Join(root, "bogus-kernel")
	junk := make([]byte, 1<<20)
	rand.Read(junk)
	if err := os.WriteFile(bogus, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config(im, filepath.Join(root, "vm"), 128)
	cfg.Boot.Kernel = bogus
	vm, err := d.Start(context.Background(), cfg)
	if err != nil {
		// QEMU refusing the kernel outright is a fine, clear failure too.
		t.Logf("start refused: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = guest.WaitReady(ctx, vm)
	if !errors.Is(err, guest.ErrNotReady) {
		t.Fatalf("wait for a guest that never boots: %v, want ErrNotReady", err)
	}
	t.Logf("error: %v", err)
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRefused: snapshots that do not fit are refused before any
// process starts.
func TestRestoreRefused(t *testing.T) {
	im := testImage(t)
	root := shortTemp(t)
	d := newDriver(t, root)
	snap := filepath.Join(root, "snap")
	os.MkdirAll(snap, 0o700)
	info := vmhost.SnapshotInfo{Version: vmhost.SnapshotInfoVersion, Hypervisor: qemu.Name, MemoryMiB: 256, VCPUs: 1, Boot: im.Boot()}
	if err := vmhost.WriteSnapshotInfo(snap, info); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snap, vmhost.DeviceStateFile), []byte("QEVM"), 0o600); err != nil {
		t.Fatal(err)
	}
	mem := filepath.Join(snap, vmhost.MemoryFile)
	if err := os.WriteFile(mem, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(mem, 128<<20)

	other := im.Boot()
	other.ImageDigest = "sha256:other"
	for _, tc := range []struct {
		name string
		cfg  vmhost.Config
		want string
	}{
		{"memory file smaller than memory_mib", config(im, filepath.Join(root, "r1"), 256), "memory file is 134217728 bytes"},
		{"memory_mib differs from snapshot", config(im, filepath.Join(root, "r2"), 128), "snapshot has memory_mib 256"},
		{"other guest image", vmhost.Config{MemoryMiB: 256, VCPUs: 1, Boot: other, Dir: filepath.Join(root, "r3")}, "needs guest image"},
		{"vcpus differ", vmhost.Config{MemoryMiB: 256, VCPUs: 2, Boot: im.Boot(), Dir: filepath.Join(root, "r4")}, "config asks 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Restore(context.Background(), tc.cfg, vmhost.RestoreSource{Dir: snap})
			if !errors.Is(err, vmhost.ErrSnapshotMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v; want ErrSnapshotMismatch mentioning %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(tc.cfg.Dir, "qemu.pid")); err == nil {
				t.Fatal("a QEMU was started")
			}
		})
	}
	os.Truncate(mem, 256<<20)
	kvmInfo := info
	kvmInfo.Accel = qemu.AccelKVM
	kvmSnap := filepath.Join(root, "kvmsnap")
	os.MkdirAll(kvmSnap, 0o700)
	vmhost.WriteSnapshotInfo(kvmSnap, kvmInfo)
	os.WriteFile(filepath.Join(kvmSnap, vmhost.DeviceStateFile), []byte("QEVM"), 0o600)
	os.WriteFile(filepath.Join(kvmSnap, vmhost.MemoryFile), nil, 0o600)
	os.Truncate(filepath.Join(kvmSnap, vmhost.MemoryFile), 256<<20)
	if _, err := d.Restore(context.Background(), config(im, filepath.Join(root, "r7"), 256), vmhost.RestoreSource{Dir: kvmSnap}); !errors.Is(err, vmhost.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "accel") {
		t.Fatalf("restore of a kvm snapshot under tcg: %v", err)
	}
	if _, err := d.Restore(context.Background(), config(im, filepath.Join(root, "r5"), 256), vmhost.RestoreSource{Dir: filepath.Join(root, "empty")}); !errors.Is(err, vmhost.ErrSnapshotMismatch) {
		t.Fatalf("restore from a dir without a snapshot: %v", err)
	}

	// A device state QEMU cannot load: QEMU starts, fails the incoming
	// migration and exits; Restore reports it and leaves nothing running.
	_, err := d.Restore(context.Background(), config(im, filepath.Join(root, "r6"), 256), vmhost.RestoreSource{Dir: snap})
	if err == nil {
		t.Fatal("restore of a garbage device state succeeded")
	}
	t.Logf("garbage device state: %v", err)
}

func TestConfigValidate(t *testing.T) {
	long := "/" + strings.Repeat("x", 100)
	for _, tc := range []struct {
		name string
		cfg  vmhost.Config
		want []string
	}{
		{"ok", vmhost.Config{MemoryMiB: 256, VCPUs: 1, Boot: vmhost.Boot{Kernel: "/k"}, Dir: "/d"}, nil},
		{"everything wrong", vmhost.Config{MemoryMiB: 1, VCPUs: 0, Dir: "rel"}, []string{"memory_mib 1", "vcpus 0", "boot.kernel is required", "not absolute"}},
		{"socket path too long", vmhost.Config{MemoryMiB: 256, VCPUs: 1, Boot: vmhost.Boot{Kernel: "/k"}, Dir: long}, []string{"too long"}},
		{"comma in path", vmhost.Config{MemoryMiB: 256, VCPUs: 1, Boot: vmhost.Boot{Kernel: "/k,x"}, Dir: "/d"}, []string{"comma"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, vmhost.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := qemu.New(context.Background(), qemu.Settings{Accel: "hvf"}); !errors.Is(err, vmhost.ErrInvalidConfig) {
		t.Errorf("accel hvf: %v", err)
	}
}

const ownerHelperEnv = "HANGAR_QEMU_OWNER_HELPER"

// TestOwnerDeath kills (SIGKILL) a process that started a QEMU: by default
// its QEMU dies with it; with KeepRunningOnOwnerExit it survives and a new
// owner attaches to it, as a daemon restarted after kill -9 would.
func TestOwnerDeath(t *testing.T) {
	if dir := os.Getenv(ownerHelperEnv); dir != "" {
		ownerHelper(t, dir)
		return
	}
	testImage(t) // built once here, not by two helpers at a time
	root := shortTemp(t)
	d := newDriver(t, root)
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			dir := filepath.Join(root, fmt.Sprintf("vm-%v", keep))
			cmd := exec.Command(os.Args[0], "-test.run=^TestOwnerDeath$", "-test.v")
			cmd.Env = append(os.Environ(), ownerHelperEnv+"="+dir, fmt.Sprintf("HANGAR_QEMU_OWNER_KEEP=%v", keep))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := 0
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if _, err := fmt.Sscanf(sc.Text(), "qemu pid %d", &pid); err == nil {
					break
				}
			}
			if pid == 0 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("helper did not start a qemu")
			}
			cmd.Process.Kill()
			cmd.Wait()

			if !keep {
				deadline := time.Now().Add(30 * time.Second)
				for alive(pid) {
					if time.Now().After(deadline) {
						t.Fatalf("qemu %d outlived its owner", pid)
					}
					time.Sleep(20 * time.Millisecond)
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			vm, err := d.Attach(ctx, dir)
			if err != nil {
				t.Fatalf("attach after the owner died: %v", err)
			}
			if vm.PID() != pid || vm.State() != vmhost.StateRunning {
				t.Fatalf("attached pid %d state %s, want %d running", vm.PID(), vm.State(), pid)
			}
			if err := vm.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := vm.Wait(ctx); err != nil || st.Known || !st.Requested {
				t.Fatalf("exit of an attached VM: %+v, %v", st, err)
			}
			if alive(pid) {
				t.Fatalf("qemu %d still alive after Stop", pid)
			}
		})
	}
}

func ownerHelper(t *testing.T, dir string) {
	im := testImage(t)
	d, err := qemu.New(context.Background(), qemu.Settings{
		Binary: testenv.QEMUBinary(t), Accel: qemu.AccelTCG,
		KeepRunningOnOwnerExit: os.Getenv("HANGAR_QEMU_OWNER_KEEP") == "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := d.Start(context.Background(), config(im, dir, 128))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("qemu pid %d\n", vm.PID())
	os.Stdout.Sync()
	time.Sleep(time.Minute) // until the parent kills us
	d.Close()
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return !(i > 0 && len(stat) > i+2 && stat[i+2] == 'Z')
}
