package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/storeconfig"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/hostapi"
	"github.com/hangar-vm/hangar/vmhost/manager"
	"github.com/hangar-vm/hangar/vmhost/qemu"
	"github.com/hangar-vm/hangar/vmhost/register"
)

// Daemon is one `hangar host` process. Create it with New, run it with
// Run (once).
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	version string

	ready   chan struct{}
	started atomic.Bool
	mu      sync.Mutex
	addr    string // the host API's base URL once listening
	reg     *register.Client
}

// New checks cfg (defaults applied) and returns a Daemon ready to Run.
// An invalid config reports every problem at once (ErrInvalidConfig).
func New(cfg Config, logger *slog.Logger) (*Daemon, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	return &Daemon{
		cfg: cfg, version: version, ready: make(chan struct{}),
		log: logger.With("component", "daemon", "host", cfg.HostID),
	}, nil
}

// Config returns the effective configuration (defaults applied).
func (d *Daemon) Config() Config { return d.cfg }

// Ready is closed once the host API accepts requests.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Address returns the host API's advertised base URL; valid after Ready.
func (d *Daemon) Address() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// Registration returns the registration client's status; Registered is
// false before Run registered and when running standalone.
func (d *Daemon) Registration() register.Status {
	d.mu.Lock()
	rc := d.reg
	d.mu.Unlock()
	if rc == nil {
		return register.Status{}
	}
	return rc.Status()
}

// closers runs shutdown steps in reverse order of registration, joining
// their errors.
type closers []func() error

func (c *closers) add(f func() error) { *c = append(*c, f) }

func (c closers) run() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

// Run builds the host's parts, serves the host API and registers with the
// server until ctx is cancelled, then shuts everything down. It returns
// nil after a clean shutdown, or the first failure to start (having undone
// what was started) or to serve.
func (d *Daemon) Run(ctx context.Context) (err error) {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("host daemon: Run called twice")
	}
	cfg, log := d.cfg, d.log
	// gin's debug mode prints every route and a warning on stdout; a
	// daemon's output is its JSON log. GIN_MODE still wins when set.
	if gin.Mode() == gin.DebugMode {
		gin.SetMode(gin.ReleaseMode)
	}
	var down closers
	defer func() {
		if cerr := down.run(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("shutdown: %w", cerr))
		}
	}()

	met, err := hostapi.NewMetrics()
	if err != nil {
		return err
	}
	down.add(func() error { return met.Shutdown(context.Background()) })
	meter := met.Provider.Meter("github.com/hangar-vm/hangar/vmhost")

	store, err := storeconfig.Open(ctx, cfg.Store, meter, log)
	if err != nil {
		return err
	}
	ch, err := cache.Open(cfg.cacheDir(), cfg.Cache.MaxBytes, cache.WithLogger(log), cache.WithMeter(meter))
	if err != nil {
		return fmt.Errorf("open chunk cache: %w", err)
	}
	down.add(ch.Close)
	repo, err := snapshot.New(store, snapshot.Config{Logger: log, Meter: meter})
	if err != nil {
		return err
	}
	img, err := d.image(ctx)
	if err != nil {
		return err
	}
	qs := cfg.qemuSettings()
	qs.Logger = log
	drv, err := qemu.New(ctx, qs)
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	var mgr *manager.Manager
	// Runs after drv.Close: the lazy servers of the VMs it killed end.
	down.add(func() error {
		if mgr != nil {
			mgr.EndLazyServers()
		}
		return nil
	})
	down.add(drv.Close) // kills the VMs it still runs
	mgr, err = manager.Open(ctx, cfg.managerConfig(qs), manager.Deps{Hypervisor: drv, Image: img, Repo: repo, Cache: ch, Logger: log, Meter: meter})
	if err != nil {
		return fmt.Errorf("open instance manager: %w", err)
	}
	down.add(mgr.Close)

	capacity := api.Resources{MemoryMib: cfg.Capacity.MemoryMiB, Vcpus: cfg.Capacity.VCPUs}
	srv, err := hostapi.New(mgr, hostapi.Options{
		HostID: cfg.HostID, Token: cfg.ClusterToken, ImageDigest: img.Digest,
		Capacity: capacity, Version: d.version, Cache: ch, Metrics: met.Handler,
		Health: d.health, Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	addr := cfg.AdvertiseAddress
	if addr == "" {
		addr = "http://" + ln.Addr().String()
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	down.add(func() error {
		srv.Close() // cancel operations in flight: a boot must not hold shutdown
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})

	regCtx, stopReg := context.WithCancel(ctx)
	var regDone sync.WaitGroup
	down.add(func() error { stopReg(); regDone.Wait(); return nil })
	if cfg.ServerURL != "" {
		rc, err := register.New(register.Config{
			ServerURL: cfg.ServerURL, Token: cfg.ClusterToken, HostID: cfg.HostID, Address: addr,
			Capacity: capacity, Version: d.version,
			ImageDigests: map[string]string{hostapi.DefaultImageName: img.Digest},
		}, srv, log)
		if err != nil {
			return err
		}
		regDone.Add(1)
		go func() { defer regDone.Done(); rc.Run(regCtx) }()
		d.mu.Lock()
		d.reg = rc
		d.mu.Unlock()
	} else {
		log.Warn("no server_url: running standalone, not registering")
	}

	d.mu.Lock()
	d.addr = addr
	d.mu.Unlock()
	close(d.ready)
	log.Info("host daemon running", "listen", ln.Addr().String(), "address", addr, "image", img.Digest,
		"accel", qs.Accel, "capacity_mib", capacity.MemoryMib, "capacity_vcpus", capacity.Vcpus, "version", d.version)

	select {
	case <-ctx.Done():
		log.Info("host daemon stopping", "cause", context.Cause(ctx))
		return nil
	case err := <-serveErr:
		return fmt.Errorf("serve host API: %w", err)
	}
}

// image loads the configured guest image, or builds it (reusing the
// image cache when the inputs did not change).
func (d *Daemon) image(ctx context.Context) (guest.Image, error) {
	c := d.cfg.Image
	if c.Dir != "" {
		img, err := guest.Load(c.Dir)
		if err != nil {
			return guest.Image{}, fmt.Errorf("load guest image: %w", err)
		}
		return img, nil
	}
	img, err := guest.Build(ctx, guest.BuildOptions{KernelDir: c.KernelDir, Busybox: c.Busybox, Agent: c.Agent, CacheDir: c.CacheDir, Logger: d.log})
	if err != nil {
		return guest.Image{}, fmt.Errorf("build guest image: %w", err)
	}
	return img, nil
}

// minFreeFraction is the free space of the data directory's filesystem
// below which the host reports itself degraded.
const minFreeFraction = 0.05

// health is the host's self-assessment for heartbeats: degraded when the
// data directory's disk is almost full.
func (d *Daemon) health() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.cfg.DataDir, &st); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if st.Blocks > 0 && float64(st.Bavail)/float64(st.Blocks) < minFreeFraction {
		return fmt.Errorf("data_dir %s: %d MiB free of %d MiB", d.cfg.DataDir, st.Bavail*uint64(st.Bsize)>>20, st.Blocks*uint64(st.Bsize)>>20)
	}
	return nil
}
