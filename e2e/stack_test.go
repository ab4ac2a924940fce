package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/internal/testenv"
)

// Sizes and timings of the stack. Guests are small and the cluster's
// clocks fast, so that the whole suite stays within minutes under TCG on
// two shared cores.
const (
	guestMiB          = 128
	hostCapacityMiB   = 1024
	hostVCPUs         = 4
	heartbeatInterval = "1s"
	missedHeartbeats  = 3
	// serverDefault is the server's snapshot.compression_default: not the
	// built-in zstd:1, so that the precedence test can tell it was read.
	serverDefaultAlgorithm = "lz4"
	serverDefaultLevel     = 2
	bucket                 = "hangar-e2e"
	// opTimeout bounds one operation (a boot, a restore, an upload) under
	// TCG on a loaded machine.
	opTimeout = 5 * time.Minute
	// uploadTimeout bounds the wait for a snapshot to become central. A
	// 128 MiB guest uploads in about a second here; the margin is for a
	// loaded machine and for the store-outage scenario's retries.
	uploadTimeout = 3 * time.Minute
)

// Stack is MinIO, hangar server and the host daemons, shared by the tests.
type Stack struct {
	Root      string // the run's directory (short: VM sockets live below it)
	ImageDir  string
	MinIO     *miniotest.Server
	ServerURL string
	UserToken string
	// ClusterToken is shared by the server and the hosts.
	ClusterToken string
	API          *api.ClientWithResponses

	server *proc

	mu    sync.Mutex
	hosts map[string]*Host
}

// Host is one `hangar host` daemon.
type Host struct {
	ID      string
	DataDir string
	URL     string // host API base URL (/healthz and /metrics are open)
	config  string
	proc    *proc
}

var shared struct {
	mu    sync.Mutex
	stack *Stack
	err   error
}

// stack returns the shared stack, starting it on first use. A missing
// component fails the test (or skips it when the operator opted out with
// HANGAR_SKIP_MINIO / HANGAR_SKIP_QEMU); a stack that failed to start
// fails every test that needs it, with the same error.
func stack(t *testing.T) *Stack {
	t.Helper()
	minio := testenv.MinIOBinary(t)
	testenv.QEMUBinary(t)
	kernel := testenv.KernelDir(t)
	testenv.Tool(t, "busybox")
	if buildErr != nil {
		t.Fatalf("building the binaries failed: %v", buildErr)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.stack == nil && shared.err == nil {
		start := time.Now()
		shared.stack, shared.err = startStack(minio, kernel)
		if shared.err == nil {
			recordf("stack start (MinIO, server, 2 hosts, image)", "%v", time.Since(start).Round(time.Millisecond))
		}
	}
	if shared.err != nil {
		t.Fatalf("start the e2e stack: %v", shared.err)
	}
	s := shared.stack
	s.watch(t)
	return s
}

// startStack brings up the shared stack. On error, what was started is
// stopped again.
func startStack(minioBin, kernelDir string) (s *Stack, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s = &Stack{
		Root:         runRoot,
		UserToken:    "user-" + randomHex(16),
		ClusterToken: "cluster-" + randomHex(16),
		hosts:        map[string]*Host{},
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, s.logTails(4096))
			s.close()
			s = nil
		}
	}()
	if err := os.MkdirAll(filepath.Join(s.Root, "logs"), 0o755); err != nil {
		return s, err
	}
	if s.ImageDir, err = buildImage(ctx, kernelDir); err != nil {
		return s, err
	}
	if s.MinIO, err = miniotest.StartProcess(ctx, minioBin, filepath.Join(s.Root, "minio")); err != nil {
		return s, err
	}
	if err := s.startServer(ctx); err != nil {
		return s, err
	}
	for _, id := range []string{"h1", "h2"} {
		if _, err := s.StartHost(ctx, id, nil); err != nil {
			return s, err
		}
	}
	return s, nil
}

// storeConfig is the store section shared by the server's and the hosts'
// configs (both read the same keys).
func (s *Stack) storeConfig() map[string]any {
	return map[string]any{
		"kind": "s3",
		"s3": map[string]any{
			"endpoint":   s.MinIO.Endpoint,
			"bucket":     bucket,
			"access_key": s.MinIO.AccessKey,
			"secret_key": s.MinIO.SecretKey,
		},
	}
}

func (s *Stack) startServer(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.ServerURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	store := s.storeConfig()
	// The server creates the bucket: the first process to touch it.
	store["s3"].(map[string]any)["create_bucket"] = true
	cfg := map[string]any{
		"listen": fmt.Sprintf("127.0.0.1:%d", port),
		"auth":   map[string]any{"user_token": s.UserToken, "cluster_token": s.ClusterToken},
		"hosts": map[string]any{
			"heartbeat_interval": heartbeatInterval,
			"missed_heartbeats":  missedHeartbeats,
			"call_timeout":       "10m",
		},
		"snapshot":     map[string]any{"compression_default": map[string]any{"algorithm": serverDefaultAlgorithm, "level": serverDefaultLevel}},
		"store":        store,
		"state_dir":    filepath.Join(s.Root, "server"),
		"catalog_sync": "5s",
	}
	path := filepath.Join(s.Root, "server.yaml")
	if err := writeYAML(path, cfg); err != nil {
		return err
	}
	s.server, err = startProc("server", filepath.Join(s.Root, "logs", "server.log"), nil, hangarBin, "server", "--config", path)
	if err != nil {
		return err
	}
	if s.API, err = api.NewClientWithResponses(s.ServerURL,
		api.WithHTTPClient(&http.Client{Timeout: 15 * time.Minute}),
		api.WithRequestEditorFn(api.BearerAuth(s.UserToken))); err != nil {
		return err
	}
	return waitFor(ctx, "hangar server healthy", s.server, func() error { return httpOK(ctx, s.ServerURL+"/healthz") })
}

// StartHost starts (or, for a known id, restarts with the same data
// directory and config) the host daemon id and waits until the server
// lists it available. extra is merged into its config.
func (s *Stack) StartHost(ctx context.Context, id string, extra map[string]any) (*Host, error) {
	s.mu.Lock()
	h := s.hosts[id]
	s.mu.Unlock()
	if h == nil {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		h = &Host{ID: id, DataDir: filepath.Join(s.Root, id), URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
		h.config = filepath.Join(s.Root, id+".yaml")
		cfg := map[string]any{
			"host_id":       id,
			"listen":        fmt.Sprintf("127.0.0.1:%d", port),
			"server_url":    s.ServerURL,
			"cluster_token": s.ClusterToken,
			"data_dir":      h.DataDir,
			"cache":         map[string]any{"dir": filepath.Join(s.Root, id+"-cache"), "max_bytes": 2 << 30},
			"store":         s.storeConfig(),
			"qemu":          map[string]any{"accel": "tcg"},
			"image":         map[string]any{"dir": s.ImageDir},
			"capacity":      map[string]any{"memory_mib": hostCapacityMiB, "vcpus": hostVCPUs},
		}
		for k, v := range extra {
			cfg[k] = v
		}
		if err := writeYAML(h.config, cfg); err != nil {
			return nil, err
		}
	}
	p, err := startProc("host "+id, filepath.Join(s.Root, "logs", id+".log"), nil, hangarBin, "host", "--config", h.config)
	if err != nil {
		return nil, err
	}
	h.proc = p
	s.mu.Lock()
	s.hosts[id] = h
	s.mu.Unlock()
	err = waitFor(ctx, "host "+id+" available on the server", p, func() error {
		if err := httpOK(ctx, h.URL+"/healthz"); err != nil {
			return err
		}
		hs, err := s.hostList(ctx)
		if err != nil {
			return err
		}
		for _, x := range hs {
			if x.Id == id {
				if x.State != api.HostStateAvailable {
					return fmt.Errorf("host %s is %s", id, x.State)
				}
				return nil
			}
		}
		return fmt.Errorf("host %s not registered", id)
	})
	return h, err
}

// Host returns the host daemon id.
func (s *Stack) Host(t *testing.T, id string) *Host {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[id]
	if h == nil {
		t.Fatalf("no host %q in the stack", id)
	}
	return h
}

func (s *Stack) hostList(ctx context.Context) ([]api.Host, error) {
	rsp, err := s.API.ListHostsWithResponse(ctx)
	if err != nil {
		return nil, err
	}
	if rsp.JSON200 == nil {
		return nil, fmt.Errorf("list hosts: %s: %s", rsp.Status(), rsp.Body)
	}
	return rsp.JSON200.Items, nil
}

// close stops the hosts, the server and MinIO.
func (s *Stack) close() {
	s.mu.Lock()
	hosts := make([]*Host, 0, len(s.hosts))
	for _, h := range s.hosts {
		hosts = append(hosts, h)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hosts {
		if h.proc != nil {
			wg.Add(1)
			go func() { defer wg.Done(); h.proc.stop(30 * time.Second) }()
		}
	}
	wg.Wait()
	if s.server != nil {
		s.server.stop(30 * time.Second)
	}
	if s.MinIO != nil {
		_ = s.MinIO.Close()
	}
}

// watch prints every process's log tail when t fails.
func (s *Stack) watch(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the stack (tails; full logs under %s/logs while the run lasts):\n%s", s.Root, s.logTails(6000))
		}
	})
}

func (s *Stack) logTails(n int) string {
	var b strings.Builder
	if s.MinIO != nil {
		fmt.Fprintf(&b, "===== minio =====\n%s\n", s.MinIO.LogTail(n/2))
	}
	if s.server != nil {
		fmt.Fprintf(&b, "===== server =====\n%s\n", s.server.logTail(n))
	}
	s.mu.Lock()
	ids := make([]string, 0, len(s.hosts))
	for id := range s.hosts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if p := s.hosts[id].proc; p != nil {
			fmt.Fprintf(&b, "===== host %s =====\n%s\n", id, p.logTail(n))
		}
	}
	s.mu.Unlock()
	return b.String()
}

// waitFor polls check until it succeeds, the process p exits, or ctx ends.
func waitFor(ctx context.Context, what string, p *proc, check func() error) error {
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if p != nil {
			if done, err := p.exited(); done {
				return fmt.Errorf("%s: the process exited (%v)\n%s", what, err, p.logTail(4096))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func httpOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// freePort returns a port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

var errNotYet = errors.New("not yet")
