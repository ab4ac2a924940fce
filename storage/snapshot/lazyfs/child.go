package lazyfs

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/internal/proc"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// A lazy server process (Child) holds one lazy mount outside the daemon,
// so that the guest over it outlives the daemon: the daemon starts it
// (the daemon's own binary, re-executed with ChildEnv set, so that no
// other binary has to be found) and it fetches chunks from the daemon's
// ChunkServer (SocketFetcher: it waits while the daemon is away).
//
// Files in its directory (ChildConfig.Dir, the instance's runtime
// directory):
//
//	lazyfs.json  its ChildConfig (on its command line: how a restarted
//	             daemon recognises it, with lazyfs.pid)
//	lazyfs.pid   its pid, written once it serves the mount
//	lazyfs.log   its log (stdout and stderr)
//	lazyfs.backing  the sparse backing file: the daemon writes fetched
//	             chunks into it (ChunkServer fills), the child reads it;
//	             removed when the child unmounts
//	lazyfs.vm    the pid of the VM over the mount, written by the daemon
//	             once the VM runs: when that process is gone (or the
//	             directory), the child unmounts and exits by itself, so it
//	             never outlives its VM, whoever killed it
const (
	ChildEnv         = "HANGAR_LAZYFS_CHILD"
	ChildConfigFile  = "lazyfs.json"
	ChildPIDFile     = "lazyfs.pid"
	ChildLogFile     = "lazyfs.log"
	ChildVMFile      = "lazyfs.vm"
	ChildBackingFile = "lazyfs.backing"
	// ChildArg0 is the child's argv[0].
	ChildArg0 = "hangar-lazyfs"
)

// ChildConfig is what a lazy server process serves.
type ChildConfig struct {
	Dir      string        `json:"dir"`      // its directory (the runtime directory)
	Mount    string        `json:"mount"`    // the mount point, empty, in Dir
	File     snapshot.File `json:"file"`     // the served file's manifest entry
	Socket   string        `json:"socket"`   // the daemon's ChunkServer
	Patience time.Duration `json:"patience"` // SocketFetcher.Patience

	FileName        string        `json:"file_name"`
	NoPrefetch      bool          `json:"no_prefetch,omitempty"`
	PrefetchDelay   time.Duration `json:"prefetch_delay"`
	PrefetchWorkers int           `json:"prefetch_workers"`
	DemandAhead     int           `json:"demand_ahead"`
	MaxReadAhead    int           `json:"max_read_ahead"`
	MaxWrite        int           `json:"max_write"`
}

// ChildArgs are the arguments (argv[1:]) of the process serving the
// ChildConfig in dir.
func ChildArgs(dir string) []string {
	return []string{"--config", filepath.Join(dir, ChildConfigFile)}
}

// RunChildIfRequested runs a lazy server process and exits, if this
// process was started as one (ChildEnv set); otherwise it returns at
// once. Every binary that runs a manager with lazy restores calls it
// first thing in main (or TestMain).
func RunChildIfRequested() {
	if os.Getenv(ChildEnv) == "" {
		return
	}
	os.Exit(runChild(os.Args[1:]))
}

// runChild serves the mount and reports on fd 3 ("ok" or the error),
// then runs until SIGTERM, its VM's end or its directory's removal.
func runChild(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ready := os.NewFile(3, "ready")
	report := func(msg string) {
		if ready != nil {
			fmt.Fprintln(ready, msg)
			ready.Close()
			ready = nil
		}
	}
	if len(args) != 2 || args[0] != "--config" {
		report("error: usage: hangar-lazyfs --config FILE")
		return 2
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGINT)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	b, err := os.ReadFile(args[1])
	var cfg ChildConfig
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		report("error: read config: " + err.Error())
		return 1
	}
	log = log.With("dir", cfg.Dir)
	srv, err := Mount(cfg.Mount, cfg.File, SocketFetcher{Path: cfg.Socket, Patience: cfg.Patience, Log: log}, Options{
		BackingPath: filepath.Join(cfg.Dir, ChildBackingFile), NoPrefetch: cfg.NoPrefetch, PrefetchDelay: cfg.PrefetchDelay, PrefetchWorkers: cfg.PrefetchWorkers,
		DemandAhead: cfg.DemandAhead, MaxReadAhead: cfg.MaxReadAhead, MaxWrite: cfg.MaxWrite,
		FileName: cfg.FileName, Logger: log,
	})
	if err != nil {
		report("error: " + err.Error())
		return 1
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, ChildPIDFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		srv.Close()
		report("error: write pidfile: " + err.Error())
		return 1
	}
	log.Info("lazy server serving", "pid", os.Getpid(), "file", srv.Path(), "size", cfg.File.Size)
	report("ok")
	why := waitChildEnd(cfg.Dir, term, srv.PrefetchDone(), log)
	st := srv.Stats()
	err = srv.Close()
	log.Info("lazy server done", "why", why, "unmount_err", err, "chunks", st.Chunks, "fetched", st.Fetched,
		"demand", st.DemandFetches, "prefetched", st.PrefetchFetchs, "from_cache", st.FromCache, "errors", st.Errors)
	return 0
}

// waitChildEnd returns when the child should end: SIGTERM, its VM gone,
// its directory gone.
func waitChildEnd(dir string, term <-chan os.Signal, prefetched <-chan struct{}, log *slog.Logger) string {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var vmGone <-chan struct{}
	for {
		select {
		case <-term:
			return "terminated"
		case <-prefetched:
			log.Info("every chunk present: the daemon is no longer needed")
			prefetched = nil
		case <-vmGone:
			return "its VM is gone"
		case <-tick.C:
			if _, err := os.Stat(dir); err != nil {
				return "directory gone"
			}
			if vmGone != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, ChildVMFile))
			if err != nil {
				continue // the VM is not running yet
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				continue
			}
			if !proc.Live(pid, dir) {
				return fmt.Sprintf("its VM (pid %d) is gone", pid)
			}
			vmGone = exited(pid)
			log.Info("watching the VM", "pid", pid)
		}
	}
}

// exited returns a channel closed when pid exits (a pidfd: at once,
// whoever reaps it); without pidfds, one closed when a poll of /proc finds
// it gone.
func exited(pid int) <-chan struct{} {
	ch := make(chan struct{})
	fd, err := unix.PidfdOpen(pid, 0)
	go func() {
		defer close(ch)
		if err != nil {
			for syscall.Kill(pid, 0) == nil {
				time.Sleep(100 * time.Millisecond)
			}
			return
		}
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				return
			}
		}
	}()
	return ch
}

// ChildPID returns the pid of the live lazy server process of dir, if
// any (its pidfile, checked against its command line).
func ChildPID(dir string) (int, bool) {
	return proc.FromPIDFile(filepath.Join(dir, ChildPIDFile), filepath.Join(dir, ChildConfigFile))
}
