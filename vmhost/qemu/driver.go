package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hangar-vm/hangar/internal/proc"
	"github.com/hangar-vm/hangar/vmhost"
)

// Name is the hypervisor name recorded in snapshots.
const Name = "qemu"

// Driver runs VMs as QEMU processes. It is safe for concurrent use.
type Driver struct {
	s       Settings
	log     *slog.Logger
	machine string // Settings.Machine resolved to a versioned type
	version string

	mu     sync.Mutex
	vms    map[*VM]struct{}
	closed bool
}

var _ vmhost.Hypervisor = (*Driver)(nil)

// New validates s, checks that the QEMU binary runs and resolves the
// machine type.
func New(ctx context.Context, s Settings) (*Driver, error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(s.Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: qemu binary: %w", vmhost.ErrInvalidConfig, err)
	}
	s.Binary = bin
	out, err := exec.CommandContext(ctx, bin, "-version").Output()
	if err != nil {
		return nil, fmt.Errorf("run %s -version: %w", bin, err)
	}
	version := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	machine, err := resolveMachine(ctx, bin, s.Machine)
	if err != nil {
		return nil, err
	}
	d := &Driver{
		s:       s,
		log:     s.Logger.With("component", "qemu"),
		machine: machine,
		version: version,
		vms:     map[*VM]struct{}{},
	}
	return d, nil
}

var machineAlias = regexp.MustCompile(`^(\S+)\s+.*\(alias of (\S+)\)`)

// resolveMachine maps an alias such as q35 to the versioned type it stands
// for in this QEMU, so snapshots name a machine a later QEMU still knows.
func resolveMachine(ctx context.Context, bin, machine string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "-machine", "help").Output()
	if err != nil {
		return "", fmt.Errorf("run %s -machine help: %w", bin, err)
	}
	known := false
	for _, line := range strings.Split(string(out), "\n") {
		if m := machineAlias.FindStringSubmatch(line); m != nil && m[1] == machine {
			return m[2], nil
		}
		if f := strings.Fields(line); len(f) > 0 && f[0] == machine {
			known = true
		}
	}
	if !known {
		return "", fmt.Errorf("%w: machine type %q not supported by %s", vmhost.ErrInvalidConfig, machine, bin)
	}
	return machine, nil
}

// Name implements vmhost.Hypervisor.
func (d *Driver) Name() string { return Name }

// Version is the QEMU version line.
func (d *Driver) Version() string { return d.version }

// Start implements vmhost.Hypervisor.
func (d *Driver) Start(ctx context.Context, cfg vmhost.Config) (vmhost.VM, error) {
	cfg = cfg.WithDefaults()
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if err := checkNotLive(cfg.Dir); err != nil {
		return nil, err
	}
	// A complete snapshot beside the memory file means that file is a
	// parked VM's RAM: booting would wipe it.
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg.MemoryPath), vmhost.SnapshotInfoFile)); err == nil {
		return nil, fmt.Errorf("%w: %s holds a snapshot; start would overwrite its memory file", vmhost.ErrInvalidState, filepath.Dir(cfg.MemoryPath))
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	// A fresh boot gets a fresh sparse file: no stale RAM, no disk used.
	if err := createSparse(cfg.MemoryPath, int64(cfg.MemoryMiB)<<20); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	m := machineArgs{Machine: d.machine, Accel: d.s.Accel, CPU: d.s.CPU, Config: cfg, PrivateMemory: d.s.PrivateMemory}
	return d.launch(ctx, m, "", "")
}

// Restore implements vmhost.Hypervisor.
func (d *Driver) Restore(ctx context.Context, cfg vmhost.Config, src vmhost.RestoreSource) (vmhost.VM, error) {
	if src.MemoryPath == "" {
		src.MemoryPath = filepath.Join(src.Dir, vmhost.MemoryFile)
	}
	cfg.MemoryPath = src.MemoryPath
	cfg = cfg.WithDefaults()
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if err := checkNotLive(cfg.Dir); err != nil {
		return nil, err
	}
	info, err := vmhost.ReadSnapshotInfo(src.Dir)
	if err != nil {
		return nil, fmt.Errorf("restore from %s: %w", src.Dir, err)
	}
	var errs []error
	memSize := int64(-1)
	if st, err := os.Stat(src.MemoryPath); err != nil {
		errs = append(errs, fmt.Errorf("memory file: %w", err))
	} else {
		memSize = st.Size()
	}
	devState := filepath.Join(src.Dir, vmhost.DeviceStateFile)
	if st, err := os.Stat(devState); err != nil {
		errs = append(errs, fmt.Errorf("device state: %w", err))
	} else if st.Size() == 0 {
		errs = append(errs, fmt.Errorf("device state %s is empty", devState))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("restore from %s: %w: %w", src.Dir, vmhost.ErrSnapshotMismatch, err)
	}
	if memSize >= 0 {
		if err := info.CheckRestore(Name, cfg, memSize); err != nil {
			return nil, fmt.Errorf("restore from %s: %w", src.Dir, err)
		}
	}
	// Device state from one accelerator does not load reliably under the
	// other (CPU state layout and features differ): refuse it plainly
	// rather than resume a guest that may misbehave.
	if info.Accel != "" && info.Accel != d.s.Accel {
		return nil, fmt.Errorf("restore from %s: %w: snapshot taken under accel %q, this host runs %q", src.Dir, vmhost.ErrSnapshotMismatch, info.Accel, d.s.Accel)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore vm: %w", err)
	}
	m := machineArgs{Machine: info.Machine, Accel: d.s.Accel, CPU: info.CPU, Config: cfg, Incoming: true, PrivateMemory: d.s.PrivateMemory || src.PrivateMemory}
	if m.Machine == "" {
		m.Machine = d.machine
	}
	if m.CPU == "" {
		m.CPU = d.s.CPU
	}
	// The snapshot's own memory file becomes live RAM: once the guest
	// runs, the directory no longer holds a snapshot, and must not look
	// like one (a restarted daemon would restore stale device state onto
	// newer memory). Its info file goes just before the guest resumes.
	// A private mapping never writes the file: the snapshot stays whole.
	consumed := ""
	if !m.PrivateMemory && filepath.Clean(src.MemoryPath) == filepath.Join(src.Dir, vmhost.MemoryFile) {
		consumed = src.Dir
	}
	return d.launch(ctx, m, devState, consumed)
}

func validate(cfg vmhost.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var errs []error
	for _, p := range []string{cfg.Boot.Kernel, cfg.Boot.Initrd} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err != nil {
			errs = append(errs, err)
		} else if !st.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("%s is not a regular file", p))
		}
	}
	if strings.ContainsAny(cfg.Name, ",\n\x00") {
		errs = append(errs, fmt.Errorf("name %q contains a comma, newline or NUL", cfg.Name))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", vmhost.ErrInvalidConfig, err)
	}
	return nil
}

func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create memory file: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("size memory file: %w", err)
	}
	return f.Close()
}

// runtimeInfo is written into the runtime directory at launch, for Attach.
type runtimeInfo struct {
	Machine machineArgs `json:"machine"`
	Binary  string      `json:"binary"`
	Version string      `json:"version"`
	Started time.Time   `json:"started"`
}

// launch spawns QEMU for m, takes control of QMP and resumes the guest
// (after loading devState when m.Incoming, and removing the snapshot info
// from consumedDir if set). On failure the process is killed and reaped
// before launch returns.
func (d *Driver) launch(ctx context.Context, m machineArgs, devState, consumedDir string) (_ *VM, err error) {
	cfg := m.Config
	if err := checkNotLive(cfg.Dir); err != nil {
		return nil, err
	}
	for _, s := range []string{qmpSocket, agentSocket, pidFile} {
		if err := os.Remove(filepath.Join(cfg.Dir, s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("launch vm: remove stale %s: %w", s, err)
		}
	}
	rt, err := json.MarshalIndent(runtimeInfo{Machine: m, Binary: d.s.Binary, Version: d.version, Started: time.Now().UTC()}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("launch vm: %w", err)
	}
	if err := vmhost.WriteFileAtomic(filepath.Join(cfg.Dir, runtimeFile), rt); err != nil {
		return nil, fmt.Errorf("launch vm: %w", err)
	}

	p := paths(cfg)
	logf, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("launch vm: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	args := m.args()
	fmt.Fprintf(logf, "hangar: %s starting %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), d.s.Binary, strings.Join(args, " "))

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, fmt.Errorf("launch vm: %w", errDriverClosed)
	}
	cmd := exec.Command(d.s.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C aimed at the daemon's terminal is not
	// aimed at the guests. Pdeathsig: when the daemon dies, so do its QEMUs
	// (unless the operator wants them to outlive it and be re-attached).
	// Go never retires the OS thread that forked, except for locked
	// goroutines, which this is not, so the signal fires on process death.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !d.s.KeepRunningOnOwnerExit {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("launch vm: start %s: %w", d.s.Binary, err)
	}
	v := newVM(d, m, cmd.Process.Pid)
	d.vms[v] = struct{}{}
	d.mu.Unlock()
	go v.reap(cmd)

	log := d.log.With("vm", cfg.Name, "pid", v.pid)
	defer func() {
		if err != nil {
			v.kill()
			err = fmt.Errorf("%w%s", err, v.logTail())
			log.Warn("launch failed", "err", err)
		}
	}()
	if err := v.connect(ctx); err != nil {
		return nil, err
	}
	if err := v.qmp.execute(ctx, "migrate-set-capabilities", ignoreSharedCaps, nil); err != nil {
		return nil, err
	}
	if m.Incoming {
		if err := v.incoming(ctx, devState); err != nil {
			return nil, err
		}
	}
	if consumedDir != "" {
		if err := os.Remove(filepath.Join(consumedDir, vmhost.SnapshotInfoFile)); err != nil {
			return nil, fmt.Errorf("restore: retire snapshot info: %w", err)
		}
		if err := vmhost.SyncDir(consumedDir); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if err := v.qmp.execute(ctx, "cont", nil, nil); err != nil {
		return nil, err
	}
	v.setState(vmhost.StateRunning)
	log.Info("vm running", "incoming", m.Incoming, "memory_mib", cfg.MemoryMiB, "vcpus", cfg.VCPUs)
	return v, nil
}

var errDriverClosed = errors.New("qemu driver closed")

// x-ignore-shared leaves shared-memory RAM blocks (our memory file) out of
// the migration stream on both ends: the stream holds device state only.
var ignoreSharedCaps = map[string]any{
	"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
}

// checkNotLive refuses a runtime directory where a QEMU still runs: its
// memory file and sockets are in use.
func checkNotLive(dir string) error {
	if pid, ok := livePID(dir); ok {
		return fmt.Errorf("%w: %s is in use by qemu pid %d", vmhost.ErrInvalidState, dir, pid)
	}
	return nil
}

// livePID reads dir's pidfile and reports a live QEMU serving dir's QMP
// socket (checked on its command line, so a reused pid does not count).
func livePID(dir string) (int, bool) {
	return proc.FromPIDFile(filepath.Join(dir, pidFile), "unix:"+filepath.Join(dir, qmpSocket)+",")
}

// Attach implements vmhost.Hypervisor.
func (d *Driver) Attach(ctx context.Context, dir string) (_ vmhost.VM, err error) {
	pid, ok := livePID(dir)
	if !ok {
		return nil, fmt.Errorf("attach %s: %w", dir, vmhost.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(dir, runtimeFile))
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", dir, err)
	}
	var rt runtimeInfo
	if err := json.Unmarshal(b, &rt); err != nil {
		return nil, fmt.Errorf("attach %s: parse %s: %w", dir, runtimeFile, err)
	}
	pidfd, err := pidfdOpen(pid)
	if err != nil {
		return nil, fmt.Errorf("attach %s: pid %d: %w", dir, pid, err)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		pidfd.Close()
		return nil, fmt.Errorf("attach %s: %w", dir, errDriverClosed)
	}
	v := newVM(d, rt.Machine, pid)
	v.attached = true
	v.pidfd = pidfd
	d.vms[v] = struct{}{}
	d.mu.Unlock()
	go v.watch(pidfd)
	if err := v.connect(ctx); err != nil {
		// Someone else may hold the QMP socket (QEMU serves one client at
		// a time); leave the process alone, it is not ours yet.
		v.detach()
		return nil, fmt.Errorf("attach %s: %w", dir, err)
	}
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := v.qmp.execute(ctx, "query-status", nil, &st); err != nil {
		v.detach()
		return nil, fmt.Errorf("attach %s: %w", dir, err)
	}
	switch {
	case st.Running:
		v.setState(vmhost.StateRunning)
	case st.Status == "paused":
		v.setState(vmhost.StatePaused)
	}
	d.log.Info("vm attached", "vm", rt.Machine.Config.Name, "pid", pid, "status", st.Status)
	return v, nil
}

// Close implements vmhost.Hypervisor.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	vms := make([]*VM, 0, len(d.vms))
	for v := range d.vms {
		vms = append(vms, v)
	}
	d.mu.Unlock()
	for _, v := range vms {
		v.kill()
	}
	return nil
}

func (d *Driver) forget(v *VM) {
	d.mu.Lock()
	delete(d.vms, v)
	d.mu.Unlock()
}
