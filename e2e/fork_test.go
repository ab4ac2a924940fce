package e2e

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

// TestForkFanOut starts four forks of one central snapshot at once, two on
// each host. Each fork resumes the source's memory (its token and boot
// id), then lives its own life (a token of its own that no other fork
// sees), and each host fetches each chunk of the snapshot from the store
// at most once: the download counters on the hosts' /metrics grow by at
// most the snapshot's number of distinct chunks.
func TestForkFanOut(t *testing.T) {
	timed(t)
	s := stack(t)
	src := s.create(t, "fan-src", "h1")
	base := s.setMark(t, src.Id, "source")
	var sb api.Instance
	s.cli(t, &sb, "instances", "standby", src.Id)
	if sb.SnapshotId == nil {
		t.Fatalf("standby answered no snapshot id: %+v", sb)
	}
	sid := *sb.SnapshotId
	sn := s.waitCentral(t, sid)
	chunks := s.verify(t, sid).Chunks
	if chunks == 0 {
		t.Fatalf("store verify %s checked no chunks", sid)
	}

	hostIDs := []string{"h1", "h2"}
	before := map[string]metrics{}
	for _, id := range hostIDs {
		before[id] = s.Host(t, id).scrape(t)
	}
	forks := []struct{ name, host string }{{"fan-1", "h1"}, {"fan-2", "h2"}, {"fan-3", "h1"}, {"fan-4", "h2"}}
	results := make([]cliResult, len(forks))
	errs := make([]error, len(forks))
	var wg sync.WaitGroup
	for i, f := range forks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.runE("--json", "snapshots", "fork", sid, "--name", f.name, "--host", f.host)
		}()
	}
	wg.Wait()
	ids := make([]string, len(forks))
	for i, f := range forks {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		var in api.Instance
		if results[i].code == 0 {
			if err := json.Unmarshal([]byte(results[i].stdout), &in); err != nil {
				t.Fatalf("%v\ndecode: %v", results[i], err)
			}
		}
		if in.Id != "" {
			s.deleteAtEnd(t, in.Id)
		}
		if results[i].code != 0 {
			t.Fatalf("fork %s: %v", f.name, results[i])
		}
		if in.State != api.InstanceStateRunning || str(in.Host) != f.host {
			t.Fatalf("fork %s: %s on %s, want Running on %s", f.name, in.State, str(in.Host), f.host)
		}
		ids[i] = in.Id
		t.Logf("fork %s (%s) running on %s after %v", f.name, in.Id, f.host, results[i].took)
	}

	// Every fork resumed the source's memory, then writes its own.
	own := make([]mark, len(ids))
	for i, id := range ids {
		s.checkMarks(t, id, base)
		own[i] = s.setMark(t, id, forks[i].name)
	}
	for i, id := range ids {
		s.checkMarks(t, id, base, own[i])
		c := s.guest(t, id)
		for j := range ids {
			if j == i {
				continue
			}
			if b, err := c.ReadFile(t.Context(), own[j].file); err == nil {
				t.Errorf("fork %s sees fork %s's file %s (%q): their memory is shared", forks[i].name, forks[j].name, own[j].file, b)
			}
		}
		c.Close()
	}

	// Each host fetched each chunk from the store at most once.
	const downloads = "hangar_snapshot_download_chunks_total"
	for _, id := range hostIDs {
		after := s.Host(t, id).scrape(t)
		if !after.has(downloads) {
			t.Fatalf("host %s: /metrics has no %s", id, downloads)
		}
		fromStore := after.sum(downloads, `source="store"`) - before[id].sum(downloads, `source="store"`)
		fromCache := after.sum(downloads, `source="cache"`) - before[id].sum(downloads, `source="cache"`)
		line := fmt.Sprintf("%d distinct chunks; 2 forks fetched %v from the store, %v from the cache", chunks, fromStore, fromCache)
		t.Logf("host %s: %s", id, line)
		recordf("fork fan-out downloads on "+id, "%s", line)
		if fromStore > float64(chunks) {
			t.Errorf("host %s fetched %v chunks from the store for 2 forks of a snapshot of %d distinct chunks: some more than once", id, fromStore, chunks)
		}
	}
	// h2 never held the snapshot: its forks must have fetched something
	// (the origin h1 may serve everything from its cache).
	after2 := s.Host(t, "h2").scrape(t)
	if after2.sum(downloads, `source="store"`) <= before["h2"].sum(downloads, `source="store"`) {
		t.Errorf("host h2 fetched nothing from the store for forks of snapshot %s, which it never held", sid)
	}
	t.Logf("snapshot %s: raw %d, non-zero %d, compressed %d", sid, sn.RawBytes, i64(sn.NonZeroBytes), i64(sn.CompressedBytes))
}
