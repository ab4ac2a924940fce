package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestLazyRestore runs a host with restore.lazy (h5): a guest parked on h1
// resumes on h5 before its memory is all there (the memory file is a FUSE
// mount whose chunks come on first touch, the guest runs share=off over
// it), writes more state there, parks again on h5 — the private standby,
// whose migration stream carries every page into a new memory file — and
// resumes on h1 the usual way with both tokens, its boot id and counter.
// h5's metrics show the lazy preparation, and nothing of the lazy restore
// (mount, QEMU, lazy server) is left on h5 after the guest left it. The
// guest, lazily restored on h5 again, survives a kill -9 and restart of
// h5's daemon.
func TestLazyRestore(t *testing.T) {
	timed(t)
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Fatalf("lazy restore needs root and /dev/fuse (scripts/deps.sh makes it available): %v", err)
	}
	s := stack(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	const id = "h5"
	h5, err := s.StartHost(ctx, id, map[string]any{
		"restore": map[string]any{"lazy": true},
		// Guests outlive a killed daemon (the kill -9 below).
		"qemu": map[string]any{"accel": "tcg", "keep_running": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if done, _ := h5.proc.exited(); !done {
			h5.proc.stop(30 * time.Second)
		}
		if left := leftovers(h5.DataDir); len(left) > 0 {
			t.Errorf("processes of host %s left after it stopped: %v", id, left)
		}
	})

	in := s.create(t, "lazy", "h1")
	s.fillRandom(t, in.Id, "lazy", 32)
	m1 := s.setMark(t, in.Id, "lazy-before")
	before := h5.scrape(t)

	_, took := s.standbyRestore(t, in.Id, id)
	s.checkMarks(t, in.Id, m1)
	after := h5.scrape(t)
	const prep = "hangar_host_restore_prepare_duration_seconds_count"
	if n := after.sum(prep, `source="lazy"`) - before.sum(prep, `source="lazy"`); n != 1 {
		t.Errorf("host %s counted %v lazy restore preparations, want 1 (%s)", id, n, prep)
	}
	t.Logf("parked on h1, lazily resumed on %s: %s", id, took)

	m2 := s.setMark(t, in.Id, "lazy-after")
	sn, took := s.standbyRestore(t, in.Id, "h1")
	s.checkMarks(t, in.Id, m1, m2)
	line := fmt.Sprintf("snapshot of the lazily restored guest: raw %d nonzero %d new %d; %s",
		sn.RawBytes, i64(sn.NonZeroBytes), i64(sn.NewStoredBytes), took)
	t.Log(line)
	recordf("lazy restore: private standby, back on h1", "%s", line)
	if left := leftovers(h5.DataDir + "/"); len(left) > 0 {
		t.Errorf("processes of host %s's guest left after it parked and moved: %v", id, left)
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil && containsPath(string(mounts), h5.DataDir) {
		t.Errorf("a mount under %s is left after the guest parked and moved", h5.DataDir)
	}

	// The lazy guest's FUSE server is a process of its own: kill -9 the
	// host daemon while the guest runs there (with qemu.keep_running, its
	// QEMU outlives the daemon) and start it again. The guest goes on
	// (its lazy server waits for the daemon's chunk socket if it needs a
	// chunk meanwhile); the restarted daemon re-attaches it with its
	// lazy server, and it parks and moves on with every token.
	s.standbyRestore(t, in.Id, id)
	kept := s.setMark(t, in.Id, "lazy-kept")
	h5.proc.kill9()
	if left := leftovers(h5.DataDir + "/"); len(left) < 2 {
		t.Errorf("after the kill -9 of %s, want its guest's QEMU and lazy server still running, found %v", id, left)
	}
	if _, err := s.StartHost(ctx, id, nil); err != nil {
		t.Fatalf("restart %s: %v", id, err)
	}
	err = waitFor(ctx, "instance running on its restarted host", h5.proc, func() error {
		got := s.instance(t, in.Id)
		if got.State != api.InstanceStateRunning || str(got.Host) != id {
			return fmt.Errorf("instance %s is %s on %s: %w", in.Id, got.State, str(got.Host), errNotYet)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.checkMarks(t, in.Id, m1, m2, kept)
	m3 := s.setMark(t, in.Id, "lazy-after-restart")
	sn, took = s.standbyRestore(t, in.Id, "h1")
	s.checkMarks(t, in.Id, m1, m2, kept, m3)
	if left := leftovers(h5.DataDir + "/"); len(left) > 0 {
		t.Errorf("processes of host %s's guest left after it parked and moved: %v", id, left)
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil && containsPath(string(mounts), h5.DataDir) {
		t.Errorf("a mount under %s is left after the guest parked and moved", h5.DataDir)
	}
	t.Logf("kill -9 of %s under a lazily restored guest: it ran on, re-attached; parked and resumed on h1 with every token (%s)", id, took)
	recordf("lazy restore: host killed under the guest", "the guest survived the restart, re-attached; parked (raw %d) and resumed on h1 with every token", sn.RawBytes)

	// A graceful stop of h5 ends its guests (eager or lazy) and with them
	// the lazy servers: nothing is left. The restarted host puts the lazy
	// instance back on standby on the snapshot it was restored from,
	// which resumes on h1 with every token.
	s.standbyRestore(t, in.Id, id)
	h5.proc.stop(30 * time.Second)
	if left := leftovers(h5.DataDir + "/"); len(left) > 0 {
		t.Errorf("processes of host %s left after its graceful stop: %v", id, left)
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil && containsPath(string(mounts), h5.DataDir) {
		t.Errorf("a mount under %s is left after its graceful stop", h5.DataDir)
	}
	if _, err := s.StartHost(ctx, id, nil); err != nil {
		t.Fatalf("restart %s: %v", id, err)
	}
	err = waitFor(ctx, "instance back on standby after its host's graceful stop", h5.proc, func() error {
		got := s.instance(t, in.Id)
		if got.State != api.InstanceStateStandby {
			return fmt.Errorf("instance %s is %s on %s: %w", in.Id, got.State, str(got.Host), errNotYet)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rs api.Instance
	s.cli(t, &rs, "instances", "restore", in.Id, "--host", "h1")
	if rs.State != api.InstanceStateRunning || str(rs.Host) != "h1" {
		t.Fatalf("restore after the lazy host's graceful stop: %s on %s, want Running on h1", rs.State, str(rs.Host))
	}
	s.checkMarks(t, in.Id, m1, m2, kept, m3)
}

// containsPath reports whether a line of /proc/self/mounts has a mount
// point under dir.
func containsPath(mounts, dir string) bool {
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			return true
		}
	}
	return false
}
