package hostapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metrics is a meter provider whose instruments are exported for
// Prometheus from a registry of its own (not the process-global one, so
// a server and hosts in one process do not collide).
type Metrics struct {
	// Provider is the meter provider to hand to the manager, the cache,
	// the store wrapper and the snapshot repo.
	Provider *sdkmetric.MeterProvider
	// Handler serves the registry in the Prometheus text format.
	Handler http.Handler
}

// NewMetrics builds the provider, its exporter and registry.
func NewMetrics() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &Metrics{
		Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		Handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// Shutdown stops the provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.Provider.Shutdown(ctx) }
