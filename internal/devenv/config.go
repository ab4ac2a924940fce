package devenv

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// Config configures a dev cluster. WithDefaults is the one place defaults
// live; Validate reports every problem at once.
type Config struct {
	// Dir holds everything the cluster keeps (see the package doc).
	// Default $XDG_DATA_HOME/hangar-dev, else ~/.local/share/hangar-dev.
	Dir string
	// Hosts is the number of host daemons, 1-16 (default 2).
	Hosts int
	// Listen is the server's address (default 127.0.0.1:7070); port 0
	// picks a free one.
	Listen string
	// HostPort is the first host's API port on 127.0.0.1; host N listens
	// on HostPort+N-1 (default 7081). 0 lets every host pick a free port.
	HostPort int
	// Accel is the QEMU accelerator: kvm (default) or tcg (software
	// emulation, for machines whose /dev/kvm is missing or hangs guests).
	Accel string
	// LazyRestore gives every host restore.lazy: restores and forks from
	// the store resume the guest before its memory is all fetched
	// (docs/lazy-restore.md; needs root and /dev/fuse, else eager).
	LazyRestore bool
	// HostMemoryMiB is the guest memory each host offers; 0 is the host
	// daemon's default (the machine's memory less 1 GiB — every host
	// offers it, they share one machine).
	HostMemoryMiB int64
	// S3 is the central store when S3.Endpoint is set (MinIO, AWS S3);
	// empty uses an fs store in <Dir>/store. The bucket is created if it
	// does not exist. Credentials default to the AWS_* variables.
	S3 s3.Config
	// ImageDir is a built guest image to use; empty builds the default
	// image (cached, so only the first start pays for it).
	ImageDir string
	// Logger receives every component's logs (default slog.Default()).
	Logger *slog.Logger
	// Version is reported by the server and the hosts.
	Version string

	// OnReady is called once every host has registered with the server.
	OnReady func(Info)
	// OnStop is called when the context ends, before anything stops.
	OnStop func(Stopping)
}

// Defaults, in one place.
const (
	DefaultHosts    = 2
	DefaultListen   = "127.0.0.1:7070"
	DefaultHostPort = 7081
	DefaultBucket   = "hangar"
	maxHosts        = 16
)

// DefaultDir is where the dev cluster lives when Config.Dir is empty.
func DefaultDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "hangar-dev")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "hangar-dev")
	}
	return ".hangar-dev"
}

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	if c.Dir == "" {
		c.Dir = DefaultDir()
	}
	if abs, err := filepath.Abs(c.Dir); err == nil {
		c.Dir = abs
	}
	if c.Hosts == 0 {
		c.Hosts = DefaultHosts
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Accel == "" {
		c.Accel = qemu.AccelKVM
	}
	if c.S3.Endpoint != "" {
		if c.S3.Bucket == "" {
			c.S3.Bucket = DefaultBucket
		}
		c.S3.CreateBucket = true
		c.S3 = c.S3.WithDefaults()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}

// ErrInvalidConfig wraps every problem Validate finds.
var ErrInvalidConfig = errors.New("invalid dev config")

// Validate reports every problem with c (defaults applied first) at once.
// The server's and the hosts' own Validate check the rest when they start.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Hosts < 1 || c.Hosts > maxHosts {
		add("hosts: %d, want 1-%d", c.Hosts, maxHosts)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port: %v", c.Listen, err)
	}
	if c.HostPort < 0 || c.HostPort+c.Hosts-1 > 65535 {
		add("host_port: %d, want 0 or a port such that all %d hosts fit below 65536", c.HostPort, c.Hosts)
	}
	if c.Accel != qemu.AccelKVM && c.Accel != qemu.AccelTCG {
		add("accel: %q, want %s or %s", c.Accel, qemu.AccelKVM, qemu.AccelTCG)
	}
	if c.HostMemoryMiB < 0 {
		add("host_memory_mib: %d is negative", c.HostMemoryMiB)
	}
	if c.S3.Endpoint != "" {
		if err := c.S3.Validate(); err != nil {
			add("s3: %w", err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}
