package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/hangar-vm/hangar/storage/snapshot"
)

// Job results recorded in metrics.
const (
	resultCommitted = "committed"
	resultFailed    = "failed"
	resultPreempted = "preempted"
	resultCancelled = "cancelled" // deleted, or the manager closed (resumed at Open)
)

// Restore preparation sources.
const (
	sourceLocal  = "local"  // the raw files were on this host
	sourceCache  = "cache"  // every chunk came from the host cache
	sourceRemote = "remote" // at least one chunk came from the store
	sourceLazy   = "lazy"   // small files fetched, the memory file mounted lazily (lazy.go)
)

// instruments are the manager's OpenTelemetry instruments. With no meter
// they are no-ops, so recording never needs a nil check.
type instruments struct {
	jobs         metric.Int64Counter
	jobDuration  metric.Float64Histogram
	bytes        metric.Int64Counter
	preemptions  metric.Int64Counter
	prepDuration metric.Float64Histogram
	chunks       metric.Int64Counter
}

func newInstruments(m metric.Meter) (*instruments, error) {
	if m == nil {
		m = noop.NewMeterProvider().Meter("")
	}
	var (
		ins  instruments
		err  error
		errs []error
	)
	ins.jobs, err = m.Int64Counter("hangar.host.jobs",
		metric.WithDescription("Snapshot jobs that ended, by kind, algorithm and result."), metric.WithUnit("{job}"))
	errs = append(errs, err)
	ins.jobDuration, err = m.Float64Histogram("hangar.host.job.duration",
		metric.WithDescription("Snapshot job duration from queueing to its end, by kind and result."), metric.WithUnit("s"))
	errs = append(errs, err)
	ins.bytes, err = m.Int64Counter("hangar.host.snapshot.bytes",
		metric.WithDescription("Bytes moved by committed uploads, by kind: raw, nonzero, compressed, uploaded, deduplicated."), metric.WithUnit("By"))
	errs = append(errs, err)
	ins.preemptions, err = m.Int64Counter("hangar.host.preemptions",
		metric.WithDescription("Upload jobs cancelled because an operation needed their files, by operation."), metric.WithUnit("{job}"))
	errs = append(errs, err)
	ins.prepDuration, err = m.Float64Histogram("hangar.host.restore.prepare.duration",
		metric.WithDescription("Time to get a snapshot's files ready for a restore or fork, by source: local, cache, remote, lazy (until the memory file is mounted)."), metric.WithUnit("s"))
	errs = append(errs, err)
	ins.chunks, err = m.Int64Counter("hangar.host.restore.chunks",
		metric.WithDescription("Chunks a restore or fork needed, by where they came from: cache (hit), store (miss, fetched), or shared (taken from a concurrent restore's or fork's fetch, which counted it): store counts every chunk fetched from the store once."), metric.WithUnit("{chunk}"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("manager metrics: %w", err)
	}
	return &ins, nil
}

// Metrics are recorded with a background context: they are not part of
// any one caller's request.

func (ins *instruments) jobEnded(kind, algorithm, result string, d time.Duration) {
	ctx := context.Background()
	ins.jobs.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("algorithm", algorithm), attribute.String("result", result)))
	ins.jobDuration.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("kind", kind), attribute.String("result", result)))
}

func (ins *instruments) uploaded(p Progress) {
	ctx := context.Background()
	for _, b := range []struct {
		kind string
		n    int64
	}{{"raw", p.Raw}, {"nonzero", p.NonZero}, {"compressed", p.Compressed}, {"uploaded", p.Uploaded}, {"deduplicated", p.Deduplicated}} {
		ins.bytes.Add(ctx, b.n, metric.WithAttributes(attribute.String("kind", b.kind)))
	}
}

func (ins *instruments) preempted(operation string) {
	ins.preemptions.Add(context.Background(), 1, metric.WithAttributes(attribute.String("operation", operation)))
}

func (ins *instruments) prepared(source string, d time.Duration, st snapshot.DownloadStats) {
	ctx := context.Background()
	ins.prepDuration.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("source", source)))
	if st.ChunksFromCache > 0 {
		ins.chunks.Add(ctx, int64(st.ChunksFromCache), metric.WithAttributes(attribute.String("source", "cache")))
	}
	if st.ChunksFromStore > 0 {
		ins.chunks.Add(ctx, int64(st.ChunksFromStore), metric.WithAttributes(attribute.String("source", "store")))
	}
	if st.ChunksShared > 0 {
		ins.chunks.Add(ctx, int64(st.ChunksShared), metric.WithAttributes(attribute.String("source", "shared")))
	}
}
