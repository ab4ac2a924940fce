package devenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/server"
	"github.com/hangar-vm/hangar/storage/storeconfig"
	"github.com/hangar-vm/hangar/vmhost/daemon"
	"github.com/hangar-vm/hangar/vmhost/guest"
)

// Info describes a running dev cluster, for the operator.
type Info struct {
	// URL is the server's base URL, UserToken the bearer token of the API.
	URL       string
	UserToken config.Secret
	// Hosts are the host daemons, in order.
	Hosts []HostInfo
	// Store says where the central store is: "fs <dir>" or
	// "s3 <endpoint>/<bucket>".
	Store string
	// Dir is the dev directory, Accel the QEMU accelerator, ImageDigest
	// the guest image every host runs.
	Dir, Accel, ImageDigest string
}

// HostInfo is one host daemon of the cluster.
type HostInfo struct {
	ID      string
	Address string // host API base URL
	DataDir string
}

// Stopping is what Config.OnStop is told when the context ends: the
// instances whose VMs are about to be stopped, and those that stay parked.
type Stopping struct {
	Running []api.Instance // Running or Creating: stopped, memory lost
	Parked  []api.Instance // Standby: kept in the store and on local disk
	Err     error          // the instances could not be listed
}

// readyTimeout bounds the wait for every host to register once they all
// run (registration retries with backoff; a host that cannot reach the
// server in this time will not).
const readyTimeout = 2 * time.Minute

// stopListTimeout bounds the listing of instances at shutdown.
const stopListTimeout = 5 * time.Second

// Run builds the guest image (cached), starts the server and the hosts,
// calls cfg.OnReady once every host has registered, and runs until ctx
// ends; then it calls cfg.OnStop, stops the hosts and then the server. It
// returns nil after a shutdown asked for by ctx, or the error of the
// component that failed (everything else is stopped first).
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger.With("component", "dev")
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("dev dir: %w", err)
	}
	tokens, err := loadTokens(cfg.Dir)
	if err != nil {
		return err
	}
	img, err := image(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server listen %s: %w", cfg.Listen, err)
	}
	url := "http://" + ln.Addr().String()
	info := Info{URL: url, UserToken: tokens.User, Dir: cfg.Dir, Accel: cfg.Accel, ImageDigest: img.Digest}

	scfg := server.Config{
		Listen:   ln.Addr().String(),
		Auth:     server.AuthConfig{UserToken: tokens.User, ClusterToken: tokens.Cluster},
		StateDir: filepath.Join(cfg.Dir, "server"),
	}
	// The server and the hosts share one store section.
	var hstore storeconfig.Config
	if cfg.S3.Endpoint != "" {
		hstore = storeconfig.Config{Kind: storeconfig.KindS3, S3: cfg.S3}
		info.Store = "s3 " + cfg.S3.Endpoint + "/" + cfg.S3.Bucket
	} else {
		dir := filepath.Join(cfg.Dir, "store")
		hstore = storeconfig.Config{Kind: storeconfig.KindFS, Dir: dir}
		info.Store = "fs " + dir
	}
	scfg.Store = hstore
	srv, err := server.New(scfg, server.WithLogger(cfg.Logger), server.WithVersion(cfg.Version))
	if err != nil {
		ln.Close()
		return err
	}

	daemons := make([]*daemon.Daemon, cfg.Hosts)
	for i := range daemons {
		id := "host-" + strconv.Itoa(i+1)
		listen := "127.0.0.1:0"
		if cfg.HostPort != 0 {
			listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HostPort+i))
		}
		dataDir := filepath.Join(cfg.Dir, "hosts", id)
		d, err := daemon.New(daemon.Config{
			HostID: id, Listen: listen, ServerURL: url, ClusterToken: tokens.Cluster,
			DataDir: dataDir, Store: hstore,
			QEMU:     daemon.QEMUConfig{Accel: cfg.Accel},
			Restore:  daemon.RestoreConfig{Lazy: cfg.LazyRestore},
			Image:    daemon.ImageConfig{Dir: img.Dir},
			Capacity: daemon.CapacityConfig{MemoryMiB: cfg.HostMemoryMiB},
		}, cfg.Logger)
		if err != nil {
			ln.Close()
			srv.Close()
			return fmt.Errorf("%s: %w", id, err)
		}
		daemons[i] = d
		info.Hosts = append(info.Hosts, HostInfo{ID: id, DataDir: dataDir})
	}

	// The server outlives the hosts: they stop first, so that their last
	// heartbeats do not fail against a server that is gone.
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrv()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(srvCtx, ln) }()

	hostsCtx, stopHosts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHosts()
	failed := make(chan error, len(daemons)+1) // a component that ended on its own
	var hosts sync.WaitGroup
	for i, d := range daemons {
		hosts.Add(1)
		go func() {
			defer hosts.Done()
			err := d.Run(hostsCtx)
			if hostsCtx.Err() == nil {
				if err == nil {
					err = errors.New("stopped on its own")
				}
				failed <- fmt.Errorf("%s: %w", info.Hosts[i].ID, err)
			} else if err != nil {
				log.Warn("host stopped with an error", "host", info.Hosts[i].ID, "err", err)
			}
		}()
	}
	srvExited := false
	shutdown := func() error {
		stopHosts()
		hosts.Wait()
		stopSrv()
		var err error
		if !srvExited {
			err = <-srvDone
		}
		return errors.Join(err, srv.Close())
	}

	client, err := api.NewClientWithResponses(url,
		api.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}),
		api.WithRequestEditorFn(api.BearerAuth(tokens.User.Reveal())))
	if err != nil {
		return errors.Join(err, shutdown())
	}

	var runErr error
	watch := func() bool { // reports whether a component failed
		select {
		case runErr = <-failed:
		case runErr = <-srvDone:
			srvExited = true
			runErr = fmt.Errorf("server: %w", runErr)
		default:
			return false
		}
		return true
	}
	if err := waitReady(ctx, client, daemons, watch); err != nil {
		if runErr == nil && ctx.Err() == nil {
			runErr = err
		}
	} else {
		for i, d := range daemons {
			info.Hosts[i].Address = d.Address()
		}
		log.Info("dev cluster ready", "url", url, "hosts", len(daemons), "store", info.Store, "accel", cfg.Accel, "dir", cfg.Dir)
		if cfg.OnReady != nil {
			cfg.OnReady(info)
		}
		select {
		case <-ctx.Done():
		case runErr = <-failed:
		case runErr = <-srvDone:
			srvExited = true
			runErr = fmt.Errorf("server: %w", runErr)
		}
	}
	if runErr == nil && cfg.OnStop != nil {
		cfg.OnStop(stopping(client))
	}
	log.Info("dev cluster stopping", "cause", context.Cause(ctx), "err", runErr)
	if err := shutdown(); err != nil && !errors.Is(err, context.Canceled) {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}

// image loads cfg.ImageDir or builds the default image once for all hosts
// (building it in every host would compile the agent N times and race on
// the image cache).
func image(ctx context.Context, cfg Config) (guest.Image, error) {
	if cfg.ImageDir != "" {
		img, err := guest.Load(cfg.ImageDir)
		if err != nil {
			return guest.Image{}, fmt.Errorf("load guest image: %w", err)
		}
		return img, nil
	}
	cfg.Logger.Info("building the guest image (cached after the first start)", "component", "dev")
	img, err := guest.Build(ctx, guest.BuildOptions{Logger: cfg.Logger})
	if err != nil {
		return guest.Image{}, fmt.Errorf("build guest image: %w", err)
	}
	return img, nil
}

// waitReady waits until every daemon serves its API and every host shows
// as available in the server's registry. failed reports whether a
// component ended; waitReady then returns at once.
func waitReady(ctx context.Context, client *api.ClientWithResponses, daemons []*daemon.Daemon, failed func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for _, d := range daemons {
		for waiting := true; waiting; {
			select {
			case <-d.Ready():
				waiting = false
			case <-ctx.Done():
				return fmt.Errorf("waiting for the hosts to start: %w", context.Cause(ctx))
			case <-tick.C:
				if failed() {
					return errors.New("a component failed")
				}
			}
		}
	}
	for {
		rsp, err := client.ListHostsWithResponse(ctx)
		if err == nil && rsp.JSON200 != nil {
			n := 0
			for _, h := range rsp.JSON200.Items {
				if h.State == api.HostStateAvailable {
					n++
				}
			}
			if n >= len(daemons) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the hosts to register: %w", context.Cause(ctx))
		case <-tick.C:
			if failed() {
				return errors.New("a component failed")
			}
		}
	}
}

// stopping lists what a shutdown stops and what stays parked.
func stopping(client *api.ClientWithResponses) Stopping {
	ctx, cancel := context.WithTimeout(context.Background(), stopListTimeout)
	defer cancel()
	rsp, err := client.ListInstancesWithResponse(ctx, nil)
	if err != nil {
		return Stopping{Err: err}
	}
	if rsp.JSON200 == nil {
		return Stopping{Err: fmt.Errorf("list instances: HTTP %d", rsp.StatusCode())}
	}
	var s Stopping
	for _, in := range rsp.JSON200.Items {
		switch in.State {
		case api.InstanceStateRunning, api.InstanceStateCreating:
			s.Running = append(s.Running, in)
		case api.InstanceStateStandby:
			s.Parked = append(s.Parked, in)
		}
	}
	return s
}
