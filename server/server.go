package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"
	promclient "github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/storeconfig"
)

// Server is hangar's control plane: the public API, the cluster endpoints
// of the host daemons, the host registry, placement and the catalog.
type Server struct {
	cfg          Config
	log          *slog.Logger
	now          func() time.Time
	dial         HostDialer
	version      string
	userToken    tokenHash
	clusterToken tokenHash

	manifests Manifests
	promReg   *promclient.Registry
	provider  *sdkmetric.MeterProvider
	met       *instruments
	handler   http.Handler

	mu        sync.Mutex
	hosts     map[string]*hostEntry
	instances map[string]*instanceRec
	snapshots map[string]*snapshotRec
	deleted   map[string]bool // instance ids deleted: never recovered again
	// pendingManifests are snapshots whose commit a heartbeat revealed:
	// their manifests are read at the next kick (readManifests).
	pendingManifests map[string]bool
	// forgets are host records of instances to drop (forgetLocked); true
	// while the call runs.
	forgets    map[forgetKey]bool
	forgetKick chan struct{}
	changed    chan struct{} // closed and replaced on every catalog change
	dirty      bool          // the state dir cache is behind

	syncKick  chan struct{}
	bg        context.Context
	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Option supplies a dependency to New.
type Option func(*options)

type options struct {
	logger    *slog.Logger
	dial      HostDialer
	store     storage.Store
	manifests Manifests
	now       func() time.Time
	version   string
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHostDialer sets how host clients are made (default: HTTPHostClient
// with the cluster token).
func WithHostDialer(d HostDialer) Option { return func(o *options) { o.dial = d } }

// WithStore uses store as the central store instead of opening
// Config.Store (hangar dev shares one store between its processes).
func WithStore(st storage.Store) Option { return func(o *options) { o.store = st } }

// WithClock sets the clock of host availability (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithVersion sets the version /healthz reports.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// recoverTimeout bounds the catalog recovery New does.
const recoverTimeout = 2 * time.Minute

// New validates cfg, opens the central store, and recovers the catalog:
// the state dir cache first, then every committed manifest in the bucket.
// A bucket that cannot be listed fails New: a server that started without
// its catalog would show users an empty fleet.
func New(cfg Config, opts ...Option) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	o := options{logger: slog.Default(), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{
		cfg:              cfg,
		log:              o.logger.With("component", "server"),
		now:              o.now,
		version:          o.version,
		userToken:        hashToken(cfg.Auth.UserToken.Reveal()),
		clusterToken:     hashToken(cfg.Auth.ClusterToken.Reveal()),
		hosts:            map[string]*hostEntry{},
		instances:        map[string]*instanceRec{},
		snapshots:        map[string]*snapshotRec{},
		deleted:          map[string]bool{},
		pendingManifests: map[string]bool{},
		forgets:          map[forgetKey]bool{},
		forgetKick:       make(chan struct{}, 1),
		changed:          make(chan struct{}),
		syncKick:         make(chan struct{}, 1),
	}
	s.dial = o.dial
	if s.dial == nil {
		s.dial = HTTPDialer(HTTPHostClientOptions{Token: cfg.Auth.ClusterToken, Timeout: time.Duration(cfg.Hosts.CallTimeout),
			Retries: cfg.Hosts.CallRetries, Logger: s.log})
	}

	s.promReg = promclient.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(s.promReg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	s.provider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	meter := s.provider.Meter("github.com/hangar-vm/hangar/server")
	if s.met, err = newInstruments(meter, s); err != nil {
		return nil, fmt.Errorf("server metrics: %w", err)
	}

	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	s.manifests = o.manifests
	if s.manifests == nil {
		st := o.store
		ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
		defer cancel()
		if st == nil {
			if st, err = storeconfig.Open(ctx, cfg.Store, meter, s.log); err != nil {
				return nil, err
			}
		}
		repo, err := snapshot.New(st, snapshot.Config{Logger: s.log, Meter: meter})
		if err != nil {
			return nil, err
		}
		s.manifests = repo
	}

	s.loadCatalog()
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	if err := s.syncCatalog(ctx); err != nil {
		return nil, fmt.Errorf("recover catalog from the bucket: %w", err)
	}
	s.handler = s.routes()
	s.bg, s.stop = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.background()
	go s.forgetter()
	return s, nil
}

// routes builds the gin engine: metrics, then the error mapper, then auth
// and the body limit around every route; the generated strict handler for
// the public API; the cluster endpoints by hand.
func (s *Server) routes() http.Handler {
	// gin's JSON decoding ignores unknown fields unless this is set; the
	// API rejects them. It is a package variable of gin: every gin server
	// of the process (hangar dev runs hosts too) gets the same rule.
	binding.EnableDecoderDisallowUnknownFields = true
	if gin.Mode() == gin.DebugMode {
		gin.SetMode(gin.ReleaseMode) // no route dump on stdout
	}
	r := gin.New()
	// Route on the raw path and unescape parameters afterwards, so that
	// an id such as "..%2Fetc" reaches the handler (and is refused there,
	// 400) instead of becoming a different path.
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.ContextWithFallback = true
	r.Use(s.metricsMiddleware, s.errorMiddleware, s.authMiddleware, s.bodyLimitMiddleware)
	strict := api.NewStrictHandlerWithOptions(&handlers{s: s}, nil, api.StrictGinServerOptions{
		RequestErrorHandlerFunc:  requestError,
		HandlerErrorFunc:         fail,
		ResponseErrorHandlerFunc: fail,
	})
	api.RegisterHandlersWithOptions(r, strict, api.GinServerOptions{
		ErrorHandler: func(c *gin.Context, err error, status int) {
			fail(c, api.NewError(api.CodeFor(status), "%v", err))
		},
	})
	r.POST("/cluster/v1/hosts", s.registerHost)
	r.PUT("/cluster/v1/hosts/:id/heartbeat", s.heartbeatHost)
	r.NoRoute(func(c *gin.Context) {
		fail(c, api.NewError(api.ErrorCodeNotFound, "no such endpoint: %s %s", c.Request.Method, truncate(c.Request.URL.Path, 200)))
	})
	return r
}

// Handler is the server's HTTP handler (public API and cluster
// endpoints), for Run or an httptest.Server.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves on cfg.Listen until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (such as port 0 in tests
// and hangar dev). It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: time.Duration(s.cfg.HTTP.ReadHeaderTimeout),
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.cfg.HTTP.ShutdownTimeout))
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Close stops the background work (catalog sync, cache writer) and writes
// the catalog cache a last time. The handler keeps answering from memory.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stop()
		s.wg.Wait()
		err = errors.Join(s.saveCatalog(), s.provider.Shutdown(context.Background()))
		s.log.Info("server closed", "catalog_saved", err == nil)
	})
	return err
}

// background reads the manifests of the snapshots heartbeats showed
// committed (soon after each heartbeat), syncs the whole catalog from the
// bucket every CatalogSync (a safety net for what no heartbeat said), and
// writes the state dir cache when it is behind.
func (s *Server) background() {
	defer s.wg.Done()
	syncT := time.NewTicker(time.Duration(s.cfg.CatalogSync))
	defer syncT.Stop()
	saveT := time.NewTicker(time.Second)
	defer saveT.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-syncT.C:
		case <-s.syncKick:
			s.readManifests(s.bg)
			continue
		case <-saveT.C:
			if err := s.saveCatalog(); err != nil {
				s.log.Warn("catalog cache not written", "err", err)
			}
			continue
		}
		if err := s.syncCatalog(s.bg); err != nil && s.bg.Err() == nil {
			s.log.Warn("catalog sync failed", "err", err)
		}
	}
}

// kickSync asks for the pending manifests to be read soon, without
// blocking.
func (s *Server) kickSync() {
	select {
	case s.syncKick <- struct{}{}:
	default:
	}
}

func resultAttr(r string) metric.AddOption {
	return metric.WithAttributes(attribute.String("result", r))
}
