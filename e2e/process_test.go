package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/testenv"
)

// proc is one process the stack runs (hangar server, hangar host), its
// output in a log file of its own.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd

	done chan struct{} // closed when the process has exited
	mu   sync.Mutex
	err  error // Wait's result
}

// startProc starts bin with args and env (added to a clean environment),
// stdout and stderr appended to logPath. The process gets its own process
// group (stop kills the group) and dies with the test binary (Pdeathsig).
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "--- %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(testenv.ChildEnv(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "--- %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), cmd.ProcessState)
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// stop asks the process to end (SIGTERM to its group), kills the group
// after grace, and waits for it.
func (p *proc) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// kill9 kills the process itself with SIGKILL, as a crash would: no
// shutdown code runs. Its children (QEMU) die by their own Pdeathsig, as
// they would on a real host.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// logTail returns at most the last n bytes of the process's log.
func (p *proc) logTail(n int) string { return fileTail(p.logPath, n) }

func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	if len(b) > n {
		return "..." + string(b[len(b)-n:])
	}
	return string(b)
}

// leftovers lists the processes whose command line mentions root (the
// run's directory: data dirs, configs, binaries), other than this test
// binary. Every process the e2e starts has root in its arguments: hangar
// through --config, MinIO through its data directory, QEMU through its
// runtime directory under a host's data dir.
func leftovers(root string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []string{fmt.Sprintf("read /proc: %v", err)}
	}
	self := os.Getpid()
	var out []string
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		if strings.Contains(cmdline, root) {
			out = append(out, fmt.Sprintf("pid %d: %s", pid, cmdline))
		}
	}
	return out
}

// killLeftovers SIGKILLs the processes leftovers found.
func killLeftovers(root string) {
	for _, l := range leftovers(root) {
		var pid int
		if _, err := fmt.Sscanf(l, "pid %d:", &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestLeftovers: the end-of-run check finds a process by its arguments
// and kills it, so a leaked QEMU or daemon cannot go unnoticed.
func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	// One process whose command line names dir and that never forks: a
	// shell running "sleep; echo" would fork, and for a moment its child
	// shows the shell's command line too (two leftovers, a flaky count).
	watched := filepath.Join(dir, "watched")
	if err := os.WriteFile(watched, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := startProc("sleeper", filepath.Join(dir, "sleeper.log"), nil, "tail", "-f", watched)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(time.Second)
	if got := leftovers(dir); len(got) != 1 || !strings.Contains(got[0], dir) {
		t.Fatalf("leftovers(%s) = %q, want the sleeper", dir, got)
	}
	killLeftovers(dir)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("killLeftovers did not kill the sleeper")
	}
	if got := leftovers(dir); len(got) != 0 {
		t.Fatalf("after killLeftovers: %q", got)
	}
}
