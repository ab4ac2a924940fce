package hostapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// Manager is what the host API needs of the instance manager;
// *manager.Manager implements it. Its errors carry the manager's
// sentinels, which toAPIError maps onto api codes.
type Manager interface {
	Create(ctx context.Context, spec manager.CreateSpec) (manager.Instance, error)
	Get(ctx context.Context, id string) (manager.Instance, error)
	List(ctx context.Context) ([]manager.Instance, error)
	Standby(ctx context.Context, id string, opts manager.StandbyOptions) (manager.Instance, error)
	Restore(ctx context.Context, id string) (manager.Instance, error)
	RestoreSnapshot(ctx context.Context, snapshotID string, spec manager.ForkSpec) (manager.Instance, error)
	Rollback(ctx context.Context, id, snapshotID string) (manager.Instance, error)
	Fork(ctx context.Context, source string, spec manager.ForkSpec) (manager.Instance, error)
	Delete(ctx context.Context, id string) error
	Jobs(ctx context.Context) ([]manager.Job, error)
}

var _ Manager = (*manager.Manager)(nil)

// CacheStats is the host chunk cache as the heartbeat reports it;
// *cache.Cache implements it.
type CacheStats interface{ Stats() cache.Stats }

var _ CacheStats = (*cache.Cache)(nil)

// DefaultMaxBodyBytes bounds request bodies: the largest legitimate one
// (a restore request) is well under 1 KiB.
const DefaultMaxBodyBytes = 64 << 10

// DefaultImageName is the name of the host's guest image.
const DefaultImageName = "default"

// Options configure a Server.
type Options struct {
	// HostID is this host's id (the host field of instances, the hosts
	// of snapshots).
	HostID string
	// Token is the cluster token every /host/v1 request must bear.
	Token config.Secret
	// ImageName is the name the server uses for this host's guest image
	// (default "default"); ImageDigest its digest.
	ImageName   string
	ImageDigest string
	// Capacity is the memory and vCPUs the host offers to guests; zero
	// fields are not checked.
	Capacity api.Resources
	// Version is reported by /healthz.
	Version string
	// Cache, if set, is summarised in heartbeats.
	Cache CacheStats
	// Metrics, if set, serves GET /metrics (see NewMetrics).
	Metrics http.Handler
	// MaxBodyBytes bounds request bodies; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Health, if set, is consulted by heartbeats: a non-nil error makes the
	// host report itself degraded with that message (the daemon passes
	// the registration status, for instance).
	Health func() error
	Logger *slog.Logger
}

// Server implements the host API over a Manager.
type Server struct {
	m    Manager
	opts Options
	log  *slog.Logger

	// life ends with Close: the long operations run under it rather than
	// under the caller's request.
	life context.Context
	stop context.CancelFunc

	mu       sync.Mutex
	reserved map[string]api.Resources // capacity held by creates in flight
}

var _ hostapi.StrictServerInterface = (*Server)(nil)

// ErrInvalidOptions reports a Server misconfiguration.
var ErrInvalidOptions = errors.New("invalid host API options")

// New returns a Server for m.
func New(m Manager, opts Options) (*Server, error) {
	var errs []error
	if m == nil {
		errs = append(errs, errors.New("no manager"))
	}
	if err := api.ValidateID("host", opts.HostID); err != nil {
		errs = append(errs, err)
	}
	if opts.Token == "" {
		errs = append(errs, errors.New("no cluster token"))
	}
	if opts.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d is negative", opts.MaxBodyBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if opts.ImageName == "" {
		opts.ImageName = DefaultImageName
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	life, stop := context.WithCancel(context.Background())
	return &Server{
		m: m, opts: opts, log: opts.Logger.With("component", "hostapi"),
		life: life, stop: stop, reserved: map[string]api.Resources{},
	}, nil
}

// Close cancels the operations in flight (they answer 503
// host_unavailable) and refuses new ones. The daemon calls it before
// shutting the HTTP server down, so that shutdown does not wait for a
// guest to boot.
func (s *Server) Close() { s.stop() }

// Handler returns the gin engine serving /healthz, /metrics and /host/v1.
func (s *Server) Handler() http.Handler {
	r := gin.New()
	// Route on the raw path so that an escaped slash stays inside its
	// segment: "/host/v1/instances/..%2Fx" is a bad id (400), not a miss.
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	// Authentication comes before anything reads the body or the path
	// parameters: a caller without the token learns nothing else.
	auth := bearerAuth(s.opts.Token.Reveal())
	r.Use(gin.Recovery(), s.accessLog, func(c *gin.Context) {
		if p := c.Request.URL.Path; p == "/healthz" || p == "/metrics" {
			return // open, like the spec's security: [] on /healthz
		}
		auth(c)
	}, strictBody(s.opts.MaxBodyBytes))
	r.NoRoute(func(c *gin.Context) {
		writeError(c, api.NewError(api.ErrorCodeNotFound, "no such path: %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		writeError(c, api.NewError(api.ErrorCodeInvalidRequest, "method %s not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})
	if s.opts.Metrics != nil {
		r.GET("/metrics", gin.WrapH(s.opts.Metrics))
	}
	strict := hostapi.NewStrictHandlerWithOptions(s, nil, hostapi.StrictGinServerOptions{
		RequestErrorHandlerFunc: func(c *gin.Context, err error) {
			writeError(c, fmt.Errorf("%w: request body: %v", api.ErrInvalidRequest, err))
		},
		HandlerErrorFunc:         writeError,
		ResponseErrorHandlerFunc: writeError,
	})
	hostapi.RegisterHandlersWithOptions(r, strict, hostapi.GinServerOptions{
		ErrorHandler: func(c *gin.Context, err error, status int) {
			writeError(c, api.NewError(api.CodeFor(status), "%v", err))
		},
	})
	return r
}

// writeError answers err as {code, message} with its status and stops the
// chain; accessLog logs it.
func writeError(c *gin.Context, err error) {
	e := toAPIError(err)
	c.Error(err)
	c.AbortWithStatusJSON(e.Status(), e)
}

// accessLog logs every API request at debug level, and the errors that
// are the host's fault (5xx) at error level.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	if p := c.Request.URL.Path; p == "/healthz" || p == "/metrics" {
		return
	}
	status := c.Writer.Status()
	attrs := []any{"method", c.Request.Method, "path", c.Request.URL.Path, "status", status, "duration", time.Since(start)}
	if err := c.Errors.Last(); err != nil {
		attrs = append(attrs, "err", err.Err)
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		s.log.Error("request failed", attrs...)
		return
	}
	s.log.Debug("request", attrs...)
}

// operation returns the context of a long operation: it keeps the
// caller's values but not its cancellation, and ends with Close.
func (s *Server) operation(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.life.Err() != nil {
		return nil, nil, errShuttingDown
	}
	op, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(s.life, func() { cancel(errShuttingDown) })
	return op, func() { stop(); cancel(nil) }, nil
}

// GetHostHealth answers that the daemon is up.
func (s *Server) GetHostHealth(context.Context, hostapi.GetHostHealthRequestObject) (hostapi.GetHostHealthResponseObject, error) {
	h := hostapi.GetHostHealth200JSONResponse{Status: api.HealthStatusOk}
	if s.opts.Version != "" {
		h.Version = ptr(s.opts.Version)
	}
	return h, nil
}
