package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/internal/vmtest"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.CloseShared()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// Timeouts, generous: TCG guests on two shared cores are slow.
const (
	opTimeout    = 5 * time.Minute // one API operation, with its wait
	startTimeout = 2 * time.Minute // a process until it serves
	stopTimeout  = time.Minute     // a process after SIGTERM
	guestMiB     = 128
)

// build holds what every test shares: the hangar binary and the guest image,
// built once per test binary.
var build struct {
	once     sync.Once
	dir      string
	bin      string
	imageDir string
	err      error
}

// artifacts returns the hangar binary and the guest image directory,
// building them on first use. Missing QEMU or kernel fail t (or skip it
// with HANGAR_SKIP_QEMU=1).
func artifacts(t *testing.T) (bin, imageDir string) {
	t.Helper()
	testenv.QEMUBinary(t)
	testenv.KernelDir(t)
	build.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if build.dir, build.err = os.MkdirTemp("", "hangar-integration-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "hangar")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", build.bin, "github.com/hangar-vm/hangar/cmd/hangar").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build hangar: %v\n%s", err, out)
			return
		}
		img, err := guest.Build(ctx, guest.BuildOptions{})
		if err != nil {
			build.err = err
			return
		}
		build.imageDir = img.Dir
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin, build.imageDir
}

// proc is one hangar process (server or host) with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // Wait's result, after done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for a clean exit (status 0).
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.exited() {
		t.Errorf("%s had exited on its own: %v", p.name, p.err)
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", p.name, p.err, tailFile(p.log, 4000))
		}
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within %v of SIGTERM", p.name, stopTimeout)
	}
}

// cluster is a server, hosts and a bucket.
type cluster struct {
	t            *testing.T
	bin          string
	imageDir     string
	dir          string
	minio        *miniotest.Server
	bucket       string
	userToken    string
	clusterToken string
	addr         string // the server's host:port, kept across server restarts
	url          string
	stateDir     string
	server       *proc
	hosts        map[string]*hostProc
	api          *api.ClientWithResponses
	agents       []*agent.Client
	mu           sync.Mutex
}

type hostProc struct {
	*proc
	id      string
	dataDir string
}

// newCluster starts MinIO (shared), a server and the named hosts, and
// waits until every host is available. Everything stops in t.Cleanup,
// which also checks that no QEMU process outlived its host.
func newCluster(t *testing.T, hostIDs ...string) *cluster {
	t.Helper()
	bin, imageDir := artifacts(t)
	mc := miniotest.Shared(t)
	c := &cluster{
		t: t, bin: bin, imageDir: imageDir, dir: t.TempDir(), minio: mc, bucket: mc.NewBucket(t),
		userToken: "user-" + randomHex(t), clusterToken: "cluster-" + randomHex(t), hosts: map[string]*hostProc{},
	}
	c.addr = freeAddr(t)
	c.url = "http://" + c.addr
	var err error
	c.api, err = api.NewClientWithResponses(c.url,
		api.WithHTTPClient(&http.Client{Timeout: opTimeout}),
		api.WithRequestEditorFn(api.BearerAuth(c.userToken)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.startServer(filepath.Join(c.dir, "server-state"))
	for _, id := range hostIDs {
		c.startHost(id)
	}
	c.waitHosts(hostIDs...)
	return c
}

func (c *cluster) storeEnv() []string {
	return []string{
		"HANGAR_STORE_KIND=s3",
		"HANGAR_STORE_S3_ENDPOINT=" + c.minio.Endpoint,
		"HANGAR_STORE_S3_BUCKET=" + c.bucket,
		"HANGAR_STORE_S3_ACCESS_KEY=" + c.minio.AccessKey,
		"HANGAR_STORE_S3_SECRET_KEY=" + c.minio.SecretKey,
	}
}

func (c *cluster) spawn(name string, env []string, args ...string) *proc {
	c.t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(testenv.ChildEnv(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		c.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p
}

// startServer starts `hangar server` on c.addr with stateDir.
func (c *cluster) startServer(stateDir string) {
	c.t.Helper()
	c.stateDir = stateDir
	env := append(c.storeEnv(),
		"HANGAR_LISTEN="+c.addr,
		"HANGAR_AUTH_USER_TOKEN="+c.userToken,
		"HANGAR_AUTH_CLUSTER_TOKEN="+c.clusterToken,
		"HANGAR_STATE_DIR="+stateDir,
		"HANGAR_HOSTS_HEARTBEAT_INTERVAL=1s",
	)
	c.server = c.spawn("server", env, "server")
	deadline := time.Now().Add(startTimeout)
	for {
		r, err := http.Get(c.url + "/healthz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		if c.server.exited() || time.Now().After(deadline) {
			c.t.Fatalf("server did not start (%v)\n%s", c.server.err, tailFile(c.server.log, 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startHost starts `hangar host` id (again, on the same data directory
// when it ran before); the caller waits with waitHosts.
func (c *cluster) startHost(id string) *hostProc {
	c.t.Helper()
	dataDir := filepath.Join(c.dir, id)
	env := append(c.storeEnv(),
		"HANGAR_HOST_ID="+id,
		"HANGAR_LISTEN=127.0.0.1:0",
		"HANGAR_SERVER_URL="+c.url,
		"HANGAR_CLUSTER_TOKEN="+c.clusterToken,
		"HANGAR_DATA_DIR="+dataDir,
		"HANGAR_QEMU_ACCEL=tcg",
		"HANGAR_IMAGE_DIR="+c.imageDir,
		"HANGAR_CAPACITY_MEMORY_MIB=1024",
		"HANGAR_CAPACITY_VCPUS=2",
	)
	h := &hostProc{proc: c.spawn(id, env, "host"), id: id, dataDir: dataDir}
	c.hosts[id] = h
	return h
}

// waitHosts waits until every id is an available host of the server.
func (c *cluster) waitHosts(ids ...string) {
	c.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		var avail []string
		r, err := c.api.ListHostsWithResponse(context.Background())
		if err == nil && r.JSON200 != nil {
			for _, h := range r.JSON200.Items {
				if h.State == api.HostStateAvailable {
					avail = append(avail, h.Id)
				}
			}
		}
		missing := 0
		for _, id := range ids {
			if !contains(avail, id) {
				missing++
				if c.hosts[id].exited() {
					c.t.Fatalf("%s exited: %v\n%s", id, c.hosts[id].err, tailFile(c.hosts[id].log, 4000))
				}
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("hosts %v not available (available: %v, err %v)", ids, avail, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopHost stops host id with SIGTERM and checks that no QEMU process of
// it is left.
func (c *cluster) stopHost(id string) {
	c.t.Helper()
	h := c.hosts[id]
	c.closeAgents()
	h.stop(c.t)
	if pids := qemuOf(h.dataDir); len(pids) > 0 {
		c.t.Errorf("%s stopped but QEMU processes %v still run on its data directory", id, pids)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (c *cluster) close() {
	c.closeAgents()
	for id, h := range c.hosts {
		if !h.exited() {
			c.stopHost(id)
		}
	}
	if c.server != nil && !c.server.exited() {
		c.server.stop(c.t)
	}
	if c.t.Failed() {
		for _, p := range append([]*proc{c.server}, c.hostProcs()...) {
			if p != nil {
				c.t.Logf("--- %s log (end):\n%s", p.name, tailFile(p.log, 6000))
			}
		}
	}
}

func (c *cluster) hostProcs() []*proc {
	var ps []*proc
	for _, h := range c.hosts {
		ps = append(ps, h.proc)
	}
	return ps
}

func (c *cluster) closeAgents() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.agents {
		a.Close()
	}
	c.agents = nil
}

// qemuOf lists the QEMU processes whose command line names dir.
func qemuOf(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte("qemu")) && bytes.Contains(b, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// agentOf connects to the guest agent of instance id on host hostID,
// through the socket the host's instance manager records for it.
func (c *cluster) agentOf(hostID, id string) *agent.Client {
	c.t.Helper()
	path := filepath.Join(c.hosts[hostID].dataDir, "i", id, "instance.json")
	b, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatalf("instance %s on %s: %v", id, hostID, err)
	}
	var meta struct {
		AgentSocket string `json:"agent_socket"`
	}
	if err := json.Unmarshal(b, &meta); err != nil || meta.AgentSocket == "" {
		c.t.Fatalf("%s: no agent socket (%v): %s", path, err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := agent.Dial(ctx, meta.AgentSocket)
	if err != nil {
		c.t.Fatalf("dial agent of %s on %s: %v", id, hostID, err)
	}
	if err := a.WaitReady(ctx); err != nil {
		a.Close()
		c.t.Fatalf("agent of %s on %s: %v", id, hostID, err)
	}
	c.mu.Lock()
	c.agents = append(c.agents, a)
	c.mu.Unlock()
	return a
}

// guestMark is state that exists only in a guest's RAM.
type guestMark struct {
	token string
	state agent.State
}

// mark writes a random token into the guest's RAM-backed /run and reads
// the agent's boot id and counter.
func mark(t *testing.T, a *agent.Client) guestMark {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := guestMark{token: randomHex(t)}
	if err := a.WriteFile(ctx, "/run/token", []byte(m.token), 0o600); err != nil {
		t.Fatalf("write token: %v", err)
	}
	var err error
	if m.state, err = a.State(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkMark checks that the guest behind a still has m's token and boot
// id, and a counter that went on from m's and still advances: its memory
// came back, it did not reboot.
func checkMark(t *testing.T, a *agent.Client, m guestMark, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := a.ReadFile(ctx, "/run/token")
	if err != nil || string(got) != m.token {
		t.Fatalf("%s: token %q (%v), want %q", what, got, err, m.token)
	}
	st, err := a.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BootID != m.state.BootID {
		t.Fatalf("%s: boot id %s, was %s: the guest rebooted", what, st.BootID, m.state.BootID)
	}
	if st.Counter < m.state.Counter {
		t.Fatalf("%s: counter %d, was %d: memory did not come back", what, st.Counter, m.state.Counter)
	}
	if err := vmtest.WaitCounterPast(ctx, a, st.Counter); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitInstance polls instance id until ok holds, failing on state Error.
func (c *cluster) waitInstance(id, what string, ok func(api.Instance) bool) api.Instance {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var last *api.Instance
	for {
		r, err := c.api.GetInstanceWithResponse(ctx, id)
		if err == nil && r.JSON200 != nil {
			last = r.JSON200
			if ok(*last) {
				return *last
			}
			if last.State == api.InstanceStateError {
				c.t.Fatalf("instance %s (waiting for %s): Error: %s", id, what, deref(last.Error))
			}
		}
		if ctx.Err() != nil {
			c.t.Fatalf("instance %s: not %s in %v; last %s", id, what, opTimeout, jsonOf(last))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func running(i api.Instance) bool { return i.State == api.InstanceStateRunning }

func standbyCentral(i api.Instance) bool {
	return i.State == api.InstanceStateStandby && i.Storage != nil && *i.Storage == api.SnapshotStateCentral
}

// waitSnapshotCentral polls snapshot id until it is central.
func (c *cluster) waitSnapshotCentral(id string) api.Snapshot {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var last *api.Snapshot
	for {
		r, err := c.api.GetSnapshotWithResponse(ctx, id)
		if err == nil && r.JSON200 != nil {
			last = r.JSON200
			switch last.State {
			case api.SnapshotStateCentral:
				return *last
			case api.SnapshotStateError:
				c.t.Fatalf("snapshot %s: upload failed: %s", id, deref(last.Error))
			}
		}
		if ctx.Err() != nil {
			c.t.Fatalf("snapshot %s not central in %v; last %s", id, opTimeout, jsonOf(last))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// answer is what every generated response has.
type answer interface {
	StatusCode() int
	GetBody() []byte
}

// must fails the test unless the call succeeded with status want.
func must(t *testing.T, what string, r answer, err error, want int) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if r.StatusCode() != want {
		t.Fatalf("%s: HTTP %d, want %d: %s", what, r.StatusCode(), want, r.GetBody())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
