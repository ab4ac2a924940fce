package cache

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/hangar-vm/hangar/storage/chunk"
)

// DefaultTouchInterval is how often, at most, a Get writes an entry's
// recency to disk (its mtime). A minute keeps hits free of metadata writes
// under load while keeping the order rebuilt after a restart close to the
// real one: entries used within the same minute may swap places.
const DefaultTouchInterval = time.Minute

// Option configures Open.
type Option func(*options)

type options struct {
	meter         metric.Meter
	logger        *slog.Logger
	touchInterval time.Duration
	sync          bool
	// fillQueueBytes bounds Offer's queue (DefaultFillQueueBytes).
	fillQueueBytes int64
	beforeFill     func(chunk.ID)   // tests hold the background writer here
	now            func() time.Time // tests replace the clock
}

// defaults are the one place the options' defaults are set.
func defaults() options {
	return options{
		logger:         slog.New(slog.DiscardHandler),
		touchInterval:  DefaultTouchInterval,
		fillQueueBytes: DefaultFillQueueBytes,
		now:            time.Now,
	}
}

// WithMeter records hits, misses and evictions as counters and the cached
// bytes and entries as gauges on m. A nil m (the default) records nothing.
func WithMeter(m metric.Meter) Option { return func(o *options) { o.meter = m } }

// WithLogger logs through l, with the attribute component=cache. A nil l
// (the default) discards logs.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithTouchInterval sets how often, at most, a Get writes an entry's recency
// to disk (DefaultTouchInterval if unset). Zero writes it on every hit;
// a negative interval is an error from Open.
func WithTouchInterval(d time.Duration) Option { return func(o *options) { o.touchInterval = d } }

// WithSync makes Put fsync each entry before renaming it into place. Off by
// default: see the package documentation for why a cache can do without.
func WithSync(on bool) Option { return func(o *options) { o.sync = on } }

// WithFillQueue bounds the bytes of chunks that Offer holds in memory until
// its background writer has put them on disk (DefaultFillQueueBytes if
// unset). Offer drops what does not fit. Zero makes Offer drop everything
// it cannot mark as already cached; a negative bound is an error from
// Open.
func WithFillQueue(maxBytes int64) Option { return func(o *options) { o.fillQueueBytes = maxBytes } }
