package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/hangar-vm/hangar/storage"
)

var _ storage.Store = (*Store)(nil)

var ops = []string{"get", "put", "create", "stat", "list", "delete"}

// errorKinds are the values of the "error" attribute.
var errorKinds = []string{"not_found", "already_exists", "invalid_key", "corrupt", "canceled", "other"}

// latencyBuckets (seconds) span a local disk hit to a slow multi-MiB
// upload.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Store records metrics about the calls to the store it wraps.
type Store struct {
	inner storage.Store

	calls    metric.Int64Counter
	errors   metric.Int64Counter
	duration metric.Float64Histogram
	bytes    metric.Int64Counter
	retries  metric.Int64Counter

	// Attribute sets are built once: recording must not allocate them
	// again on every call.
	opAttrs  map[string]metric.MeasurementOption
	errAttrs map[string]map[string]metric.MeasurementOption
	bytesIn  metric.MeasurementOption
	bytesOut metric.MeasurementOption
}

// New wraps inner, creating the instruments on meter.
func New(inner storage.Store, meter metric.Meter) (*Store, error) {
	s := &Store{
		inner:    inner,
		opAttrs:  map[string]metric.MeasurementOption{},
		errAttrs: map[string]map[string]metric.MeasurementOption{},
		bytesIn:  metric.WithAttributeSet(attribute.NewSet(attribute.String("direction", "in"))),
		bytesOut: metric.WithAttributeSet(attribute.NewSet(attribute.String("direction", "out"))),
	}
	var errs []error
	var err error
	s.calls, err = meter.Int64Counter("hangar.store.calls",
		metric.WithDescription("Object-store calls by operation."), metric.WithUnit("{call}"))
	errs = append(errs, err)
	s.errors, err = meter.Int64Counter("hangar.store.errors",
		metric.WithDescription("Failed object-store calls by operation and kind of error."), metric.WithUnit("{call}"))
	errs = append(errs, err)
	s.duration, err = meter.Float64Histogram("hangar.store.duration",
		metric.WithDescription("Object-store call latency."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	s.bytes, err = meter.Int64Counter("hangar.store.bytes",
		metric.WithDescription("Bytes sent to (out) and read from (in) the object store."), metric.WithUnit("By"))
	errs = append(errs, err)
	s.retries, err = meter.Int64Counter("hangar.store.retries",
		metric.WithDescription("Object-store calls retried by the retry wrapper."), metric.WithUnit("{retry}"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("store metrics: %w", err)
	}
	for _, op := range ops {
		s.opAttrs[op] = metric.WithAttributeSet(attribute.NewSet(attribute.String("op", op)))
		s.errAttrs[op] = map[string]metric.MeasurementOption{}
		for _, kind := range errorKinds {
			s.errAttrs[op][kind] = metric.WithAttributeSet(attribute.NewSet(
				attribute.String("op", op), attribute.String("error", kind)))
		}
	}
	return s, nil
}

// CountRetry counts one retry of op; its signature fits retry.Config.OnRetry.
func (s *Store) CountRetry(op string, _ int, _ error) {
	attrs, ok := s.opAttrs[op]
	if !ok {
		attrs = metric.WithAttributes(attribute.String("op", op))
	}
	s.retries.Add(context.Background(), 1, attrs)
}

// errorKind names the class of err for the "error" attribute.
func errorKind(err error) string {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return "not_found"
	case errors.Is(err, storage.ErrAlreadyExists):
		return "already_exists"
	case errors.Is(err, storage.ErrInvalidKey):
		return "invalid_key"
	case errors.Is(err, storage.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "other"
}

// record ends one call. It uses a background context: a cancelled call
// must still be counted.
func (s *Store) record(op string, start time.Time, err error) {
	ctx := context.Background()
	s.calls.Add(ctx, 1, s.opAttrs[op])
	s.duration.Record(ctx, time.Since(start).Seconds(), s.opAttrs[op])
	if err != nil {
		s.errors.Add(ctx, 1, s.errAttrs[op][errorKind(err)])
	}
}

// Get implements storage.Getter. Bytes are counted as the caller reads.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := s.inner.Get(ctx, key, offset, length)
	s.record("get", start, err)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, s: s}, nil
}

type countingReader struct {
	io.ReadCloser
	s *Store
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		c.s.bytes.Add(context.Background(), int64(n), c.s.bytesIn)
	}
	return n, err
}

// Put implements storage.Putter.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	start := time.Now()
	err := s.inner.Put(ctx, key, r, size)
	s.record("put", start, err)
	if err == nil {
		s.bytes.Add(context.Background(), size, s.bytesOut)
	}
	return err
}

// Create implements storage.Creator.
func (s *Store) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	start := time.Now()
	err := s.inner.Create(ctx, key, r, size)
	s.record("create", start, err)
	if err == nil {
		s.bytes.Add(context.Background(), size, s.bytesOut)
	}
	return err
}

// Stat implements storage.Stater.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	start := time.Now()
	info, err := s.inner.Stat(ctx, key)
	s.record("stat", start, err)
	return info, err
}

// List implements storage.Lister. Its duration includes the time spent in
// fn, which the wrapper cannot separate from the listing.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	start := time.Now()
	err := s.inner.List(ctx, prefix, fn)
	s.record("list", start, err)
	return err
}

// Delete implements storage.Deleter.
func (s *Store) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.inner.Delete(ctx, key)
	s.record("delete", start, err)
	return err
}
