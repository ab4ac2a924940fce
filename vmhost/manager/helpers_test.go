package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/internal/vmtest"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

func TestMain(m *testing.M) {
	lazyfs.RunChildIfRequested() // lazy server processes re-execute the test binary
	code := m.Run()
	miniotest.CloseShared()
	os.Exit(code)
}

// guestMiB keeps guests small: they run under TCG on a shared 2-core box.
const guestMiB = 128

// The real-guest helpers are shared with the other vmhost packages
// (internal/vmtest); these names keep this package's tests short.
var (
	testImage = vmtest.Image
	shortTemp = vmtest.ShortTemp
	qemuUnder = vmtest.QEMUUnder
)

// bucketStore is a store on a fresh bucket of the shared MinIO server.
func bucketStore(t testing.TB) storage.Store {
	t.Helper()
	srv := miniotest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s3.Open(ctx, s3.Config{Endpoint: srv.Endpoint, Bucket: srv.NewBucket(t), AccessKey: srv.AccessKey, SecretKey: s3.Secret(srv.SecretKey)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// host is one "host" at this level: a manager with its own data directory,
// QEMU driver, chunk cache and Repo, sharing only the store with others.
type host struct {
	t      testing.TB
	name   string
	root   string
	m      *Manager
	hv     *qemu.Driver
	repo   *snapshot.Repo
	cache  *cache.Cache
	reader *sdkmetric.ManualReader
	store  storage.Store
	agents map[string]*agent.Client // by socket path
}

type hostOpts struct {
	cfg   Config
	image *guest.Image // default: testImage
	root  string       // reuse a data directory (restart)
}

func newHost(t testing.TB, name string, store storage.Store, o hostOpts) *host {
	t.Helper()
	im := testImage(t)
	if o.image != nil {
		im = *o.image
	}
	h := &host{t: t, name: name, root: o.root, store: store, agents: map[string]*agent.Client{}}
	if h.root == "" {
		h.root = shortTemp(t)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", name)
	// Closed, and checked for QEMUs left under root, after the cleanup
	// below has closed the manager.
	d := vmtest.Driver(t, h.root, log)
	h.hv = d
	h.reader = sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader)).Meter("test")
	var err error
	h.cache, err = cache.Open(filepath.Join(h.root, "cache"), 1<<30, cache.WithMeter(meter))
	if err != nil {
		t.Fatal(err)
	}
	h.repo, err = snapshot.New(store, snapshot.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.cfg
	cfg.DataDir = filepath.Join(h.root, "d")
	if cfg.UploadRetry.Initial == 0 {
		cfg.UploadRetry = Backoff{Initial: 200 * time.Millisecond, Max: time.Second}
	}
	h.m, err = Open(context.Background(), cfg, Deps{Hypervisor: d, Image: im, Repo: h.repo, Cache: h.cache, Logger: log, Meter: meter})
	if err != nil {
		t.Fatalf("open manager: %v", err)
	}
	t.Cleanup(func() {
		h.m.Close()
		h.cache.Close()
	})
	return h
}

// testWriter sends logs to t.Log, so they show only for failed tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func (h *host) create(name string) Instance {
	h.t.Helper()
	in, err := h.m.Create(context.Background(), CreateSpec{Name: name, MemoryMiB: guestMiB, VCPUs: 1})
	if err != nil {
		h.t.Fatalf("%s: create %s: %v", h.name, name, err)
	}
	if in.State != StateRunning || in.AgentSocket == "" {
		h.t.Fatalf("%s: created instance %+v", h.name, in)
	}
	return in
}

// agentOf dials the guest agent of a running instance, or returns the
// client already connected to it: a guest's serial port serves one client
// at a time.
func (h *host) agentOf(id string) *agent.Client {
	h.t.Helper()
	in, err := h.m.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	if in.State != StateRunning {
		h.t.Fatalf("%s: instance %s is %s, not running", h.name, id, in.State)
	}
	if c := h.agents[in.AgentSocket]; c != nil {
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := agent.Dial(ctx, in.AgentSocket)
	if err != nil {
		h.t.Fatalf("%s: dial agent of %s: %v", h.name, id, err)
	}
	h.agents[in.AgentSocket] = c
	h.t.Cleanup(func() { c.Close() })
	return c
}

// waitStorage polls until id's snapshot storage is want.
func (h *host) waitStorage(id string, want Storage, timeout time.Duration) Instance {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		in, err := h.m.Get(context.Background(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		if in.Snapshot != nil && in.Snapshot.Storage == want {
			return in
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: instance %s: snapshot %+v, waited %v for storage %s", h.name, id, in.Snapshot, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counter sums a counter's points whose attributes include attrs.
func (h *host) counter(name string, attrs ...attribute.KeyValue) int64 {
	h.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		h.t.Fatal(err)
	}
	var sum int64
	for _, sm := range rm.ScopeMetrics {
		for _, mm := range sm.Metrics {
			if mm.Name != name {
				continue
			}
			data, ok := mm.Data.(metricdata.Sum[int64])
			if !ok {
				h.t.Fatalf("metric %s is %T, not an int64 sum", name, mm.Data)
			}
		points:
			for _, p := range data.DataPoints {
				for _, a := range attrs {
					if v, ok := p.Attributes.Value(a.Key); !ok || v != a.Value {
						continue points
					}
				}
				sum += p.Value
			}
		}
	}
	return sum
}

func randomToken(t testing.TB) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// guestState is what a test checks in a guest: a token in its RAM-backed
// /run and the agent's in-memory state.
func writeToken(t testing.TB, c *agent.Client) (string, agent.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := randomToken(t)
	if err := c.WriteFile(ctx, "/run/token", []byte(tok), 0o600); err != nil {
		t.Fatalf("write token: %v", err)
	}
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tok, st
}

// checkResumed checks that the guest behind c has token in RAM, the boot id
// of before, and a counter that continued from before and still advances.
func checkResumed(t testing.TB, c *agent.Client, token string, before agent.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := c.ReadFile(ctx, "/run/token")
	if err != nil || string(got) != token {
		t.Fatalf("token after resume = %q, %v; want %q", got, err, token)
	}
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BootID != before.BootID {
		t.Fatalf("boot id %s after resume, %s before: the guest rebooted", st.BootID, before.BootID)
	}
	if st.Counter < before.Counter {
		t.Fatalf("counter %d after resume, %d before: memory did not come back", st.Counter, before.Counter)
	}
	if err := vmtest.WaitCounterPast(ctx, c, st.Counter); err != nil {
		t.Fatalf("after resume: %v", err)
	}
}

// countingStore records every successful write per key, to prove that no
// chunk is stored twice.
type countingStore struct {
	storage.Store
	mu     sync.Mutex
	writes map[string]int
	gets   map[string]int
}

func newCountingStore(s storage.Store) *countingStore {
	return &countingStore{Store: s, writes: map[string]int{}, gets: map[string]int{}}
}

func (c *countingStore) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := c.Store.Get(ctx, key, offset, length)
	if err == nil {
		c.mu.Lock()
		c.gets[key]++
		c.mu.Unlock()
	}
	return rc, err
}

// chunkGets returns the number of chunk objects read and those read more
// than once.
func (c *countingStore) chunkGets() (n int, twice []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.gets {
		if strings.HasPrefix(k, "chunks/") {
			n++
			if v > 1 {
				twice = append(twice, k)
			}
		}
	}
	return n, twice
}

func (c *countingStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	err := c.Store.Put(ctx, key, r, size)
	c.count(key, err)
	return err
}

func (c *countingStore) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	err := c.Store.Create(ctx, key, r, size)
	c.count(key, err)
	return err
}

func (c *countingStore) count(key string, err error) {
	if err != nil {
		return
	}
	c.mu.Lock()
	c.writes[key]++
	c.mu.Unlock()
}

// chunkWrites returns the number of chunk objects written and those
// written more than once.
func (c *countingStore) chunkWrites() (n int, twice []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.writes {
		if strings.HasPrefix(k, "chunks/") {
			n++
			if v > 1 {
				twice = append(twice, k)
			}
		}
	}
	return n, twice
}

var _ storage.Store = (*countingStore)(nil)

// noManifest checks that snapshot sid is not visible in central storage.
func noManifest(t testing.TB, repo *snapshot.Repo, sid string) {
	t.Helper()
	if m, err := repo.Manifest(context.Background(), sid); err == nil {
		t.Fatalf("snapshot %s is visible: %+v", sid, m.Totals)
	} else if !isNotFound(err) {
		t.Fatalf("manifest of %s: %v, want not found", sid, err)
	}
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, storage.ErrNotFound) }

func copyAll(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, r) }

func qemuSettings(accel string) qemu.Settings { return qemu.Settings{Accel: accel} }
