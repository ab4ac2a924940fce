package register

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// Reporter builds the body of a heartbeat: the host's instances,
// snapshots, running jobs, cache summary, health and resources. Run calls
// it on its own goroutine, once per heartbeat; SentAt is filled in by the
// Client.
type Reporter interface {
	Report(ctx context.Context) (hostapi.Heartbeat, error)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ctx context.Context) (hostapi.Heartbeat, error)

// Report calls f.
func (f ReporterFunc) Report(ctx context.Context) (hostapi.Heartbeat, error) { return f(ctx) }

// Status is what the Client knows about its standing with the server.
type Status struct {
	// Registered: the last registration succeeded and no heartbeat since
	// was answered not_found.
	Registered bool
	// LastContact is when the server last answered a registration or
	// heartbeat with success; zero if never.
	LastContact time.Time
	// LastError is the error of the last failed attempt, nil after a
	// success.
	LastError error
	// Interval is the heartbeat interval in force.
	Interval time.Duration
}

// Client registers a host with the server and heartbeats. Create it with
// New and drive it with Run.
type Client struct {
	cfg    Config
	report Reporter
	c      *hostapi.ClientWithResponses
	log    *slog.Logger

	mu     sync.Mutex
	status Status
}

// New returns a Client for cfg (defaults applied, then validated).
func New(cfg Config, report Reporter, logger *slog.Logger) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if report == nil {
		return nil, fmt.Errorf("%w: no reporter", ErrInvalidConfig)
	}
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "register", "host", cfg.HostID)

	rc := retryablehttp.NewClient()
	rc.RetryMax = cfg.RequestRetries
	rc.RetryWaitMin = cfg.RetryMin
	rc.RetryWaitMax = cfg.RetryMax
	rc.CheckRetry = checkRetry
	rc.Backoff = retryBackoff
	// Hand the last answer back as it is, so its {code, message} says why.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.Logger = log
	hc := rc.StandardClient()
	hc.Timeout = cfg.RequestTimeout

	token := cfg.Token.Reveal()
	c, err := hostapi.NewClientWithResponses(cfg.ServerURL,
		hostapi.WithHTTPClient(hc),
		hostapi.WithRequestEditorFn(hostapi.RequestEditorFn(api.BearerAuth(token))))
	if err != nil {
		return nil, fmt.Errorf("%w: server URL %q: %w", ErrInvalidConfig, cfg.ServerURL, err)
	}
	return &Client{cfg: cfg, report: report, c: c, log: log, status: Status{Interval: cfg.Interval}}, nil
}

// checkRetry is the one place that decides whether a request is retried
// inside a call: never once ctx is done; after a transport error, a 429 or
// a 5xx other than 501, yes; any other answer is the server's decision.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests ||
		(resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented) {
		return true, nil
	}
	return false, nil
}

// Status returns the Client's standing with the server.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Run registers, then heartbeats until ctx is done, and returns nil then.
// Failures are logged and retried with backoff; a heartbeat answered
// not_found registers again.
func (c *Client) Run(ctx context.Context) error {
	registered, justRegistered := false, false
	failures := 0
	for {
		var (
			interval time.Duration
			err      error
		)
		if !registered {
			interval, err = c.Register(ctx)
			if err == nil {
				registered, justRegistered = true, true
				failures = 0
				// Heartbeat right away: the server learns the host's state
				// without waiting one interval.
				continue
			}
		} else {
			interval, err = c.Heartbeat(ctx)
			fresh := justRegistered
			justRegistered = false
			if errors.Is(err, api.ErrNotFound) {
				c.log.Warn("server does not know this host; registering again", "err", err)
				registered = false
				c.setStatus(false, err, 0)
				if !fresh {
					continue
				}
				// Forgotten right after registering: a confused server;
				// back off instead of spinning.
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := interval
		if err != nil {
			wait = backoff(c.cfg.RetryMin, 8*c.cfg.RetryMax, failures)
			failures++
			c.log.Warn("server unreachable or refusing", "registered", registered, "attempt", failures, "retry_in", wait, "err", err)
		} else {
			failures = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Register announces the host once (its request retried inside) and
// returns the heartbeat interval the server asks for.
func (c *Client) Register(ctx context.Context) (time.Duration, error) {
	req := hostapi.RegisterRequest{Id: c.cfg.HostID, Address: c.cfg.Address, Capacity: c.cfg.Capacity}
	if c.cfg.Version != "" {
		v := c.cfg.Version
		req.Version = &v
	}
	if len(c.cfg.ImageDigests) > 0 {
		d := make(map[string]string, len(c.cfg.ImageDigests))
		for k, v := range c.cfg.ImageDigests {
			d[k] = v
		}
		req.ImageDigests = &d
	}
	rsp, err := c.c.RegisterHostWithResponse(ctx, req)
	if err == nil {
		err = api.FromResponse(rsp.StatusCode(), rsp.Body)
		if err == nil && rsp.JSON200 == nil {
			err = fmt.Errorf("answer %d without a JSON body", rsp.StatusCode())
		}
	}
	if err != nil {
		err = fmt.Errorf("register host %s with %s: %w", c.cfg.HostID, c.cfg.ServerURL, err)
		c.setStatus(false, err, 0)
		return 0, err
	}
	interval := c.interval(rsp.JSON200.HeartbeatIntervalSeconds)
	c.setStatus(true, nil, interval)
	c.log.Info("registered with the server", "server", c.cfg.ServerURL, "address", c.cfg.Address, "heartbeat_interval", interval)
	return interval, nil
}

// Heartbeat sends one report (its request retried inside) and returns
// the heartbeat interval the server asks for. An error matching
// api.ErrNotFound means the server does not know the host.
func (c *Client) Heartbeat(ctx context.Context) (time.Duration, error) {
	hb, err := c.report.Report(ctx)
	if err != nil {
		err = fmt.Errorf("heartbeat: build report: %w", err)
		c.setStatus(true, err, 0)
		return 0, err
	}
	hb.SentAt = time.Now().UTC()
	rsp, err := c.c.HeartbeatHostWithResponse(ctx, c.cfg.HostID, hb)
	if err == nil {
		err = api.FromResponse(rsp.StatusCode(), rsp.Body)
		if err == nil && rsp.JSON200 == nil {
			err = fmt.Errorf("answer %d without a JSON body", rsp.StatusCode())
		}
	}
	if err != nil {
		err = fmt.Errorf("heartbeat of host %s to %s: %w", c.cfg.HostID, c.cfg.ServerURL, err)
		c.setStatus(!errors.Is(err, api.ErrNotFound), err, 0)
		return 0, err
	}
	interval := c.interval(rsp.JSON200.HeartbeatIntervalSeconds)
	c.setStatus(true, nil, interval)
	c.log.Debug("heartbeat sent", "instances", len(hb.Instances), "jobs", len(hb.Jobs))
	return interval, nil
}

// interval turns the server's heartbeat_interval_seconds into a duration,
// keeping the configured one when the server sends nonsense.
func (c *Client) interval(secs int32) time.Duration {
	if secs < 1 || secs > 3600 {
		c.log.Warn("server sent an invalid heartbeat interval; keeping the configured one", "seconds", secs, "interval", c.cfg.Interval)
		return c.cfg.Interval
	}
	return time.Duration(secs) * time.Second
}

func (c *Client) setStatus(registered bool, err error, interval time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Registered = registered
	c.status.LastError = err
	if err == nil {
		c.status.LastContact = time.Now()
	}
	if interval > 0 {
		c.status.Interval = interval
	}
}
