package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/hangar-vm/hangar/internal/testenv"
)

// ReadyTimeout bounds how long StartProcess and Restart wait for the server
// to answer its health check when the caller's context has no deadline.
// MinIO usually needs about a second; a loaded shared machine may need many.
const ReadyTimeout = 60 * time.Second

// stopGrace is how long Stop waits for MinIO to exit after SIGTERM before it
// kills the process group.
const stopGrace = 10 * time.Second

// startAttempts: a free port found by listening on :0 can be taken by
// another process before MinIO binds it, so a start that fails that way is
// retried on fresh ports.
const startAttempts = 3

// Server is one MinIO server process.
type Server struct {
	// Endpoint is the S3 API address, host:port (no scheme, plain HTTP).
	Endpoint string
	// ConsoleAddr is the web console address, host:port.
	ConsoleAddr string
	// AccessKey and SecretKey are the root credentials.
	AccessKey string
	SecretKey string
	// Dir holds the server's data (Dir/data) and its log (Dir/minio.log).
	Dir string

	binary string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *os.File
}

// FindBinary returns the MinIO server binary the way internal/testenv does
// ($HANGAR_MINIO, the scripts/deps.sh build in the cache, minio on PATH), for
// callers that have no testing.TB.
func FindBinary() (string, error) {
	if p := os.Getenv("HANGAR_MINIO"); p != "" {
		return p, nil
	}
	cached := filepath.Join(testenv.CacheDir(), "bin", "minio")
	if st, err := os.Stat(cached); err == nil && !st.IsDir() {
		return cached, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("minio server binary not found (looked at $HANGAR_MINIO, %s, PATH): run scripts/deps.sh", cached)
}

// StartProcess starts binary as a MinIO server whose data and log live under
// dir (created if missing), and waits until it is ready or ctx is done. The
// caller must Close the server.
func StartProcess(ctx context.Context, binary, dir string) (*Server, error) {
	if binary == "" {
		return nil, errors.New("miniotest: empty binary path")
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("miniotest: %w", err)
	}
	s := &Server{
		Dir:       dir,
		binary:    binary,
		AccessKey: "hangar-" + randomHex(6),
		SecretKey: randomHex(20),
	}
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		var ports []int
		ports, err = freePorts(2)
		if err != nil {
			return nil, fmt.Errorf("miniotest: %w", err)
		}
		s.Endpoint = fmt.Sprintf("127.0.0.1:%d", ports[0])
		s.ConsoleAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		if err = s.start(ctx); err == nil {
			return s, nil
		}
		if ctx.Err() != nil || !errors.Is(err, errExited) {
			break
		}
	}
	return nil, fmt.Errorf("miniotest: start %s: %w\n%s", binary, err, s.LogTail(4096))
}

var errExited = errors.New("minio exited before it was ready")

// start runs the process on s's current ports and waits for readiness.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "minio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "--- %s: starting minio on %s (console %s)\n", time.Now().Format(time.RFC3339Nano), s.Endpoint, s.ConsoleAddr)

	// Not exec.CommandContext: ctx bounds the start, not the server's life.
	cmd := exec.Command(s.binary, "server", "--quiet",
		"--address", s.Endpoint,
		"--console-address", s.ConsoleAddr,
		filepath.Join(s.Dir, "data"))
	cmd.Env = append(cleanEnv(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_UPDATE=off",
		"MINIO_BROWSER_LOGIN_ANIMATION=off",
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so Stop can kill MinIO and anything it spawned.
		Setpgid: true,
		// If the test binary dies without cleanup, MinIO must not outlive it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.log = cmd, done, logf

	if err := s.waitReady(ctx, done); err != nil {
		s.stopLocked()
		return err
	}
	return nil
}

// waitReady polls the liveness endpoint until the server answers 200 and no
// longer reports itself offline (MinIO answers live before its object layer
// is initialised, flagging that with x-minio-server-status: offline).
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ReadyTimeout)
		defer cancel()
	}
	url := "http://" + s.Endpoint + "/minio/health/live"
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("x-minio-server-status") != "offline" {
				return nil
			}
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("minio on %s not ready: %w", s.Endpoint, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop terminates the server (SIGTERM, then SIGKILL to its process group
// after a grace period) and waits for it to exit. The data directory stays,
// so Restart brings the same objects back. Stopping a stopped server is a
// no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
	}
	// Whatever is left in the group (MinIO itself after the grace period, or
	// a child it spawned) is killed.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-s.done
	fmt.Fprintf(s.log, "--- %s: stopped (%v)\n", time.Now().Format(time.RFC3339Nano), s.cmd.ProcessState)
	s.log.Close()
	s.cmd, s.done, s.log = nil, nil, nil
	return nil
}

// Restart starts a stopped server again on the same port, data directory
// and credentials, and waits until it is ready. A running server is stopped
// first.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("miniotest: restart on %s: %w\n%s", s.Endpoint, err, s.LogTail(4096))
	}
	return nil
}

// Close stops the server for good. The data directory is left to whoever
// created it.
func (s *Server) Close() error { return s.Stop() }

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Log returns everything the server has logged so far.
func (s *Server) Log() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "minio.log"))
	if err != nil {
		return fmt.Sprintf("(minio log unreadable: %v)", err)
	}
	return string(b)
}

// LogTail returns at most the last n bytes of the server's log.
func (s *Server) LogTail(n int) string {
	l := s.Log()
	if len(l) > n {
		l = "..." + l[len(l)-n:]
	}
	return l
}

// Client returns a minio-go client with the root credentials, for test
// set-up and for baselines that talk to the server without hangar.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: false,
		Region: "us-east-1",
	})
}

// CreateBucket creates a bucket named name.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		return fmt.Errorf("miniotest: create bucket %s: %w", name, err)
	}
	return nil
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago. All listeners are held open until every port is chosen, so the n
// ports differ.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// cleanEnv is the parent's environment without MINIO_ settings, so that an
// operator's MinIO configuration cannot leak into the test server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the program instead
	return hex.EncodeToString(b)
}
