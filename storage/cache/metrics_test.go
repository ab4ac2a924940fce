package cache

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hangar-vm/hangar/storage/chunk"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })

	size := int64(100 + chunk.HeaderSize)
	c := open(t, t.TempDir(), 2*size, WithMeter(provider.Meter("test")))
	ids := make([]chunk.ID, 3)
	stored := make([][]byte, 3)
	for i := range ids {
		ids[i], stored[i] = mkChunk(t, uint64(i), 100)
		mustPut(t, c, ids[i], stored[i]) // the third evicts the first
	}
	mustGet(t, c, ids[2], stored[2])
	c.Get(ids[0])
	c.Get(ids[0])

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] = p.Value
				}
			}
		}
	}
	want := map[string]int64{
		"hangar.cache.hits":      1,
		"hangar.cache.misses":    2,
		"hangar.cache.evictions": 1,
		"hangar.cache.bytes":     2 * size,
		"hangar.cache.entries":   2,
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %d, want %d", name, got[name], w)
		}
	}

	// After Close the gauges' callback is gone.
	c.Close()
	rm = metricdata.ResourceMetrics{}
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && len(g.DataPoints) > 0 {
				t.Errorf("%s still observed after Close", m.Name)
			}
		}
	}
}
