package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/storage/storeconfig"
	"github.com/hangar-vm/hangar/vmhost/manager"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// Config is the host daemon's configuration. WithDefaults is the one place
// defaults live; Validate reports every problem at once.
type Config struct {
	// HostID identifies the host in the cluster; stable across restarts.
	HostID string `yaml:"host_id"`
	// Listen is the host API's address, host:port.
	Listen string `yaml:"listen"`
	// AdvertiseAddress is the base URL at which the server reaches the
	// host API; default http://<the address listened on>. Required when
	// Listen's host is unspecified (0.0.0.0, ::).
	AdvertiseAddress string `yaml:"advertise_address"`
	// ServerURL is the hangar server's base URL; empty runs the host
	// standalone (no registration), for tests and debugging.
	ServerURL string `yaml:"server_url"`
	// ClusterToken is shared with the server: the host API demands it and
	// the registration sends it.
	ClusterToken config.Secret `yaml:"cluster_token"`
	// DataDir holds instances, snapshots, runtime directories and jobs.
	// Absolute and short (VM unix sockets live under it).
	DataDir string `yaml:"data_dir"`
	// Cache is the host chunk cache.
	Cache CacheConfig `yaml:"cache"`
	// Store is central storage.
	Store StoreConfig `yaml:"store"`
	// QEMU configures the hypervisor.
	QEMU QEMUConfig `yaml:"qemu"`
	// Image is the guest image.
	Image ImageConfig `yaml:"image"`
	// Capacity is what the host offers to guests.
	Capacity CapacityConfig `yaml:"capacity"`
	// Snapshot holds the host's snapshot settings.
	Snapshot SnapshotConfig `yaml:"snapshot"`
	// Restore holds the host's restore settings.
	Restore RestoreConfig `yaml:"restore"`
	// UploadConcurrency is how many upload jobs run at once (1-64).
	UploadConcurrency int `yaml:"upload_concurrency"`
	// ShutdownTimeout bounds the HTTP server's drain at shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// CacheConfig is the host chunk cache.
type CacheConfig struct {
	// Dir empty: <data_dir>/cache (resolved at start, so that a data_dir
	// given after the defaults were applied moves it too).
	Dir string `yaml:"dir"`
	// MaxBytes bounds the cache; least recently used chunks are evicted
	// beyond it. Default 10 GiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Store kinds.
const (
	StoreS3 = storeconfig.KindS3
	StoreFS = storeconfig.KindFS
)

// StoreConfig names central storage: the store section every hangar
// process shares (storage/storeconfig), with the same keys as the
// server's. Its kind may be left out when dir or s3.endpoint says it.
type StoreConfig = storeconfig.Config

// QEMUConfig configures the QEMU driver.
type QEMUConfig struct {
	// Binary default qemu-system-x86_64 on PATH.
	Binary string `yaml:"binary"`
	// Accel is kvm (default) or tcg (software emulation, for machines
	// without a working /dev/kvm).
	Accel string `yaml:"accel"`
	// KeepRunning lets guests outlive the daemon's death (no
	// parent-death signal on QEMU, nor on a lazy restore's FUSE server):
	// a restarted daemon re-attaches them. A graceful stop still ends
	// them. Off: a killed daemon's guests die with it.
	KeepRunning bool `yaml:"keep_running"`
}

// ImageConfig says where the guest image comes from.
type ImageConfig struct {
	// Dir holds a built image (guest.Load). Empty: the image is built at
	// start from the inputs below, into CacheDir (reused when the inputs
	// did not change).
	Dir string `yaml:"dir"`
	// KernelDir holds vmlinuz and release (default $HANGAR_CACHE/kernel).
	KernelDir string `yaml:"kernel_dir"`
	// Busybox is a static busybox (default /bin/busybox).
	Busybox string `yaml:"busybox"`
	// Agent is a static hangar-agent; empty compiles it, which needs the
	// go tool and the hangar module as working directory.
	Agent string `yaml:"agent"`
	// CacheDir holds built images (default $HANGAR_CACHE/image).
	CacheDir string `yaml:"cache_dir"`
}

// CapacityConfig is what the host offers to guests.
type CapacityConfig struct {
	// MemoryMiB default: the machine's memory less 1 GiB for the host.
	MemoryMiB int64 `yaml:"memory_mib"`
	// VCPUs default: the machine's CPUs.
	VCPUs int32 `yaml:"vcpus"`
}

// SnapshotConfig holds the host's snapshot settings.
type SnapshotConfig struct {
	// CompressionDefault is the last level of the compression precedence
	// on this host (the server normally resolves it and sends it with each
	// standby). Unset: zstd at its default level.
	CompressionDefault *compression.Policy `yaml:"compression_default"`
	// KeepLocalAfterCommit keeps a standby's raw files after its upload
	// committed (a restore here then needs no download).
	KeepLocalAfterCommit bool `yaml:"keep_local_after_commit"`
	// CommitWait bounds how long a restore or fork of a snapshot this host
	// does not hold waits for the snapshot's upload (on another host) to
	// commit before it gives up; default 2m, at most 1h. Negative: no
	// wait, a snapshot not committed yet is not found at once.
	CommitWait time.Duration `yaml:"commit_wait"`
}

// RestoreConfig holds the host's restore settings.
type RestoreConfig struct {
	// Lazy restores (and forks) from central storage lazily: the memory
	// file is served by a FUSE mount (a server process of its own per
	// guest, fed chunks by the daemon over a unix socket), its chunks
	// fetched on first read and prefetched in the background, and the
	// guest resumes before the whole snapshot is here
	// (docs/lazy-restore.md). Needs root and /dev/fuse (a host without
	// them restores eagerly). With qemu.keep_running such a guest outlives
	// a killed daemon like any other and is re-attached; without it, a
	// daemon that ends takes it along and it comes back on standby on the
	// snapshot it was restored from. Its next standby moves all its RAM
	// through QEMU's migration stream (slower than a plain standby).
	// Default false.
	Lazy bool `yaml:"lazy"`
}

// Defaults, in one place.
const (
	DefaultListen            = "127.0.0.1:7081"
	DefaultDataDir           = "/var/lib/hangar/host"
	DefaultCacheMaxBytes     = 10 << 30
	DefaultUploadConcurrency = 2
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultCommitWait        = 2 * time.Minute
	maxCommitWait            = time.Hour
	// hostReserveMiB is kept for the host itself when capacity is derived
	// from the machine.
	hostReserveMiB = 1024
	// MinTokenLen is the shortest cluster token accepted (the server's
	// rule too).
	MinTokenLen = 16
)

// WithDefaults returns c with every unset field given its default. The
// default capacity is read from the machine.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	c.DataDir = filepath.Clean(c.DataDir)
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = DefaultCacheMaxBytes
	}
	c.Store = c.Store.WithDefaults()
	if c.QEMU.Accel == "" {
		c.QEMU.Accel = qemu.AccelKVM
	}
	if c.Capacity.VCPUs == 0 {
		c.Capacity.VCPUs = int32(runtime.NumCPU())
	}
	if c.Capacity.MemoryMiB == 0 {
		if total, err := machineMemoryMiB(); err == nil {
			c.Capacity.MemoryMiB = max(total-hostReserveMiB, total/2)
		}
	}
	if c.Snapshot.CompressionDefault == nil || !c.Snapshot.CompressionDefault.IsSet() {
		c.Snapshot.CompressionDefault = &compression.Policy{Algorithm: string(compression.Zstd)}
	}
	if c.Snapshot.CommitWait == 0 {
		c.Snapshot.CommitWait = DefaultCommitWait
	}
	if c.UploadConcurrency == 0 {
		c.UploadConcurrency = DefaultUploadConcurrency
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

// ErrInvalidConfig wraps every problem Validate finds.
var ErrInvalidConfig = errors.New("invalid host config")

// Validate reports every problem with c (defaults applied first) at once,
// each naming its key, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := api.ValidateID("host", c.HostID); err != nil {
		add("host_id: %v", err)
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		add("listen: %q is not host:port: %v", c.Listen, err)
	}
	if c.AdvertiseAddress != "" {
		if err := checkURL(c.AdvertiseAddress); err != nil {
			add("advertise_address: %v", err)
		}
	} else if ip := net.ParseIP(host); err == nil && (host == "" || (ip != nil && ip.IsUnspecified())) {
		add("advertise_address: required when listen (%q) does not name one address the server can reach", c.Listen)
	}
	if c.ServerURL != "" {
		if err := checkURL(c.ServerURL); err != nil {
			add("server_url: %v", err)
		}
	}
	if n := len(c.ClusterToken); n < MinTokenLen {
		add("cluster_token: %d characters, want at least %d", n, MinTokenLen)
	}
	switch {
	case !filepath.IsAbs(c.DataDir):
		add("data_dir: %q is not absolute", c.DataDir)
	case len(c.DataDir) > manager.MaxDataDirLen:
		add("data_dir: %q is %d bytes, at most %d fit (VM unix sockets live under it)", c.DataDir, len(c.DataDir), manager.MaxDataDirLen)
	}
	if c.Cache.Dir != "" && !filepath.IsAbs(c.Cache.Dir) {
		add("cache.dir: %q is not absolute", c.Cache.Dir)
	}
	if c.Cache.MaxBytes <= 0 {
		add("cache.max_bytes: %d, want a positive size", c.Cache.MaxBytes)
	}
	if err := c.Store.Validate(); err != nil {
		errs = append(errs, err)
	}
	// A host's store directory is absolute, like its data_dir: the daemon
	// may be started from anywhere.
	if c.Store.EffectiveKind() == StoreFS && c.Store.Dir != "" && !filepath.IsAbs(c.Store.Dir) {
		add("store.dir: %q, want an absolute directory for kind fs", c.Store.Dir)
	}
	if err := c.qemuSettings().Validate(); err != nil {
		add("qemu: %w", err)
	}
	if c.Image.Dir != "" && !filepath.IsAbs(c.Image.Dir) {
		add("image.dir: %q is not absolute", c.Image.Dir)
	}
	if c.Capacity.MemoryMiB <= 0 {
		add("capacity.memory_mib: %d, want a positive amount (the machine's memory could not be read)", c.Capacity.MemoryMiB)
	}
	if c.Capacity.VCPUs <= 0 {
		add("capacity.vcpus: %d, want a positive number", c.Capacity.VCPUs)
	}
	if err := c.Snapshot.CompressionDefault.Validate(); err != nil {
		add("snapshot.compression_default: %w", err)
	}
	if c.Snapshot.CommitWait > maxCommitWait {
		add("snapshot.commit_wait: %v, want at most %v (negative: no wait)", c.Snapshot.CommitWait, maxCommitWait)
	}
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 64 {
		add("upload_concurrency: %d, want 1-64", c.UploadConcurrency)
	}
	if c.ShutdownTimeout < 0 {
		add("shutdown_timeout: %v is negative", c.ShutdownTimeout)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// cacheDir is the chunk cache's directory.
func (c Config) cacheDir() string {
	if c.Cache.Dir != "" {
		return c.Cache.Dir
	}
	return filepath.Join(c.DataDir, "cache")
}

// managerConfig is the instance manager's part of c; qs are the QEMU
// settings the daemon resolved.
func (c Config) managerConfig(qs qemu.Settings) manager.Config {
	return manager.Config{
		DataDir:              c.DataDir,
		QEMU:                 qs,
		KeepLocalAfterCommit: c.Snapshot.KeepLocalAfterCommit,
		CompressionDefault:   c.Snapshot.CompressionDefault,
		UploadConcurrency:    c.UploadConcurrency,
		CommitWait:           c.Snapshot.CommitWait,
		RestoreLazy:          c.Restore.Lazy,
	}
}

func (c Config) qemuSettings() qemu.Settings {
	return qemu.Settings{Binary: c.QEMU.Binary, Accel: c.QEMU.Accel, KeepRunningOnOwnerExit: c.QEMU.KeepRunning}.WithDefaults()
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL with a host", s)
	}
	return nil
}

// machineMemoryMiB reads MemTotal from /proc/meminfo.
func machineMemoryMiB() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "MemTotal:" {
			kib, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse MemTotal: %w", err)
			}
			return kib / 1024, nil
		}
	}
	return 0, errors.New("MemTotal not in /proc/meminfo")
}
