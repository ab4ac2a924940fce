package vmtest_test

import (
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
	cmd := exec.Command("sleep", "60", filepath.Join(root, "marker"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if pids := vmtest.QEMUUnder(root); !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("QEMUUnder(%s) = %v, want %d among them", root, pids, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	// Not reaped yet: a zombie, which holds no guest.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !slices.Contains(vmtest.QEMUUnder(root), cmd.Process.Pid) {
			break
		}
	}
	if pids := vmtest.QEMUUnder(root); slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("killed process still listed: %v", pids)
	}
	cmd.Wait()
}
