// Package proc tells whether a supervised process (a QEMU, a lazy FUSE
// server) found through its pidfile is still the one that wrote it.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Live reports whether pid is a live (not zombie) process whose command
// line contains marker, so that a pid reused by another program does not
// count. A zombie still has a (empty) command line but serves nothing.
func Live(pid int, marker string) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// FromPIDFile returns the pid written in the pidfile at path when that
// process is Live with marker on its command line.
func FromPIDFile(path, marker string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !Live(pid, marker) {
		return 0, false
	}
	return pid, true
}
