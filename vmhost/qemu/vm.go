package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/vmhost"
)

// VM is one QEMU process, started, restored or attached by a Driver.
type VM struct {
	d        *Driver
	m        machineArgs
	paths    vmhost.Paths
	pid      int
	attached bool // not our child: no exit status, signals through pidfd
	qmp      *qmpClient

	opMu sync.Mutex // serialises Standby and Stop

	mu        sync.Mutex
	state     vmhost.State
	requested bool // the exit was asked for
	exit      vmhost.ExitStatus
	pidfd     *os.File // attached VMs only
	done      chan struct{}
	unwatch   chan struct{} // stops an attached VM's watcher without an exit
}

var _ vmhost.VM = (*VM)(nil)

func newVM(d *Driver, m machineArgs, pid int) *VM {
	return &VM{
		d: d, m: m, paths: paths(m.Config), pid: pid,
		state:   vmhost.StateStarting,
		done:    make(chan struct{}),
		unwatch: make(chan struct{}),
	}
}

// Config implements vmhost.VM.
func (v *VM) Config() vmhost.Config { return v.m.Config }

// Paths implements vmhost.VM.
func (v *VM) Paths() vmhost.Paths { return v.paths }

// PID implements vmhost.VM.
func (v *VM) PID() int {
	select {
	case <-v.done:
		return 0
	default:
		return v.pid
	}
}

// State implements vmhost.VM.
func (v *VM) State() vmhost.State {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state
}

func (v *VM) setState(s vmhost.State) {
	v.mu.Lock()
	if !v.state.Exited() {
		v.state = s
	}
	v.mu.Unlock()
}

// Done implements vmhost.VM.
func (v *VM) Done() <-chan struct{} { return v.done }

// Wait implements vmhost.VM.
func (v *VM) Wait(ctx context.Context) (vmhost.ExitStatus, error) {
	select {
	case <-v.done:
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.exit, nil
	case <-ctx.Done():
		return vmhost.ExitStatus{}, fmt.Errorf("wait for vm %s: %w", v.m.Config.Name, context.Cause(ctx))
	}
}

// reap waits for our child and records how it ended.
func (v *VM) reap(cmd *exec.Cmd) {
	err := cmd.Wait()
	st := vmhost.ExitStatus{Code: -1, Known: true}
	var ee *exec.ExitError
	switch {
	case err == nil:
		st.Code = 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Signal = unix.SignalName(ws.Signal())
		} else {
			st.Code = ee.ExitCode()
		}
	}
	v.finish(st)
}

// watch notices the exit of an attached process, which only its real
// parent can reap: a pidfd becomes readable when the process exits.
func (v *VM) watch(pidfd *os.File) {
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		select {
		case <-v.unwatch:
			v.mu.Lock()
			v.pidfd = nil
			v.mu.Unlock()
			pidfd.Close()
			return
		default:
		}
		n, err := unix.Poll(fds, 500)
		if err == nil && n > 0 {
			break
		}
		if err != nil && err != unix.EINTR {
			break
		}
	}
	v.finish(vmhost.ExitStatus{Code: -1})
}

func (v *VM) finish(st vmhost.ExitStatus) {
	v.mu.Lock()
	st.Requested = v.requested
	v.exit = st
	if st.Requested {
		v.state = vmhost.StateStopped
	} else {
		v.state = vmhost.StateCrashed
	}
	if v.pidfd != nil {
		v.pidfd.Close()
		v.pidfd = nil
	}
	close(v.done)
	qmp := v.qmp
	v.mu.Unlock()
	if qmp != nil {
		qmp.Close()
	}
	v.d.forget(v)
	lvl := v.d.log.Info
	if !st.Requested {
		lvl = v.d.log.Warn
	}
	lvl("vm exited", "vm", v.m.Config.Name, "pid", v.pid, "status", st.String(), "requested", st.Requested)
}

// Release lets go of the VM without stopping it, so that another process
// can Attach to it (a daemon handing over before it exits). The VM leaves
// this driver's care: Close no longer kills it, and the methods of this
// value must not be used any more. Unless Settings.KeepRunningOnOwnerExit
// is set, the process still dies with its owner.
func (v *VM) Release() {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	if v.attached {
		v.detach()
		return
	}
	if v.qmp != nil {
		v.qmp.Close() // QEMU serves one QMP client at a time: make room
	}
	v.d.forget(v)
}

// detach lets go of an attached process without touching it.
func (v *VM) detach() {
	close(v.unwatch) // the watcher closes the pidfd
	if v.qmp != nil {
		v.qmp.Close()
	}
	v.d.forget(v)
}

// connect takes the QMP socket, giving up when the process exits.
func (v *VM) connect(ctx context.Context) error {
	c, err := dialQMP(ctx, filepath.Join(v.paths.Dir, qmpSocket), v.done, nil)
	if err != nil {
		return v.exitErr(err)
	}
	v.mu.Lock()
	v.qmp = c
	v.mu.Unlock()
	return nil
}

// exitErr turns an error caused by QEMU's exit into ErrVMExited with the
// exit status, waiting briefly for the reaper when the socket closed first.
func (v *VM) exitErr(err error) error {
	if errors.Is(err, errQMPClosed) {
		select {
		case <-v.done:
		case <-time.After(2 * time.Second):
		}
	}
	select {
	case <-v.done:
		v.mu.Lock()
		st := v.exit
		v.mu.Unlock()
		return fmt.Errorf("%w (%s): %w", vmhost.ErrVMExited, st, err)
	default:
		return err
	}
}

func (v *VM) execute(ctx context.Context, cmd string, args, result any) error {
	if err := v.qmp.execute(ctx, cmd, args, result); err != nil {
		return v.exitErr(err)
	}
	return nil
}

// incoming loads the device state into a QEMU started with -incoming defer.
func (v *VM) incoming(ctx context.Context, devState string) error {
	f, err := os.Open(devState)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	if err := v.qmp.executeFD(ctx, "getfd", map[string]string{"fdname": "hangar-incoming"}, nil, int(f.Fd())); err != nil {
		return v.exitErr(err)
	}
	if err := v.execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:hangar-incoming"}, nil); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := v.execute(ctx, "query-status", nil, &st); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if st.Status != "inmigrate" {
			var mi migrateInfo
			if err := v.execute(ctx, "query-migrate", nil, &mi); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			if mi.Status != "" && mi.Status != "completed" {
				return fmt.Errorf("restore: incoming migration %s: %s (vm %s)", mi.Status, mi.ErrorDesc, st.Status)
			}
			return nil
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return fmt.Errorf("restore: waiting for device state: %w", err)
		}
	}
}

type migrateInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Standby implements vmhost.VM.
func (v *VM) Standby(ctx context.Context, dir string) (vmhost.SnapshotInfo, error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	var info vmhost.SnapshotInfo
	prev := v.State()
	if prev != vmhost.StateRunning && prev != vmhost.StatePaused {
		return info, fmt.Errorf("standby vm %s: %w: %s", v.m.Config.Name, vmhost.ErrInvalidState, prev)
	}
	cfg := v.m.Config
	memDst := filepath.Join(dir, vmhost.MemoryFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return info, fmt.Errorf("standby: %w", err)
	}
	if memDst != v.paths.Memory {
		// Private memory writes a new file; shared memory renames its own.
		if err := sameFilesystem(dir, v.paths.Memory); err != nil && !v.m.PrivateMemory {
			return info, fmt.Errorf("standby: %w: %w", vmhost.ErrInvalidConfig, err)
		}
		if _, err := os.Lstat(memDst); err == nil {
			return info, fmt.Errorf("standby: %w: %s already exists", vmhost.ErrInvalidState, memDst)
		}
	}
	log := v.d.log.With("vm", cfg.Name, "dir", dir)

	start := time.Now()
	var devBytes int64
	err := v.execute(ctx, "stop", nil, nil)
	if err == nil {
		v.setState(vmhost.StatePaused)
		if v.m.PrivateMemory {
			devBytes, err = v.saveConverted(ctx, dir)
		} else {
			devBytes, err = v.saveDeviceState(ctx, dir)
		}
	}
	if err == nil && !v.m.PrivateMemory {
		err = syncFile(v.paths.Memory)
	}
	if err != nil {
		// Nothing is lost yet: the guest's RAM is in the file and QEMU holds
		// the rest. Resume it as it was.
		if prev == vmhost.StateRunning && !v.State().Exited() {
			if cerr := v.execute(context.WithoutCancel(ctx), "cont", nil, nil); cerr != nil {
				err = errors.Join(err, fmt.Errorf("resume after failed standby: %w", cerr))
			} else {
				v.setState(vmhost.StateRunning)
			}
		}
		log.Warn("standby failed", "err", err)
		return info, fmt.Errorf("standby: %w", err)
	}
	durable := time.Since(start)

	// The files are durable: from here on the VM is parked whatever happens
	// to the process.
	v.quit(ctx)
	if memDst != v.paths.Memory && !v.m.PrivateMemory {
		if err := os.Rename(v.paths.Memory, memDst); err != nil {
			return info, fmt.Errorf("standby: move memory file: %w", err)
		}
		if err := vmhost.SyncDir(filepath.Dir(v.paths.Memory)); err != nil {
			return info, fmt.Errorf("standby: %w", err)
		}
	}
	if err := vmhost.SyncDir(dir); err != nil {
		return info, fmt.Errorf("standby: %w", err)
	}
	info = v.snapshotInfo(start, durable, devBytes)
	if err := vmhost.WriteSnapshotInfo(dir, info); err != nil {
		return info, fmt.Errorf("standby: %w", err)
	}
	log.Info("vm on standby", "durable_after", durable, "device_state_bytes", devBytes)
	return info, nil
}

// Snapshot implements vmhost.VM. QEMU resumes with "cont" after a
// completed migration (its run state is postmigrate then), so the same
// device-state migration as Standby serves, without the quit.
func (v *VM) Snapshot(ctx context.Context, dir string) (vmhost.SnapshotInfo, error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	var info vmhost.SnapshotInfo
	prev := v.State()
	if prev != vmhost.StateRunning && prev != vmhost.StatePaused {
		return info, fmt.Errorf("snapshot vm %s: %w: %s", v.m.Config.Name, vmhost.ErrInvalidState, prev)
	}
	cfg := v.m.Config
	memDst := filepath.Join(dir, vmhost.MemoryFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return info, fmt.Errorf("snapshot: %w", err)
	}
	// Private memory is converted from the migration stream into a new
	// file; shared memory is copied from its own file (a clone when the
	// filesystem shares extents).
	if err := sameFilesystem(dir, v.paths.Memory); err != nil && !v.m.PrivateMemory {
		return info, fmt.Errorf("snapshot: %w: %w", vmhost.ErrInvalidConfig, err)
	}
	if _, err := os.Lstat(memDst); err == nil || memDst == v.paths.Memory {
		return info, fmt.Errorf("snapshot: %w: %s already exists", vmhost.ErrInvalidState, memDst)
	}
	log := v.d.log.With("vm", cfg.Name, "dir", dir)
	cleanup := func() {
		os.Remove(memDst)
		os.Remove(filepath.Join(dir, vmhost.DeviceStateFile))
	}

	start := time.Now()
	var (
		devBytes int64
		method   string
	)
	err := v.execute(ctx, "stop", nil, nil)
	if err == nil {
		v.setState(vmhost.StatePaused)
		if v.m.PrivateMemory {
			// The whole RAM streams through the converter while the
			// guest is paused: a longer pause than a shared snapshot's.
			method = "converted"
			devBytes, err = v.saveConverted(ctx, dir)
		} else {
			devBytes, err = v.saveDeviceState(ctx, dir)
		}
	}
	if err == nil && !v.m.PrivateMemory {
		// The guest is paused: the RAM in the file matches the device
		// state just written. The copy reads the page cache, which is
		// what the guest wrote, synced or not.
		method, err = vmhost.CopySparse(v.paths.Memory, memDst)
	}
	// Resume whatever happened: the guest was running and nothing of it
	// is lost.
	var resumeErr error
	if prev == vmhost.StateRunning && !v.State().Exited() {
		if resumeErr = v.execute(context.WithoutCancel(ctx), "cont", nil, nil); resumeErr == nil {
			v.setState(vmhost.StateRunning)
		}
	}
	pause := time.Since(start)
	if err == nil && resumeErr != nil {
		err = fmt.Errorf("resume after snapshot: %w", v.exitErr(resumeErr))
	}
	if err == nil {
		err = syncFile(memDst)
	}
	if err == nil {
		err = vmhost.SyncDir(dir)
	}
	if err != nil {
		cleanup()
		if resumeErr != nil && err != resumeErr {
			err = errors.Join(err, fmt.Errorf("resume after failed snapshot: %w", resumeErr))
		}
		log.Warn("snapshot failed", "err", err)
		return info, fmt.Errorf("snapshot: %w", err)
	}
	info = v.snapshotInfo(start, pause, devBytes)
	if err := vmhost.WriteSnapshotInfo(dir, info); err != nil {
		cleanup()
		return info, fmt.Errorf("snapshot: %w", err)
	}
	log.Info("vm snapshot taken, guest running", "paused", pause, "copy", method, "durable_after", time.Since(start), "device_state_bytes", devBytes)
	return info, nil
}

// snapshotInfo describes a standby or snapshot of v begun at start, with
// devBytes of device state, the guest paused for pause.
func (v *VM) snapshotInfo(start time.Time, pause time.Duration, devBytes int64) vmhost.SnapshotInfo {
	cfg := v.m.Config
	return vmhost.SnapshotInfo{
		Version:           vmhost.SnapshotInfoVersion,
		Hypervisor:        Name,
		HypervisorVersion: v.d.version,
		Machine:           v.m.Machine,
		CPU:               v.m.CPU,
		Accel:             v.m.Accel,
		MemoryMiB:         cfg.MemoryMiB,
		VCPUs:             cfg.VCPUs,
		Boot:              cfg.Boot,
		MemoryBytes:       int64(cfg.MemoryMiB) << 20,
		DeviceStateBytes:  devBytes,
		Created:           start.UTC(),
		PauseDuration:     pause,
	}
}

// saveDeviceState migrates the paused VM's device state (not its RAM,
// which x-ignore-shared leaves in the shared memory file) into
// dir/device-state, durably. Nothing under that name is visible unless it
// is complete.
func (v *VM) saveDeviceState(ctx context.Context, dir string) (int64, error) {
	final := filepath.Join(dir, vmhost.DeviceStateFile)
	f, err := os.CreateTemp(dir, "."+vmhost.DeviceStateFile+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("device state: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name()) // no-op after the rename
	}()
	if err := v.qmp.executeFD(ctx, "getfd", map[string]string{"fdname": "hangar-devstate"}, nil, int(f.Fd())); err != nil {
		return 0, fmt.Errorf("device state: %w", v.exitErr(err))
	}
	if err := v.execute(ctx, "migrate", map[string]string{"uri": "fd:hangar-devstate"}, nil); err != nil {
		v.execute(context.WithoutCancel(ctx), "closefd", map[string]string{"fdname": "hangar-devstate"}, nil)
		return 0, fmt.Errorf("device state: %w", err)
	}
	for {
		var mi migrateInfo
		if err := v.execute(ctx, "query-migrate", nil, &mi); err != nil {
			return 0, fmt.Errorf("device state: %w", err)
		}
		if mi.Status == "completed" {
			break
		}
		if mi.Status == "failed" || mi.Status == "cancelled" {
			return 0, fmt.Errorf("device state: migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			v.execute(context.WithoutCancel(ctx), "migrate_cancel", nil, nil)
			return 0, fmt.Errorf("device state: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("device state: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("device state: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return 0, fmt.Errorf("device state: %w", err)
	}
	return st.Size(), nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync memory file: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync memory file: %w", err)
	}
	return nil
}

func sameFilesystem(dir, file string) error {
	var a, b unix.Stat_t
	if err := unix.Stat(dir, &a); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Stat(filepath.Dir(file), &b); err != nil {
		return fmt.Errorf("stat %s: %w", filepath.Dir(file), err)
	}
	if a.Dev != b.Dev {
		return fmt.Errorf("snapshot dir %s is not on the memory file's filesystem (%s): the memory file is renamed, not copied", dir, file)
	}
	return nil
}

// quit asks QEMU to exit and waits; it kills the process when quit is not
// answered within the driver's quit timeout or ctx ends.
func (v *VM) quit(ctx context.Context) {
	v.mu.Lock()
	v.requested = true
	v.mu.Unlock()
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.d.s.QuitTimeout)
	defer cancel()
	if v.qmp != nil {
		v.qmp.execute(qctx, "quit", nil, nil) // the answer races with the socket closing
	}
	select {
	case <-v.done:
		return
	case <-ctx.Done():
	case <-qctx.Done():
	}
	v.d.log.Warn("qemu did not quit, killing it", "vm", v.m.Config.Name, "pid", v.pid)
	v.kill()
}

// Stop implements vmhost.VM.
func (v *VM) Stop(ctx context.Context) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	select {
	case <-v.done:
		return nil
	default:
	}
	v.quit(ctx)
	return nil
}

// Kill implements vmhost.VM.
func (v *VM) Kill() error {
	v.kill()
	return nil
}

// kill sends SIGKILL and waits for the exit to be noticed.
func (v *VM) kill() {
	v.mu.Lock()
	select {
	case <-v.done:
		v.mu.Unlock()
		return
	default:
	}
	v.requested = true
	if v.attached {
		if v.pidfd != nil {
			unix.PidfdSendSignal(int(v.pidfd.Fd()), unix.SIGKILL, nil, 0)
		}
	} else {
		unix.Kill(v.pid, unix.SIGKILL)
	}
	v.mu.Unlock()
	<-v.done
}

// logTail is the end of QEMU's log, for error messages.
func (v *VM) logTail() string {
	f, err := os.Open(v.paths.Log)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 2048
	if st, err := f.Stat(); err == nil && st.Size() > max {
		f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var keep []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "hangar: ") {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return ""
	}
	if len(keep) > 8 {
		keep = keep[len(keep)-8:]
	}
	return "; qemu log " + v.paths.Log + ": " + strings.Join(keep, " | ")
}

func pidfdOpen(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)), nil
}
