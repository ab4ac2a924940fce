package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/api"
)

// TestHostLoss kills a host with SIGKILL while it holds a central standby
// snapshot (and keeps its local files, so that the server would prefer
// it): the server shows the host unavailable, and the instance restores
// on another host from the bucket with its memory intact. The host is a
// third one started for this test, so the shared h1 and h2 stay up.
func TestHostLoss(t *testing.T) {
	timed(t)
	s := stack(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	h3, err := s.StartHost(ctx, "h3", map[string]any{"snapshot": map[string]any{"keep_local_after_commit": true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a failure before the kill must not leave h3 running
		if done, _ := h3.proc.exited(); !done {
			h3.proc.stop(30 * time.Second)
		}
	})
	in := s.create(t, "lost", "h3")
	m := s.setMark(t, in.Id, "lost")
	var sb api.Instance
	s.cli(t, &sb, "instances", "standby", in.Id)
	sn := s.waitCentral(t, str(sb.SnapshotId))
	t.Logf("snapshot %s central, held locally by %v", sn.Id, sn.Hosts)

	h3.proc.kill9()
	killed := time.Now()
	if left := leftovers(h3.DataDir); len(left) > 0 {
		t.Errorf("processes of the killed host left: %v", left)
	}
	var st api.Host
	err = waitFor(ctx, "h3 unavailable", nil, func() error {
		st = s.hostStates(t)["h3"]
		if st.State != api.HostStateUnavailable {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v: h3 is %q", err, st.State)
	}
	t.Logf("h3 shown unavailable %v after the kill", time.Since(killed).Round(time.Millisecond))
	recordf("host loss: unavailable after kill -9", "%v", time.Since(killed).Round(time.Millisecond))

	var rs api.Instance
	r := s.cli(t, &rs, "instances", "restore", in.Id)
	if rs.State != api.InstanceStateRunning || rs.Host == nil || *rs.Host == "h3" {
		t.Fatalf("restore after losing h3: %s on %s, want Running on another host", rs.State, str(rs.Host))
	}
	s.checkMarks(t, in.Id, m)
	t.Logf("restored on %s in %v", *rs.Host, r.took.Round(time.Millisecond))
	if hs := s.hostStates(t); hs["h3"].State != api.HostStateUnavailable {
		t.Errorf("h3 is %s after the restore, want unavailable", hs["h3"].State)
	}
}
