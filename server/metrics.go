package server

import (
	"context"
	"strconv"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/hangar-vm/hangar/api"
)

// instruments are the server's own metrics (the store wrappers and the
// snapshot repo add theirs on the same meter provider):
//
//   - hangar.server.requests{route, method, status}: answered requests;
//     route is the matched route template ("unmatched" for none), so ids
//     never become label values;
//   - hangar.server.hosts{state}: registered hosts by state;
//   - hangar.server.placements{op, result, reason}: placement decisions;
//     result is placed or the error code, reason why the host was chosen
//     (explicit, local, cached, free);
//   - hangar.server.catalog.syncs{result}: catalog re-reads from the bucket.
type instruments struct {
	requests   metric.Int64Counter
	placements metric.Int64Counter
	syncs      metric.Int64Counter
	hosts      metric.Int64ObservableGauge
}

func newInstruments(m metric.Meter, s *Server) (*instruments, error) {
	var in instruments
	var err error
	if in.requests, err = m.Int64Counter("hangar.server.requests",
		metric.WithDescription("HTTP requests answered, by route template, method and status.")); err != nil {
		return nil, err
	}
	if in.placements, err = m.Int64Counter("hangar.server.placements",
		metric.WithDescription("Placement decisions by operation, result and reason.")); err != nil {
		return nil, err
	}
	if in.syncs, err = m.Int64Counter("hangar.server.catalog.syncs",
		metric.WithDescription("Catalog syncs from the bucket, by result.")); err != nil {
		return nil, err
	}
	if in.hosts, err = m.Int64ObservableGauge("hangar.server.hosts",
		metric.WithDescription("Registered hosts by state.")); err != nil {
		return nil, err
	}
	if _, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		counts := s.hostCounts()
		for _, st := range []api.HostState{api.HostStateAvailable, api.HostStateUnavailable} {
			o.ObserveInt64(in.hosts, int64(counts[st]), metric.WithAttributes(attribute.String("state", string(st))))
		}
		return nil
	}, in.hosts); err != nil {
		return nil, err
	}
	return &in, nil
}

// metricsMiddleware counts every answered request, after errorMiddleware
// has written the status.
func (s *Server) metricsMiddleware(c *gin.Context) {
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.met.requests.Add(c.Request.Context(), 1, metric.WithAttributes(
		attribute.String("route", route),
		attribute.String("method", c.Request.Method),
		attribute.String("status", strconv.Itoa(c.Writer.Status()))))
}

func (s *Server) countPlacement(ctx context.Context, op, result, reason string) {
	s.met.placements.Add(ctx, 1, metric.WithAttributes(
		attribute.String("op", op), attribute.String("result", result), attribute.String("reason", reason)))
}
