package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/internal/vmtest"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

const token = "cluster-token-0123456789"

// TestNewInvalidConfig: every problem is reported at once, each naming
// its key.
func TestNewInvalidConfig(t *testing.T) {
	lvl := 42
	_, err := New(Config{
		HostID:            "Host_A",
		Listen:            "nowhere",
		AdvertiseAddress:  "ftp://x",
		ServerURL:         "not a url",
		ClusterToken:      "short",
		DataDir:           "relative/dir",
		Cache:             CacheConfig{MaxBytes: -1},
		Store:             StoreConfig{Kind: "tape"},
		QEMU:              QEMUConfig{Accel: "hvf"},
		Capacity:          CapacityConfig{MemoryMiB: -5, VCPUs: -1},
		Snapshot:          SnapshotConfig{CompressionDefault: &compression.Policy{Algorithm: "zstd", Level: &lvl}, CommitWait: 2 * time.Hour},
		UploadConcurrency: 1000,
	}, nil)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("want ErrInvalidConfig, got %v", err)
	}
	for _, key := range []string{"host_id", "listen", "advertise_address", "server_url", "cluster_token", "data_dir",
		"cache.max_bytes", "store.kind", "qemu", "capacity.memory_mib", "capacity.vcpus", "snapshot.compression_default", "snapshot.commit_wait", "upload_concurrency"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("the token leaked into the error: %v", err)
	}

	// Each missing piece alone.
	base := Config{HostID: "host-a", ClusterToken: token, DataDir: "/tmp/hd", Store: StoreConfig{Dir: "/tmp/hs"}}
	if _, err := New(base, nil); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		key  string
	}{
		{"no store", func(c *Config) { c.Store = StoreConfig{} }, "store:"},
		{"unspecified listen without advertise", func(c *Config) { c.Listen = "0.0.0.0:7081" }, "advertise_address"},
		{"long data dir", func(c *Config) { c.DataDir = "/" + strings.Repeat("d", 120) }, "data_dir"},
		{"s3 without bucket", func(c *Config) {
			c.Store = StoreConfig{Kind: StoreS3, S3: c.Store.S3}
			c.Store.S3.Endpoint = "127.0.0.1:9000"
		}, "store.s3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.edit(&c)
			_, err := New(c, nil)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("want an error naming %s, got %v", tt.key, err)
			}
		})
	}
}

// TestDefaults: one place, derived capacity, the token redacted in print.
func TestDefaults(t *testing.T) {
	c := Config{HostID: "h", ClusterToken: token, Store: StoreConfig{Dir: "/x"}}.WithDefaults()
	if c.Listen != DefaultListen || c.DataDir != DefaultDataDir || c.cacheDir() != filepath.Join(DefaultDataDir, "cache") ||
		c.Store.EffectiveKind() != StoreFS || c.QEMU.Accel != qemu.AccelKVM || c.Capacity.VCPUs <= 0 || c.Capacity.MemoryMiB <= 0 ||
		c.Snapshot.CompressionDefault == nil || c.Snapshot.CompressionDefault.Algorithm != "zstd" || c.Store.Retry.MaxAttempts == 0 ||
		c.Snapshot.CommitWait != DefaultCommitWait {
		t.Fatalf("defaults: %+v", c)
	}
	if mc := c.managerConfig(c.qemuSettings()); mc.CommitWait != DefaultCommitWait || mc.DataDir != c.DataDir || mc.UploadConcurrency != c.UploadConcurrency {
		t.Fatalf("manager config: %+v", mc)
	}
	if c.Store.S3.UnsignedPayloadPrefixes != nil {
		t.Errorf("fs store got unsigned payload prefixes %q", c.Store.S3.UnsignedPayloadPrefixes)
	}
	// S3: chunk bodies unsigned by default (verified by their id on every
	// read), everything else signed; an explicit empty list signs all.
	s3c := Config{HostID: "h", ClusterToken: token, Store: StoreConfig{Kind: StoreS3}}
	s3c.Store.S3.Endpoint, s3c.Store.S3.Bucket = "127.0.0.1:9000", "b"
	if got := s3c.WithDefaults().Store.S3.UnsignedPayloadPrefixes; len(got) != 1 || got[0] != "chunks/" {
		t.Errorf("s3 unsigned payload prefixes %q, want [chunks/]", got)
	}
	s3c.Store.S3.UnsignedPayloadPrefixes = []string{}
	if got := s3c.WithDefaults().Store.S3.UnsignedPayloadPrefixes; len(got) != 0 {
		t.Errorf("explicit empty list became %q", got)
	}
	b, _ := json.Marshal(c)
	if bytes.Contains(b, []byte(token)) {
		t.Errorf("token in %s", b)
	}
}

// fakeCluster serves /cluster/v1 for the daemon to register with.
type fakeCluster struct {
	mu         sync.Mutex
	registered hostapi.RegisterRequest
	beats      int
}

func (f *fakeCluster) handler() http.Handler {
	mux := http.NewServeMux()
	auth := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(401)
			return false
		}
		return true
	}
	mux.HandleFunc("POST /cluster/v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		f.mu.Lock()
		json.NewDecoder(r.Body).Decode(&f.registered)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"heartbeat_interval_seconds":1}`))
	})
	mux.HandleFunc("PUT /cluster/v1/hosts/{id}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		f.mu.Lock()
		f.beats++
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"heartbeat_interval_seconds":1}`))
	})
	return mux
}

// TestRunServesAndShutsDown: a daemon on a temp directory with an fs store
// registers, answers /healthz and the host API, boots a real guest, and on
// ctx cancel returns nil leaving no QEMU behind.
func TestRunServesAndShutsDown(t *testing.T) {
	root := vmtest.ShortTemp(t)
	fc := &fakeCluster{}
	cluster := httptest.NewServer(fc.handler())
	defer cluster.Close()

	d, err := New(Config{
		HostID: "host-a", Listen: "127.0.0.1:0", ServerURL: cluster.URL, ClusterToken: token,
		DataDir: filepath.Join(root, "d"), Store: StoreConfig{Dir: filepath.Join(root, "store")},
		QEMU:     QEMUConfig{Binary: testenv.QEMUBinary(t), Accel: qemu.AccelTCG},
		Image:    ImageConfig{KernelDir: testenv.KernelDir(t)},
		Capacity: CapacityConfig{MemoryMiB: 512, VCPUs: 2},
	}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("daemon not ready")
	}
	rsp, err := http.Get(d.Address() + "/healthz")
	if err != nil || rsp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, rsp)
	}
	rsp.Body.Close()

	c, err := hostapi.NewClientWithResponses(d.Address(), hostapi.WithRequestEditorFn(hostapi.RequestEditorFn(api.BearerAuth(token))))
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.CreateHostInstanceWithResponse(ctx, "i-1", hostapi.InstanceSpec{Name: "box", Image: "default", MemoryMib: 128, Vcpus: 1})
	if err != nil || cr.JSON201 == nil || cr.JSON201.State != api.InstanceStateRunning {
		t.Fatalf("create: %v %s", err, cr.Body)
	}
	big, _ := c.CreateHostInstanceWithResponse(ctx, "i-2", hostapi.InstanceSpec{Name: "big", Image: "default", MemoryMib: 512, Vcpus: 1})
	if err := api.FromResponse(big.StatusCode(), big.Body); !errors.Is(err, api.ErrNoCapacity) {
		t.Errorf("beyond capacity: %d %s", big.StatusCode(), big.Body)
	}
	if pids := vmtest.QEMUUnder(root); len(pids) != 1 {
		t.Fatalf("want one QEMU under %s, found %v", root, pids)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		fc.mu.Lock()
		reg, beats := fc.registered, fc.beats
		fc.mu.Unlock()
		if beats > 0 {
			if reg.Id != "host-a" || reg.Address != d.Address() || reg.Capacity.MemoryMib != 512 || reg.ImageDigests == nil {
				t.Errorf("registration %+v", reg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat reached the server")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.Registration(); !st.Registered {
		t.Errorf("registration status %+v", st)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("daemon did not stop")
	}
	if pids := vmtest.QEMUUnder(root); len(pids) > 0 {
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		t.Fatalf("QEMU left behind: %v", pids)
	}
	if _, err := http.Get(d.Address() + "/healthz"); err == nil {
		t.Error("host API still answers after shutdown")
	}
	if err := d.Run(context.Background()); err == nil {
		t.Error("a second Run was accepted")
	}
}

// TestConfigLoads: every key loads through internal/config from a file,
// the environment and flags; defaults applied after loading follow the
// loaded data_dir.
func TestConfigLoads(t *testing.T) {
	schema, err := config.NewSchema(&Config{})
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "host.yaml")
	os.WriteFile(file, []byte(`host_id: host-b
listen: 127.0.0.1:7082
server_url: http://127.0.0.1:7070
cluster_token: from-the-file-0123456789
data_dir: /tmp/hb
store:
  s3:
    endpoint: 127.0.0.1:9000
    bucket: hangar
    access_key: minio
    secret_key: minio-secret
qemu:
  accel: tcg
capacity:
  memory_mib: 2048
snapshot:
  compression_default:
    algorithm: lz4
  keep_local_after_commit: true
  commit_wait: 45s
`), 0o600)
	env := map[string]string{"HANGAR_CAPACITY_VCPUS": "3", "HANGAR_CLUSTER_TOKEN": "from-the-env-0123456789"}
	var c Config
	if err := schema.Load(&c, config.Sources{File: file, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}); err != nil {
		t.Fatalf("load: %v", err)
	}
	c = c.WithDefaults()
	if c.HostID != "host-b" || c.ClusterToken.Reveal() != "from-the-env-0123456789" || c.Store.EffectiveKind() != StoreS3 || c.Store.S3.Bucket != "hangar" ||
		c.QEMU.Accel != "tcg" || c.Capacity.MemoryMiB != 2048 || c.Capacity.VCPUs != 3 || c.cacheDir() != "/tmp/hb/cache" ||
		c.Snapshot.CompressionDefault.Algorithm != "lz4" || !c.Snapshot.KeepLocalAfterCommit || c.Snapshot.CommitWait != 45*time.Second ||
		c.managerConfig(c.qemuSettings()).CommitWait != 45*time.Second {
		t.Fatalf("loaded %+v", c)
	}
	var out bytes.Buffer
	if err := schema.Print(&out, &c); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "from-the-env") || strings.Contains(out.String(), "minio-secret") {
		t.Errorf("secrets printed:\n%s", out.String())
	}
	os.WriteFile(file, []byte("host_id: h\nstore:\n  dri: /x\n"), 0o600)
	if err := schema.Load(&Config{}, config.Sources{File: file}); !errors.Is(err, config.ErrUnknownKey) {
		t.Errorf("a typo in a key: %v", err)
	}
}
