package register

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/config"
)

// Config says whom to register with and as what. WithDefaults is the one
// place defaults live; Validate reports every problem at once.
type Config struct {
	// ServerURL is the base URL of the hangar server, such as
	// http://127.0.0.1:7080.
	ServerURL string
	// Token is the cluster token, sent as a bearer token.
	Token config.Secret
	// HostID is this host's id, stable across restarts.
	HostID string
	// Address is the base URL at which the server reaches this host's API.
	Address string
	// Capacity is what the host offers to guests.
	Capacity api.Resources
	// Version of the host daemon; optional.
	Version string
	// ImageDigests maps the guest image names this host boots to their
	// digests ("default" → "sha256:...").
	ImageDigests map[string]string

	// Interval is the heartbeat interval until the server says otherwise;
	// default 10s.
	Interval time.Duration
	// RequestTimeout bounds one request, its retries included; default 30s.
	RequestTimeout time.Duration
	// RequestRetries is how many times go-retryablehttp retries one
	// request after a transport error, 429 or 5xx; default 3.
	RequestRetries int
	// RetryMin and RetryMax bound the backoff between retries, inside a
	// request and (doubling up to RetryMax·8) between failed attempts of
	// Run's loop; defaults 200ms and 5s.
	RetryMin, RetryMax time.Duration
}

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.RequestRetries == 0 {
		c.RequestRetries = 3
	}
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	return c
}

// ErrInvalidConfig wraps every problem Validate finds.
var ErrInvalidConfig = errors.New("invalid registration config")

// Validate reports every problem with c at once, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if err := validateURL("server URL", c.ServerURL); err != nil {
		errs = append(errs, err)
	}
	if c.Token == "" {
		errs = append(errs, errors.New("cluster token is required"))
	}
	if err := api.ValidateID("host", c.HostID); err != nil {
		errs = append(errs, err)
	}
	if err := validateURL("advertised address", c.Address); err != nil {
		errs = append(errs, err)
	}
	if c.Capacity.MemoryMib <= 0 || c.Capacity.Vcpus <= 0 {
		errs = append(errs, fmt.Errorf("capacity %d MiB / %d vCPUs: both must be positive", c.Capacity.MemoryMib, c.Capacity.Vcpus))
	}
	if c.Interval < 0 || c.RequestTimeout < 0 || c.RetryMin < 0 {
		errs = append(errs, errors.New("interval, request timeout and retry durations must not be negative"))
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("retry max %v is below retry min %v", c.RetryMax, c.RetryMin))
	}
	if c.RequestRetries < 0 || c.RequestRetries > 100 {
		errs = append(errs, fmt.Errorf("request retries %d out of range [0, 100]", c.RequestRetries))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// validateURL checks an absolute http(s) base URL.
func validateURL(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", what)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: want an http:// or https:// URL with a host", what, s)
	}
	return nil
}
