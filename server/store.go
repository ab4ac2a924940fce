package server

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

// OpenStore opens the central store cfg names and stacks its wrappers, in
// this one place: retry(metrics(backend)), so that every attempt is
// measured and every retry counted (restic's wrapBackend). A nil meter
// records nothing.
func OpenStore(ctx context.Context, cfg StoreConfig, meter metric.Meter, log *slog.Logger) (storage.Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("")
	}
	var backend storage.Store
	switch cfg.Kind {
	case StoreS3:
		c := cfg.S3
		if c.Logger == nil {
			c.Logger = log
		}
		st, err := s3.Open(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("open s3 store %s/%s: %w", c.Endpoint, c.Bucket, err)
		}
		backend = st
	case StoreFS:
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
	rc := retry.DefaultConfig()
	rc.OnRetry = measured.CountRetry
	return retry.New(measured, rc, log)
}

func mkdirState(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}
