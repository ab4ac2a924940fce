package vmtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/vmtest"
)

// TestQEMUUnder: a process whose command line names the directory is
// found; once it has exited (and been reaped, or is a zombie) it is not.
func TestQEMUUnder(t *testing.T) {
	root := vmtest.ShortTemp(t)
	if pids := vmtest.QEMUUnder(root); len(pids) != 0 {
		t.Fatalf("fresh directory has processes: %v", pids)
	}
	marker := filepath.Join(root, "marker")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tail", "-f", marker) // runs until killed

	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Until the child has exec'd, its command line is the test binary's.
	listed := func() bool { return slices.Contains(vmtest.QEMUUnder(root), cmd.Process.Pid) }
	waitFor(func() bool { return listed() })
	if pids := vmtest.QEMUUnder(root); !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("QEMUUnder(%s) = %v, want %d among them", root, pids, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	// Not reaped yet: a zombie, which holds no guest.
	waitFor(func() bool { return !listed() })
	if pids := vmtest.QEMUUnder(root); slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("killed process still listed: %v", pids)
	}
	cmd.Wait()
}

// waitFor polls cond for up to 30s (a generous bound on a shared machine,
// not a timing assertion).
func waitFor(cond func() bool) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !cond(); {
		time.Sleep(10 * time.Millisecond)
	}
}
