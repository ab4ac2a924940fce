package vmtest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/hangar-vm/hangar/internal/testenv"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// Driver returns a TCG driver (QEMU from testenv, logging to log, which
// may be nil). When the test ends it is closed and then CheckNoQEMU(root)
// runs. Cleanups run last-in first-out, so whatever the caller stacks on
// the driver afterwards (a manager, a cache) is closed before it.
func Driver(t testing.TB, root string, log *slog.Logger) *qemu.Driver {
	t.Helper()
	d, err := qemu.New(context.Background(), qemu.Settings{Binary: testenv.QEMUBinary(t), Accel: qemu.AccelTCG, Logger: log})
	if err != nil {
		t.Fatalf("qemu.New: %v", err)
	}
	t.Cleanup(func() {
		d.Close()
		CheckNoQEMU(t, root)
	})
	return d
}

// CheckNoQEMU fails the test if a QEMU (any live process whose command
// line mentions root) is left under root, and kills what it finds so
// that one failed test does not slow down the next.
func CheckNoQEMU(t testing.TB, root string) {
	t.Helper()
	if pids := QEMUUnder(root); len(pids) > 0 {
		t.Errorf("qemu processes left under %s: %v", root, pids)
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// QEMUUnder lists live processes whose command line mentions root.
// Zombies are not counted: they hold no guest, only an exit status their
// parent has not collected yet.
func QEMUUnder(root string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte(root)) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}
