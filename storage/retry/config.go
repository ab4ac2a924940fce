package retry

import (
	"errors"
	"fmt"
	"time"
)

// Config sets the retry budget and backoff. Start from DefaultConfig.
type Config struct {
	// MaxAttempts bounds the attempts per call, the first one included.
	MaxAttempts int `json:"max_attempts"`
	// MaxElapsed bounds the time from the first attempt to the start of
	// the last one: no retry starts after it.
	MaxElapsed time.Duration `json:"max_elapsed"`
	// InitialBackoff is the wait before the first retry; each further
	// wait is Multiplier times longer, up to MaxBackoff.
	InitialBackoff time.Duration `json:"initial_backoff"`
	MaxBackoff     time.Duration `json:"max_backoff"`
	Multiplier     float64       `json:"multiplier"`
	// Jitter is the fraction of each wait that is random (0 = none,
	// 1 = anywhere between zero and the full wait), so that many clients
	// that failed together do not retry together.
	Jitter float64 `json:"jitter"`

	// OnRetry, if set, is called before each retry with the operation
	// ("get", "put", "create", "stat", "list", "delete"), the number of the
	// attempt that failed and its error. The metrics wrapper's CountRetry
	// fits here. It must be safe for concurrent use.
	OnRetry func(op string, attempt int, err error) `json:"-"`
}

// DefaultConfig returns the defaults: 8 attempts within 2 minutes, waits
// from 100ms doubling to 10s, half of each wait random.
func DefaultConfig() Config {
	return Config{
		MaxAttempts:    8,
		MaxElapsed:     2 * time.Minute,
		InitialBackoff: 100 * time.Millisecond,
		MaxBackoff:     10 * time.Second,
		Multiplier:     2,
		Jitter:         0.5,
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max_attempts %d: must be at least 1", c.MaxAttempts))
	}
	if c.MaxElapsed <= 0 {
		errs = append(errs, fmt.Errorf("max_elapsed %v: must be positive", c.MaxElapsed))
	}
	if c.InitialBackoff <= 0 {
		errs = append(errs, fmt.Errorf("initial_backoff %v: must be positive", c.InitialBackoff))
	}
	if c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, fmt.Errorf("max_backoff %v: must be at least initial_backoff %v", c.MaxBackoff, c.InitialBackoff))
	}
	if c.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("multiplier %v: must be at least 1", c.Multiplier))
	}
	if c.Jitter < 0 || c.Jitter > 1 {
		errs = append(errs, fmt.Errorf("jitter %v: must be in [0, 1]", c.Jitter))
	}
	if len(errs) > 0 {
		return fmt.Errorf("retry config: %w", errors.Join(errs...))
	}
	return nil
}
