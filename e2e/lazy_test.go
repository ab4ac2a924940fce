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
// (mount, QEMU) is left on h5 after the guest left it.
func TestLazyRestore(t *testing.T) {
	timed(t)
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Fatalf("lazy restore needs root and /dev/fuse (scripts/deps.sh makes it available): %v", err)
	}
	s := stack(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	const id = "h5"
	h5, err := s.StartHost(ctx, id, map[string]any{"restore": map[string]any{"lazy": true}})
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

	// The lazy guest's FUSE server lives in its host daemon: kill -9 that
	// daemon while the guest runs there and start it again. The guest
	// cannot go on (its memory file's server is gone); the host puts the
	// instance back on standby on the snapshot it was restored from, the
	// server shows that, and it resumes elsewhere with the state of that
	// snapshot — the token written after the lazy restore is lost, the
	// earlier ones are not.
	s.standbyRestore(t, in.Id, id)
	lost := s.setMark(t, in.Id, "lazy-lost")
	h5.proc.kill9()
	if _, err := s.StartHost(ctx, id, nil); err != nil {
		t.Fatalf("restart %s: %v", id, err)
	}
	err = waitFor(ctx, "instance back on standby after its host's restart", h5.proc, func() error {
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
		t.Fatalf("restore after the lazy host's restart: %s on %s, want Running on h1", rs.State, str(rs.Host))
	}
	s.checkMarks(t, in.Id, m1, m2)
	c := s.guest(t, in.Id)
	defer c.Close()
	if b, err := c.ReadFile(ctx, lost.file); err == nil {
		t.Errorf("%s reads %q after the fallback: the guest's work after the lazy restore should be gone", lost.file, b)
	}
	if left := leftovers(h5.DataDir + "/"); len(left) > 0 {
		t.Errorf("processes of host %s's guest left after its restart: %v", id, left)
	}
	t.Logf("kill -9 of %s under a lazily restored guest: back on standby, resumed on h1 with the tokens of its snapshot", id)
	recordf("lazy restore: host killed under the guest", "standby on its committed snapshot, resumed on h1")
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
