package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestLive: a running process counts only with a marker from its command
// line; once it exited it does not, neither as a zombie (not yet waited
// for) nor after.
func TestLive(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	cmd := exec.Command("sh", "-c", "sleep 30; :", marker) // $0 = marker: on its command line
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	pidfile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !Live(pid, marker) {
		t.Fatal("running process with its marker: not live")
	}
	if Live(pid, filepath.Join(dir, "other")) {
		t.Error("live with a marker not on its command line (a reused pid would pass)")
	}
	if got, ok := FromPIDFile(pidfile, marker); !ok || got != pid {
		t.Errorf("FromPIDFile = %d, %v; want %d, true", got, ok, pid)
	}
	if _, ok := FromPIDFile(filepath.Join(dir, "missing"), marker); ok {
		t.Error("FromPIDFile of a missing pidfile: ok")
	}
	if Live(0, "") || Live(-1, "") {
		t.Error("pid <= 0 counted live")
	}

	cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for Live(pid, marker) { // a zombie until waited for
		if time.Now().After(deadline) {
			t.Fatal("killed process (a zombie now) still counts as live")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Wait()
	if _, ok := FromPIDFile(pidfile, marker); ok {
		t.Error("FromPIDFile of an exited process: ok")
	}
}
