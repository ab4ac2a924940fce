package storeconfig

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/metrics"
	"github.com/hangar-vm/hangar/storage/retry"
	"github.com/hangar-vm/hangar/storage/s3"
)

// Open opens the backend cfg names (defaults applied, validated) and
// stacks the wrappers on it, in this one place: retry(metrics(backend)),
// so that every attempt is measured and every retry counted. A nil meter
// records nothing; a nil log is slog.Default.
func Open(ctx context.Context, cfg Config, meter metric.Meter, log *slog.Logger) (storage.Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("")
	}
	if log == nil {
		log = slog.Default()
	}
	var backend storage.Store
	switch cfg.EffectiveKind() {
	case KindS3:
		c := cfg.S3
		if c.Logger == nil {
			c.Logger = log
		}
		st, err := s3.Open(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("open s3 store %s/%s: %w", c.Endpoint, c.Bucket, err)
		}
		backend = st
	case KindFS:
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("open fs store: %w", err)
		}
		st, err := fs.Open(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("open fs store %s: %w", cfg.Dir, err)
		}
		backend = st
	}
	measured, err := metrics.New(backend, meter)
	if err != nil {
		return nil, err
	}
	rc := cfg.Retry
	rc.OnRetry = measured.CountRetry
	return retry.New(measured, rc, log)
}
