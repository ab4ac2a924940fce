package manager

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// Config configures a Manager. Defaults live in WithDefaults, the one place
// they are set; Validate reports every problem at once.
type Config struct {
	// DataDir holds instances, snapshots, runtime directories and jobs. It
	// must be absolute and short: a VM's unix sockets live under it and
	// their paths must fit 107 bytes (see MaxDataDirLen).
	DataDir string
	// QEMU configures the driver Open builds when Deps.Hypervisor is nil
	// (accelerator: kvm by default, tcg for nested or test machines).
	QEMU qemu.Settings
	// KeepLocalAfterCommit keeps a standby snapshot's raw files after its
	// upload committed. Off by default: the files are dropped (the chunks
	// stay in the host chunk cache) and a later restore here downloads.
	KeepLocalAfterCommit bool
	// CompressionDefault is the host's default compression policy, the
	// last level of compression.Resolve's precedence. nil: no compression
	// unless a request or instance asks.
	CompressionDefault *compression.Policy
	// UploadConcurrency is how many upload jobs run at once; each job is
	// itself parallel inside. Default 1.
	UploadConcurrency int
	// UploadRetry is how a failed upload is retried.
	UploadRetry Backoff
	// BootTimeout bounds a fresh boot up to the guest agent's first answer;
	// default 3 minutes (guests under TCG on a busy machine are slow).
	BootTimeout time.Duration
	// ResumeTimeout bounds a restore's wait for the guest agent; default
	// one minute.
	ResumeTimeout time.Duration
	// StopTimeout bounds a clean stop before the VM is killed; default 30s.
	StopTimeout time.Duration
	// CommitWait bounds how long a restore or fork of a snapshot that
	// this host does not hold waits for its manifest to appear in central
	// storage (its upload may still be running on another host); default
	// 2 minutes, negative: no wait (absent at once is ErrNotFound).
	CommitWait time.Duration
	// RestoreLazy makes restores, forks and rollbacks from central storage
	// lazy (lazy.go, docs/lazy-restore.md): the memory file is a FUSE
	// file whose chunks are fetched on first read and prefetched in the
	// background, and the VM runs with private memory over it. Needs root
	// and /dev/fuse; a host without them restores eagerly. Off by default.
	RestoreLazy bool
}

// Backoff is an exponential backoff with jitter.
type Backoff struct {
	// Initial is the first delay; default 1s.
	Initial time.Duration
	// Max caps the delay; default 1 minute.
	Max time.Duration
	// Multiplier grows the delay after each failure; default 2.
	Multiplier float64
	// MaxAttempts stops retrying after so many failed attempts (the job
	// then stays in error until the manager is reopened or the instance is
	// restored). 0, the default, retries for as long as the manager runs:
	// a parked VM is safe locally, so there is no reason to give up.
	MaxAttempts int
}

// MaxDataDirLen is the longest DataDir: a runtime directory is
// <data>/r/<8 hex>, and its longest socket name must fit in sun_path.
const MaxDataDirLen = 107 - len("/r/12345678/") - len(vmhost.LongestSocketName)

// WithDefaults returns c with empty fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.UploadConcurrency == 0 {
		c.UploadConcurrency = 1
	}
	if c.UploadRetry.Initial == 0 {
		c.UploadRetry.Initial = time.Second
	}
	if c.UploadRetry.Max == 0 {
		c.UploadRetry.Max = time.Minute
	}
	if c.UploadRetry.Multiplier == 0 {
		c.UploadRetry.Multiplier = 2
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = 3 * time.Minute
	}
	if c.ResumeTimeout == 0 {
		c.ResumeTimeout = time.Minute
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 30 * time.Second
	}
	if c.CommitWait == 0 {
		c.CommitWait = 2 * time.Minute
	}
	c.QEMU = c.QEMU.WithDefaults()
	if c.DataDir != "" {
		c.DataDir = filepath.Clean(c.DataDir)
	}
	return c
}

// ErrInvalidConfig wraps every problem Validate finds.
var ErrInvalidConfig = errors.New("invalid manager config")

// Validate reports every problem at once, wrapping ErrInvalidConfig. Call
// it on the result of WithDefaults (Open does).
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.DataDir == "":
		errs = append(errs, errors.New("data dir is required"))
	case !filepath.IsAbs(c.DataDir):
		errs = append(errs, fmt.Errorf("data dir %q is not absolute", c.DataDir))
	case len(c.DataDir) > MaxDataDirLen:
		errs = append(errs, fmt.Errorf("data dir %q is %d bytes; at most %d fit (VM sockets live under it and unix socket paths are limited to 107 bytes)", c.DataDir, len(c.DataDir), MaxDataDirLen))
	}
	if err := c.QEMU.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.CompressionDefault.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("compression default: %w", err))
	}
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 64 {
		errs = append(errs, fmt.Errorf("upload concurrency %d out of range [1, 64]", c.UploadConcurrency))
	}
	b := c.UploadRetry
	if b.Initial < 0 || b.Max < b.Initial {
		errs = append(errs, fmt.Errorf("upload retry: initial %v and max %v must satisfy 0 <= initial <= max", b.Initial, b.Max))
	}
	if b.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("upload retry: multiplier %v is below 1", b.Multiplier))
	}
	if b.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("upload retry: max attempts %d is negative", b.MaxAttempts))
	}
	for name, d := range map[string]time.Duration{"boot timeout": c.BootTimeout, "resume timeout": c.ResumeTimeout, "stop timeout": c.StopTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// delay is the wait before retry number attempt (1-based), with up to 25%
// jitter taken off so that many hosts do not retry in step.
func (b Backoff) delay(attempt int, jitter float64) time.Duration {
	d := float64(b.Initial)
	for i := 1; i < attempt && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.Max))
	return time.Duration(d * (1 - 0.25*jitter))
}
