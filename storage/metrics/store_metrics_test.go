package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/faulty"
	"github.com/hangar-vm/hangar/storage/mem"
	"github.com/hangar-vm/hangar/storage/metrics"
	"github.com/hangar-vm/hangar/storage/retry"
	"github.com/hangar-vm/hangar/storage/storetest"
)

func newMetrics(t *testing.T, inner storage.Store) (*metrics.Store, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })
	s, err := metrics.New(inner, provider.Meter("hangar/storage"))
	if err != nil {
		t.Fatal(err)
	}
	return s, reader
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s, _ := newMetrics(t, mem.New())
		return s
	})
}

// collected flattens the sums and histogram counts of one collection into
// "name{k=v,...}" → value.
func collected(t *testing.T, r *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	name := func(n string, set attribute.Set) string {
		var parts []string
		for _, kv := range set.ToSlice() {
			parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
		}
		return n + "{" + strings.Join(parts, ",") + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[name(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[name(m.Name, p.Attributes)] = float64(p.Count)
				}
			default:
				t.Fatalf("unexpected data type %T for %s", m.Data, m.Name)
			}
		}
	}
	return out
}

func TestCounters(t *testing.T) {
	f := faulty.New(mem.New())
	m, reader := newMetrics(t, f)
	cfg := retry.DefaultConfig()
	cfg.InitialBackoff, cfg.MaxBackoff = time.Microsecond, time.Microsecond
	cfg.OnRetry = m.CountRetry
	s, err := retry.New(m, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	f.FailNth(faulty.OpPut, 1, nil) // one transient failure, retried
	body := strings.Repeat("x", 1000)
	if err := s.Put(ctx, "a", strings.NewReader(body), 1000); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "a", strings.NewReader("y"), 1); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "a", 100, 300)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.List(ctx, "", func(storage.ObjectInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	got := collected(t, reader)
	want := map[string]float64{
		"hangar.store.calls{op=put}":                          2,
		"hangar.store.calls{op=create}":                       1,
		"hangar.store.calls{op=get}":                          1,
		"hangar.store.calls{op=stat}":                         1,
		"hangar.store.calls{op=list}":                         1,
		"hangar.store.calls{op=delete}":                       1,
		"hangar.store.errors{error=other,op=put}":             1,
		"hangar.store.errors{error=already_exists,op=create}": 1,
		"hangar.store.errors{error=not_found,op=stat}":        1,
		"hangar.store.duration{op=put}":                       2,
		"hangar.store.duration{op=get}":                       1,
		"hangar.store.bytes{direction=out}":                   1000,
		"hangar.store.bytes{direction=in}":                    300,
		"hangar.store.retries{op=put}":                        1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "hangar.store.errors") {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected %s = %v", k, got[k])
			}
		}
	}
}
