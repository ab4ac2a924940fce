package manager

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hangar-vm/hangar/internal/proc"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
)

// A lazy restore's FUSE server runs in its own process (lazyfs.Child:
// this process's binary re-executed with lazyfs.ChildEnv set; every
// binary running a manager calls lazyfs.RunChildIfRequested first), one
// per lazily restored VM, supervised like the VM: no parent-death signal,
// its own process group, found again by a restarted manager through its
// pidfile and command line in the runtime directory. It fetches chunks
// from the manager's chunk socket (<data>/lazy.sock, lazyfs.ChunkServer
// over the manager's repo and cache) and waits for a successor while the
// manager is away. It ends with its VM: the manager stops it after the VM
// (closeLazy), and it exits by itself when the VM's process or the
// runtime directory is gone.

// chunkSocketName is the manager's chunk socket in its data directory.
const chunkSocketName = "lazy.sock"

// lazyStartTimeout bounds a lazy server process's start (mount included).
const lazyStartTimeout = 30 * time.Second

// lazyStopTimeout bounds its unmount after SIGTERM before SIGKILL.
const lazyStopTimeout = 20 * time.Second

// lazyChild is one lazy server process.
type lazyChild struct {
	pid   int
	dir   string        // its runtime directory
	ended chan struct{} // closed when it exited; nil if another manager started it
}

func (m *Manager) chunkSocket() string { return filepath.Join(m.cfg.DataDir, chunkSocketName) }

// serveChunks starts the chunk socket for lazy server processes (this
// manager's, and those of an earlier one still running), if the repo
// fetches single chunks. Without it lazy restores fall back to eager ones
// and surviving lazy servers wait (lazyPatience).
func (m *Manager) serveChunks() {
	cf, ok := m.repo.(chunkFetcher)
	if !ok {
		return
	}
	path := m.chunkSocket()
	os.Remove(path) // a dead manager's
	ln, err := net.Listen("unix", path)
	if err != nil {
		m.log.Warn("lazy restore unavailable: chunk socket", "err", err)
		return
	}
	os.Chmod(path, 0o600)
	runs := filepath.Join(m.cfg.DataDir, runDir) + "/"
	m.chunks = lazyfs.ServeChunks(ln, fetcher{cf, m.cache}, m.log, func(path string) bool {
		// Only a lazy server's backing file in a runtime directory here.
		return filepath.Clean(path) == path && strings.HasPrefix(path, runs) &&
			filepath.Base(path) == lazyfs.ChildBackingFile && filepath.Dir(filepath.Dir(path))+"/" == runs
	}, m.chunkFilled)
}

// startLazyChild starts the lazy server process for cfg and waits until
// it serves the mount.
func startLazyChild(ctx context.Context, cfg lazyfs.ChildConfig) (*lazyChild, error) {
	// This very binary, even if its file was replaced or removed since
	// (an upgrade): the kernel keeps it.
	const exe = "/proc/self/exe"
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, lazyfs.ChildConfigFile), b, 0o600); err != nil {
		return nil, fmt.Errorf("lazy server: %w", err)
	}
	logPath := filepath.Join(cfg.Dir, lazyfs.ChildLogFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lazy server: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lazy server: %w", err)
	}
	defer r.Close()
	cmd := &exec.Cmd{
		Path: exe, Args: append([]string{lazyfs.ChildArg0}, lazyfs.ChildArgs(cfg.Dir)...),
		Env:    append(os.Environ(), lazyfs.ChildEnv+"=1"),
		Stdout: logf, Stderr: logf, ExtraFiles: []*os.File{w},
		// Its own process group, and no parent-death signal: it outlives
		// this process, as the VM over its mount does.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("lazy server: start %s: %w", exe, err)
	}
	c := &lazyChild{pid: cmd.Process.Pid, dir: cfg.Dir, ended: make(chan struct{})}
	go func() { cmd.Wait(); close(c.ended) }() // reaps it, whoever stops it
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	t := time.NewTimer(lazyStartTimeout)
	defer t.Stop()
	var msg string
	select {
	case msg = <-line:
	case <-t.C:
		msg = "no answer within " + lazyStartTimeout.String()
	case <-ctx.Done():
		msg = ctx.Err().Error()
	}
	if msg == "ok" {
		return c, nil
	}
	cmd.Process.Kill()
	<-c.ended
	lazyfs.DetachStale(cfg.Mount)
	if msg == "" {
		msg = "exited without serving the mount"
	}
	return nil, fmt.Errorf("lazy server: %s (log %s)", strings.TrimPrefix(msg, "error: "), logPath)
}

// findLazyChild returns the live lazy server process of dir, if any.
func findLazyChild(dir string) (*lazyChild, bool) {
	if dir == "" {
		return nil, false
	}
	pid, ok := lazyfs.ChildPID(dir)
	if !ok {
		return nil, false
	}
	return &lazyChild{pid: pid, dir: dir}, true
}

// watchVM tells c the pid of the VM over its mount: it exits by itself
// once that process is gone.
func (c *lazyChild) watchVM(pid int, log *slog.Logger) {
	if err := os.WriteFile(filepath.Join(c.dir, lazyfs.ChildVMFile), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		log.Warn("lazy server: record the VM's pid", "dir", c.dir, "err", err)
	}
}

func (c *lazyChild) alive() bool {
	if c.ended != nil {
		select {
		case <-c.ended:
			return false
		default:
			return true
		}
	}
	return proc.Live(c.pid, filepath.Join(c.dir, lazyfs.ChildConfigFile))
}

// stopLazyChild ends c (it unmounts; SIGKILL if it does not within
// lazyStopTimeout) and detaches whatever is left mounted. Call it after
// the VM over the mount is gone.
func (m *Manager) stopLazyChild(c *lazyChild) {
	if c.alive() {
		syscall.Kill(c.pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(lazyStopTimeout)
	for c.alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.alive() {
		m.log.Warn("lazy server did not unmount in time: killed", "dir", c.dir, "pid", c.pid)
		syscall.Kill(c.pid, syscall.SIGKILL)
		for i := 0; i < 500 && c.alive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := lazyfs.DetachStale(filepath.Join(c.dir, lazyMountDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("detach lazy mount", "dir", c.dir, "err", err)
	}
}
