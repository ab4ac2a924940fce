package cache

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/metric"
)

// instruments are the cache's OpenTelemetry instruments. A nil
// *instruments (no meter given) records nothing.
type instruments struct {
	hits, misses, evictions metric.Int64Counter
	fillsDropped            metric.Int64Counter
	reg                     metric.Registration
}

func newInstruments(m metric.Meter, c *Cache) (*instruments, error) {
	if m == nil {
		return nil, nil
	}
	var (
		ins  instruments
		errs []error
		err  error
	)
	ins.hits, err = m.Int64Counter("hangar.cache.hits",
		metric.WithDescription("Host chunk cache lookups that found the chunk."), metric.WithUnit("{lookup}"))
	errs = append(errs, err)
	ins.misses, err = m.Int64Counter("hangar.cache.misses",
		metric.WithDescription("Host chunk cache lookups that did not find the chunk."), metric.WithUnit("{lookup}"))
	errs = append(errs, err)
	ins.evictions, err = m.Int64Counter("hangar.cache.evictions",
		metric.WithDescription("Chunks evicted from the host chunk cache to stay within its size."), metric.WithUnit("{chunk}"))
	errs = append(errs, err)
	ins.fillsDropped, err = m.Int64Counter("hangar.cache.fills_dropped",
		metric.WithDescription("Chunks a restore offered to the host chunk cache that were not cached because the background fill queue was full."), metric.WithUnit("{chunk}"))
	errs = append(errs, err)
	bytes, err := m.Int64ObservableGauge("hangar.cache.bytes",
		metric.WithDescription("Bytes of chunks held in the host chunk cache."), metric.WithUnit("By"))
	errs = append(errs, err)
	entries, err := m.Int64ObservableGauge("hangar.cache.entries",
		metric.WithDescription("Chunks held in the host chunk cache."), metric.WithUnit("{chunk}"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache metrics: %w", err)
	}
	// The gauges are read from the index when collected, so they cost
	// nothing on the hot path.
	ins.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(bytes, s.Bytes)
		o.ObserveInt64(entries, s.Entries)
		return nil
	}, bytes, entries)
	if err != nil {
		return nil, fmt.Errorf("cache metrics: %w", err)
	}
	return &ins, nil
}

// Counting uses a background context: the counters are not tied to one
// caller's request.

func (ins *instruments) hit() {
	if ins != nil {
		ins.hits.Add(context.Background(), 1)
	}
}

func (ins *instruments) miss() {
	if ins != nil {
		ins.misses.Add(context.Background(), 1)
	}
}

func (ins *instruments) evicted(n int) {
	if ins != nil && n > 0 {
		ins.evictions.Add(context.Background(), int64(n))
	}
}

func (ins *instruments) fillDropped() {
	if ins != nil {
		ins.fillsDropped.Add(context.Background(), 1)
	}
}

func (ins *instruments) close() error {
	if ins == nil {
		return nil
	}
	return ins.reg.Unregister()
}
