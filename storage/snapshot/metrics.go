package snapshot

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// instruments are the repo's OpenTelemetry metrics:
//
//   - hangar.snapshot.upload.bytes{kind}: bytes through uploads, kind one of
//     raw, nonzero, compressed, uploaded, deduplicated, unchanged (as in
//     Progress);
//   - hangar.snapshot.upload.chunks{result}: non-hole chunks uploaded or
//     deduplicated;
//   - hangar.snapshot.download.chunks{source}, hangar.snapshot.download.bytes{source}:
//     chunks fetched and their stored bytes, source cache or store;
//   - hangar.snapshot.duration{op, result}: Upload, Download, GC and Verify
//     durations in seconds, result ok or error;
//   - hangar.snapshot.gc.deleted: chunks deleted by GC.
type instruments struct {
	uploadBytes    metric.Int64Counter
	uploadChunks   metric.Int64Counter
	downloadChunks metric.Int64Counter
	downloadBytes  metric.Int64Counter
	duration       metric.Float64Histogram
	gcDeleted      metric.Int64Counter
}

// Attribute sets, built once: recording a metric per chunk must stay cheap.
var (
	attrRaw          = metric.WithAttributes(attribute.String("kind", "raw"))
	attrNonZero      = metric.WithAttributes(attribute.String("kind", "nonzero"))
	attrCompressed   = metric.WithAttributes(attribute.String("kind", "compressed"))
	attrUploaded     = metric.WithAttributes(attribute.String("kind", "uploaded"))
	attrDeduplicated = metric.WithAttributes(attribute.String("kind", "deduplicated"))
	attrUnchanged    = metric.WithAttributes(attribute.String("kind", "unchanged"))
	attrResUploaded  = metric.WithAttributes(attribute.String("result", "uploaded"))
	attrResDedup     = metric.WithAttributes(attribute.String("result", "deduplicated"))
	attrSrcCache     = metric.WithAttributes(attribute.String("source", "cache"))
	attrSrcStore     = metric.WithAttributes(attribute.String("source", "store"))
)

func newInstruments(m metric.Meter) (*instruments, error) {
	if m == nil {
		m = noop.NewMeterProvider().Meter("")
	}
	var (
		in   instruments
		errs [6]error
	)
	in.uploadBytes, errs[0] = m.Int64Counter("hangar.snapshot.upload.bytes", metric.WithUnit("By"),
		metric.WithDescription("Bytes through snapshot uploads by kind (raw, nonzero, compressed, uploaded, deduplicated, unchanged)"))
	in.uploadChunks, errs[1] = m.Int64Counter("hangar.snapshot.upload.chunks",
		metric.WithDescription("Non-hole chunks of snapshot uploads by result (uploaded, deduplicated)"))
	in.downloadChunks, errs[2] = m.Int64Counter("hangar.snapshot.download.chunks",
		metric.WithDescription("Chunks fetched by snapshot downloads by source (cache, store)"))
	in.downloadBytes, errs[3] = m.Int64Counter("hangar.snapshot.download.bytes", metric.WithUnit("By"),
		metric.WithDescription("Stored bytes fetched by snapshot downloads by source (cache, store)"))
	in.duration, errs[4] = m.Float64Histogram("hangar.snapshot.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of snapshot operations by op (upload, download, gc, verify) and result"))
	in.gcDeleted, errs[5] = m.Int64Counter("hangar.snapshot.gc.deleted",
		metric.WithDescription("Chunks deleted by garbage collection"))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("snapshot metrics: %w", err)
		}
	}
	return &in, nil
}

// observe records an operation's duration.
func (in *instruments) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	in.duration.Record(context.Background(), time.Since(start).Seconds(),
		metric.WithAttributes(attribute.String("op", op), attribute.String("result", result)))
}
