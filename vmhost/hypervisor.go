package vmhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Names of the files in a snapshot directory. A hypervisor that stores more
// (Firecracker's separate vmstate, say) adds files; these three are always
// there and are what the storage pipeline moves.
const (
	// MemoryFile is guest RAM, byte for byte: the file is exactly
	// MemoryMiB MiB long and sparse where the guest never wrote.
	MemoryFile = "memory"
	// DeviceStateFile is the hypervisor's device state (CPU registers,
	// devices): small, opaque, only readable by the same hypervisor.
	DeviceStateFile = "device-state"
	// SnapshotInfoFile describes the snapshot (SnapshotInfo as JSON). It is
	// written last: a snapshot directory without it is incomplete.
	SnapshotInfoFile = "vm.json"
)

// Sentinel errors. Drivers wrap them with context; callers test with
// errors.Is.
var (
	// ErrInvalidConfig: a Config or RestoreSource failed validation; nothing
	// was started.
	ErrInvalidConfig = errors.New("invalid VM config")
	// ErrInvalidState: the operation is not legal in the VM's current state
	// (standby of a stopped VM, ...). Nothing changed.
	ErrInvalidState = errors.New("invalid VM state")
	// ErrVMExited: the hypervisor process exited (or was killed) while an
	// operation needed it.
	ErrVMExited = errors.New("VM process exited")
	// ErrSnapshotMismatch: a snapshot cannot be restored with this config or
	// on this host (memory size, vCPUs, guest image or hypervisor differ, or
	// a file is missing).
	ErrSnapshotMismatch = errors.New("snapshot does not match")
	// ErrNotFound: Attach found no hypervisor process for the directory.
	ErrNotFound = errors.New("VM not found")
)

// Hypervisor starts, restores and re-attaches VMs. Implementations live in
// subpackages (vmhost/qemu); one Hypervisor value serves many VMs and is safe
// for concurrent use.
//
// ctx bounds only the call itself (spawning the process, the control-socket
// handshake, a restore's incoming migration), never the VM's lifetime: a VM
// runs until Stop, Kill, Standby, its own exit, or the Hypervisor's Close.
// When a call fails or its ctx ends, no hypervisor process is left behind.
type Hypervisor interface {
	// Name identifies the hypervisor ("qemu"); it is recorded in snapshots.
	Name() string

	// Start boots a fresh VM. cfg.Dir is created if needed and holds the
	// memory file (unless cfg.MemoryPath says otherwise), control sockets,
	// the pidfile and the logs. Start returns once the hypervisor runs the
	// guest; it does not wait for the guest OS (that is the guest agent's
	// business).
	Start(ctx context.Context, cfg Config) (VM, error)

	// Restore resumes a VM from a snapshot. The memory file at
	// src.MemoryPath (default src.Dir/memory) becomes the VM's live RAM:
	// the guest writes into it from then on, so a caller that wants to keep
	// the snapshot gives every restore its own copy (a fresh sparse file).
	// The files are checked before any process starts: a memory file whose
	// size is not cfg.MemoryMiB MiB, vCPUs or guest image differing from the
	// snapshot's, or another hypervisor's snapshot fail with
	// ErrSnapshotMismatch. On any failure no process is left running and
	// the snapshot files are unchanged (the guest never ran).
	//
	// When the VM runs from the snapshot's own memory file (src.Dir/memory),
	// the snapshot is consumed: Restore removes src.Dir's SnapshotInfoFile
	// (durably) just before the guest resumes, so the directory never again
	// looks like a snapshot whose memory matches its device state. A
	// restore from a copy of the memory file leaves src.Dir intact.
	Restore(ctx context.Context, cfg Config, src RestoreSource) (VM, error)

	// Attach finds a VM that a previous owner (a daemon that restarted)
	// started in dir and is still running, and takes control of it. No
	// process there is ErrNotFound. An attached VM is supervised like a
	// started one, except that its exit status may be unknown.
	Attach(ctx context.Context, dir string) (VM, error)

	// Close kills every VM this Hypervisor started, restored or attached
	// that is still running, and waits for them to exit.
	Close() error
}

// VM is one running (or exited) hypervisor process. Methods are safe for
// concurrent use, but operations that change state (Standby, Stop) are
// serialised: a second one waits for the first.
type VM interface {
	// Config is the config the VM was started or restored with, with
	// defaults filled in.
	Config() Config
	// State reports the VM's state as last observed; it changes to
	// StateStopped or StateCrashed as soon as the process exits.
	State() State
	// Paths reports where the VM's files are.
	Paths() Paths
	// PID is the hypervisor process id (0 once it has been reaped).
	PID() int

	// Standby pauses the VM, writes its device state into dir (created if
	// needed), makes the memory file dir/memory (renaming it there if the VM
	// ran from another path on the same filesystem), makes both durable
	// (fsync, including dir), writes SnapshotInfoFile last, and stops the
	// hypervisor. When it returns nil the snapshot is complete and durable
	// and the VM is StateStopped.
	//
	// If it fails before the hypervisor is told to quit, the VM is resumed
	// as it was (running stays running) and partial files are removed. If
	// the hypervisor exits during Standby the error wraps ErrVMExited and
	// the memory file is left where it was. ctx cancellation is a failure
	// like any other.
	Standby(ctx context.Context, dir string) (SnapshotInfo, error)

	// Snapshot writes a snapshot of the VM into dir (created if needed)
	// and lets the guest go on: it pauses the VM, writes its device state,
	// makes dir/memory a private copy of the guest's RAM while paused (a
	// clone where the filesystem shares extents, else a sparse copy; dir
	// must be on the memory file's filesystem), resumes the guest, then
	// makes the files durable and writes SnapshotInfoFile last. The
	// guest's downtime is the pause to the resume (PauseDuration). The
	// snapshot restores like a standby's.
	//
	// On failure the guest is resumed as it was (running stays running),
	// and dir holds no SnapshotInfoFile (partial files are removed). If
	// the hypervisor exits meanwhile the error wraps ErrVMExited.
	Snapshot(ctx context.Context, dir string) (SnapshotInfo, error)

	// Stop ends the VM without saving anything: a quit through the control
	// socket, then SIGKILL if it has not exited when ctx ends. Stopping an
	// exited VM is not an error. The memory file is left in place.
	Stop(ctx context.Context) error

	// Kill sends SIGKILL and waits for the exit.
	Kill() error

	// Done is closed when the process has exited.
	Done() <-chan struct{}

	// Wait waits for the process to exit and returns how; ctx ends only
	// the waiting.
	Wait(ctx context.Context) (ExitStatus, error)
}

// State is a VM's lifecycle state as the driver sees it.
type State string

const (
	StateStarting State = "starting" // process spawned, guest not resumed yet (includes incoming migration)
	StateRunning  State = "running"  // guest CPUs run
	StatePaused   State = "paused"   // guest CPUs stopped (during Standby)
	StateStopped  State = "stopped"  // exited because we asked (Stop, Standby, Kill, Close)
	StateCrashed  State = "crashed"  // exited on its own or was killed by someone else
)

// Exited reports whether the state is final.
func (s State) Exited() bool { return s == StateStopped || s == StateCrashed }

// ExitStatus says how a hypervisor process ended.
type ExitStatus struct {
	// Code is the exit code, -1 when killed by a signal or unknown.
	Code int
	// Signal is the signal that killed it, "" if none or unknown.
	Signal string
	// Known is false for attached processes whose status the kernel gives
	// only to the real parent.
	Known bool
	// Requested is true when the exit was asked for (Stop, Standby, Kill,
	// Close); an exit that was not requested makes the VM StateCrashed.
	Requested bool
}

func (e ExitStatus) String() string {
	switch {
	case !e.Known:
		return "exit status unknown"
	case e.Signal != "":
		return "killed by " + e.Signal
	default:
		return fmt.Sprintf("exit code %d", e.Code)
	}
}

// Boot says what the guest boots: a kernel and initramfs loaded directly
// (the only kind today; a disk image would be another field).
type Boot struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// ImageDigest identifies the guest image the files come from. It is
	// recorded in snapshots; a restore with a different digest is refused.
	ImageDigest string `json:"image_digest,omitempty"`
}

// Config describes a VM. The zero value is not valid; fill it and call
// Validate (drivers do).
type Config struct {
	// Name is a label for logs and the process title.
	Name string `json:"name,omitempty"`
	// MemoryMiB is guest RAM in MiB (and the memory file's size).
	MemoryMiB int `json:"memory_mib"`
	// VCPUs is the number of virtual CPUs.
	VCPUs int `json:"vcpus"`
	// Boot says what the guest boots.
	Boot Boot `json:"boot"`
	// Dir is the VM's runtime directory: sockets, pidfile, logs and, by
	// default, the memory file. Unix socket paths must fit in 107 bytes, so
	// keep it short.
	Dir string `json:"dir"`
	// MemoryPath is the guest RAM file; default Dir/memory. Restore ignores
	// it and uses RestoreSource.MemoryPath.
	MemoryPath string `json:"memory_path,omitempty"`
}

// Limits checked by Validate.
const (
	MinMemoryMiB = 64
	MaxMemoryMiB = 1 << 20
	MaxVCPUs     = 256
	// maxSocketPath is sun_path's size minus the terminating NUL.
	maxSocketPath = 107
	// LongestSocketName is the longest file name a driver puts in Dir as a
	// unix socket, so Validate can check the path length once for all.
	LongestSocketName = "agent.sock"
)

// WithDefaults returns cfg with empty fields filled in.
func (c Config) WithDefaults() Config {
	if c.MemoryPath == "" && c.Dir != "" {
		c.MemoryPath = filepath.Join(c.Dir, MemoryFile)
	}
	if c.Name == "" && c.Dir != "" {
		c.Name = filepath.Base(c.Dir)
	}
	return c
}

// Validate reports every problem with the config at once, wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if c.MemoryMiB < MinMemoryMiB || c.MemoryMiB > MaxMemoryMiB {
		errs = append(errs, fmt.Errorf("memory_mib %d out of range [%d, %d]", c.MemoryMiB, MinMemoryMiB, MaxMemoryMiB))
	}
	if c.VCPUs < 1 || c.VCPUs > MaxVCPUs {
		errs = append(errs, fmt.Errorf("vcpus %d out of range [1, %d]", c.VCPUs, MaxVCPUs))
	}
	if c.Boot.Kernel == "" {
		errs = append(errs, errors.New("boot.kernel is required"))
	}
	if strings.ContainsAny(c.Boot.Cmdline, "\n\x00") {
		errs = append(errs, errors.New("boot.cmdline contains a newline or NUL"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("dir is required"))
	} else {
		if !filepath.IsAbs(c.Dir) {
			errs = append(errs, fmt.Errorf("dir %q is not absolute", c.Dir))
		}
		if n := len(filepath.Join(c.Dir, LongestSocketName)); n > maxSocketPath {
			errs = append(errs, fmt.Errorf("dir %q too long: socket paths would be %d bytes, the limit is %d", c.Dir, n, maxSocketPath))
		}
	}
	// Drivers pass paths to the hypervisor on a command line where a comma
	// separates options; refuse what would be misparsed rather than escape.
	for name, p := range map[string]string{"dir": c.Dir, "memory_path": c.MemoryPath, "boot.kernel": c.Boot.Kernel, "boot.initrd": c.Boot.Initrd} {
		if strings.ContainsAny(p, ",\n\x00") {
			errs = append(errs, fmt.Errorf("%s %q contains a comma, newline or NUL", name, p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// RestoreSource is where a restore takes its snapshot from.
type RestoreSource struct {
	// Dir holds DeviceStateFile and, normally, SnapshotInfoFile and
	// MemoryFile.
	Dir string
	// MemoryPath is the memory file to run from; default Dir/memory.
	MemoryPath string
	// PrivateMemory maps the memory file private (copy-on-write): the
	// guest's writes never reach the file, which may then be read-only,
	// shared by several restores, or served lazily (a FUSE file whose
	// chunks are fetched on first touch, docs/lazy-restore.md). The VM
	// keeps this for life (a driver records it for Attach): its Standby
	// and Snapshot stream all of RAM into a new memory file in the target
	// directory (every page is read, so a lazy file is read whole). A
	// driver whose host setting already makes all memory private treats
	// false as "the host default".
	PrivateMemory bool
}

// Paths are a VM's files on the host.
type Paths struct {
	Dir         string // runtime directory
	Memory      string // guest RAM file
	AgentSocket string // guest agent's serial port (unix socket, host side)
	ConsoleLog  string // the guest's first serial port
	Log         string // the hypervisor's own stderr
}

// SnapshotInfo is SnapshotInfoFile's content: what a restore needs to check
// that it can use the snapshot.
type SnapshotInfo struct {
	// Version of this schema.
	Version int `json:"version"`
	// Hypervisor is Hypervisor.Name of the driver that wrote it;
	// HypervisorVersion the version of the binary.
	Hypervisor        string `json:"hypervisor"`
	HypervisorVersion string `json:"hypervisor_version,omitempty"`
	// Machine is the driver's machine model (QEMU: the versioned machine
	// type); a restore uses the same.
	Machine string `json:"machine,omitempty"`
	// CPU is the CPU model and Accel the accelerator the guest ran with
	// (QEMU: "max"/"host", "tcg"/"kvm"); a restore uses the same.
	CPU       string `json:"cpu,omitempty"`
	Accel     string `json:"accel,omitempty"`
	MemoryMiB int    `json:"memory_mib"`
	VCPUs     int    `json:"vcpus"`
	Boot      Boot   `json:"boot"`
	// MemoryBytes and DeviceStateBytes are the files' sizes.
	MemoryBytes      int64 `json:"memory_bytes"`
	DeviceStateBytes int64 `json:"device_state_bytes"`
	// Created is when the VM was paused.
	Created time.Time `json:"created"`
	// PauseDuration is from the pause to durable files (the guest's
	// downtime so far); informational.
	PauseDuration time.Duration `json:"pause_duration_ns"`
}

// SnapshotInfoVersion is the current SnapshotInfo schema version.
const SnapshotInfoVersion = 1

// ReadSnapshotInfo reads dir's SnapshotInfoFile. A missing file wraps
// ErrSnapshotMismatch: the directory holds no complete snapshot.
func ReadSnapshotInfo(dir string) (SnapshotInfo, error) {
	var info SnapshotInfo
	b, err := os.ReadFile(filepath.Join(dir, SnapshotInfoFile))
	if errors.Is(err, fs.ErrNotExist) {
		return info, fmt.Errorf("%w: %s has no %s (not a complete snapshot)", ErrSnapshotMismatch, dir, SnapshotInfoFile)
	}
	if err != nil {
		return info, fmt.Errorf("read snapshot info: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%w: parse %s: %w", ErrSnapshotMismatch, filepath.Join(dir, SnapshotInfoFile), err)
	}
	if info.Version != SnapshotInfoVersion {
		return info, fmt.Errorf("%w: %s has schema version %d, this build reads %d", ErrSnapshotMismatch, SnapshotInfoFile, info.Version, SnapshotInfoVersion)
	}
	return info, nil
}

// WriteSnapshotInfo writes dir's SnapshotInfoFile atomically and durably
// (temporary file, fsync, rename, fsync of dir): it is a snapshot's commit
// point on local disk.
func WriteSnapshotInfo(dir string, info SnapshotInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("encode snapshot info: %w", err)
	}
	return WriteFileAtomic(filepath.Join(dir, SnapshotInfoFile), append(b, '\n'))
}

// CheckRestore reports every reason why a snapshot described by info cannot
// be restored by the named hypervisor with cfg from a memory file of
// memoryBytes, wrapping ErrSnapshotMismatch.
func (info SnapshotInfo) CheckRestore(hypervisor string, cfg Config, memoryBytes int64) error {
	var errs []error
	if info.Hypervisor != hypervisor {
		errs = append(errs, fmt.Errorf("snapshot taken by hypervisor %q, this is %q", info.Hypervisor, hypervisor))
	}
	if info.MemoryMiB != cfg.MemoryMiB {
		errs = append(errs, fmt.Errorf("snapshot has memory_mib %d, config asks %d", info.MemoryMiB, cfg.MemoryMiB))
	}
	if want := int64(cfg.MemoryMiB) << 20; memoryBytes != want {
		errs = append(errs, fmt.Errorf("memory file is %d bytes, memory_mib %d needs exactly %d", memoryBytes, cfg.MemoryMiB, want))
	}
	if info.VCPUs != cfg.VCPUs {
		errs = append(errs, fmt.Errorf("snapshot has %d vcpus, config asks %d", info.VCPUs, cfg.VCPUs))
	}
	if info.Boot.ImageDigest != cfg.Boot.ImageDigest {
		errs = append(errs, fmt.Errorf("snapshot needs guest image %q, this host has %q", info.Boot.ImageDigest, cfg.Boot.ImageDigest))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshotMismatch, err)
	}
	return nil
}

// WriteFileAtomic replaces path with data so that a crash leaves the old or
// the new content, never a mix: temporary file, fsync, rename, fsync of the
// parent directory.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
