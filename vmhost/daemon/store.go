package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/metric"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/metrics"
	"github.com/hangar-vm/hangar/storage/retry"
	"github.com/hangar-vm/hangar/storage/s3"
)

// openStore opens the backend of cfg and stacks the wrappers on it:
// retry(metrics(backend)). This is the one place the host's store is
// assembled: metrics sit under retry so that every attempt is measured,
// and retry reports each retry to metrics.
func openStore(ctx context.Context, cfg StoreConfig, meter metric.Meter, log *slog.Logger) (storage.Store, error) {
	var backend storage.Store
	switch cfg.kind() {
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
	default:
		return nil, fmt.Errorf("%w: store.kind %q", ErrInvalidConfig, cfg.kind())
	}
	measured, err := metrics.New(backend, meter)
	if err != nil {
		return nil, err
	}
	rc := cfg.Retry
	rc.OnRetry = measured.CountRetry
	return retry.New(measured, rc, log)
}
