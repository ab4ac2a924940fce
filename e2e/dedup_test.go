package e2e

import (
	"fmt"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestDedup: standby, restore, a small change in the guest, standby
// again: the second upload stores a small fraction of what the first did,
// the unchanged chunks being in the bucket already.
func TestDedup(t *testing.T) {
	timed(t)
	s := stack(t)
	// A bigger guest, mostly holding data that survives unchanged: the
	// guest's own churn between two standbys (its kernel and agent touch
	// pages all over memory, and a 4 MiB chunk changes with any of its
	// pages) must not hide what dedup saves.
	in := s.create(t, "dedup", "h2", "--memory", "256")
	s.fillRandom(t, in.Id, "noise", 96) // RAM that only dedup can save
	h2 := s.Host(t, "h2")
	m1 := s.setMark(t, in.Id, "first")

	standby := func() api.Snapshot {
		t.Helper()
		var sb api.Instance
		s.cli(t, &sb, "instances", "standby", in.Id)
		return s.waitCentral(t, str(sb.SnapshotId))
	}
	first := standby()
	var rs api.Instance
	s.cli(t, &rs, "instances", "restore", in.Id, "--host", "h2")
	s.checkMarks(t, in.Id, m1)
	// The small change: a few KiB written in the guest.
	m2 := s.setMark(t, in.Id, "second")
	s.exec(t, in.Id, "dd if=/dev/urandom of=/tmp/small bs=4k count=4 2>/dev/null")
	before := h2.scrape(t)
	second := standby()
	after := h2.scrape(t)
	const moved = "hangar_host_snapshot_bytes_total"
	dedup := after.sum(moved, `kind="deduplicated"`) - before.sum(moved, `kind="deduplicated"`)

	n1, n2 := i64(first.NewStoredBytes), i64(second.NewStoredBytes)
	line := fmt.Sprintf("1st stored %d B (non-zero %d), 2nd %d B (non-zero %d, %.0f B already in the bucket): %.1f%%",
		n1, i64(first.NonZeroBytes), n2, i64(second.NonZeroBytes), dedup, 100*float64(n2)/float64(max(n1, 1)))
	t.Log(line)
	recordf("dedup: new bytes stored by 1st / 2nd standby", "%s", line)
	if n1 < 96<<20 {
		t.Errorf("first upload stored %d bytes, less than the 96 MiB of random data in the guest", n1)
	}
	if n2 <= 0 || n2*4 > n1 {
		t.Errorf("second upload stored %d bytes, want a small fraction (under a quarter) of the first's %d", n2, n1)
	}
	if dedup < 96<<20 {
		t.Errorf("host h2 counted %.0f deduplicated bytes for the second upload, less than the 96 MiB of unchanged random data", dedup)
	}

	s.cli(t, &rs, "instances", "restore", in.Id, "--host", "h1")
	s.checkMarks(t, in.Id, m1, m2)
}
