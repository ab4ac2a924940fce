package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/api"
)

// TestKillHostDuringUpload kills a host daemon with SIGKILL while its
// standby upload is in flight, after some of the snapshot's chunks reached
// the bucket, and starts it again on the same data directory: the
// restarted daemon finds the job, resumes the upload, and the snapshot
// commits with no chunk stored twice (every chunk object in the bucket at
// the kill keeps its modification time and ETag, and the restarted host
// stored exactly the chunk objects that were missing). The instance then
// restores on another host with its RAM intact. The host is one started
// for this test, so the shared h1 and h2 stay up.
func TestKillHostDuringUpload(t *testing.T) {
	timed(t)
	s := stack(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	const id = "h4"
	hk, err := s.StartHost(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if done, _ := hk.proc.exited(); !done {
			hk.proc.stop(30 * time.Second)
		}
		if left := leftovers(hk.DataDir); len(left) > 0 {
			t.Errorf("processes of host %s left after it stopped: %v", id, left)
		}
	})

	// A bigger guest holding incompressible RAM, uploaded with the slowest
	// zstd level: the upload takes long enough (several seconds under TCG
	// here) to be caught with some but not all of its chunks stored.
	in := s.create(t, "killhost", id, "--memory", "256")
	s.fillRandom(t, in.Id, "noise", 96)
	m := s.setMark(t, in.Id, "killhost")
	base := s.chunkObjects(t)

	sid := *s.slowStandby(t, ctx, in.Id).SnapshotId
	manifestPrefix := "snapshots/" + sid + "/"

	// Wait until the upload is visibly in flight: the snapshot uploading
	// and a few of its chunks in the bucket, the manifest not yet.
	const minStored = 3
	var seen int
	var over bool
	err = waitFor(ctx, "upload in flight with chunks stored", hk.proc, func() error {
		sn := s.snapshot(t, sid)
		if over = sn.State == api.SnapshotStateCentral; over {
			return nil
		}
		seen = len(added(base, s.chunkObjects(t)))
		if sn.State != api.SnapshotStateUploading || seen < minStored {
			return fmt.Errorf("snapshot %s is %s with %d chunks stored: %w", sid, sn.State, seen, errNotYet)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if over {
		t.Fatalf("snapshot %s became central before %d of its chunks were seen stored: the upload was not caught in flight", sid, minStored)
	}
	if keys := s.bucketKeys(t, manifestPrefix); len(keys) > 0 {
		t.Fatalf("the upload committed (%v) before the kill: not caught in flight", keys)
	}
	hk.proc.kill9()
	killed := time.Now()
	if left := leftovers(hk.DataDir); len(left) > 0 {
		t.Errorf("processes of the killed host left: %v", left)
	}
	// MinIO may still finish a PUT whose body it had received before the
	// kill: take the bucket's state once it has settled.
	atKill := s.settledChunkObjects(t, ctx)
	storedBefore := added(base, atKill)
	if keys := s.bucketKeys(t, manifestPrefix); len(keys) > 0 {
		t.Fatalf("the snapshot committed (%v) although its host was killed mid-upload", keys)
	}
	t.Logf("killed %s with %d of the snapshot's chunks stored (saw %d at the kill)", id, len(storedBefore), seen)

	if _, err := s.StartHost(ctx, id, nil); err != nil {
		t.Fatalf("restart %s: %v", id, err)
	}
	restarted := time.Now()
	sn := s.waitCentral(t, sid)
	committed := time.Since(restarted).Round(time.Millisecond)
	after := s.chunkObjects(t)
	storedAfter := added(atKill, after)

	// No chunk stored twice: what was in the bucket at the kill is
	// untouched (a second PUT would give it a new modification time), and
	// the restarted host's count of chunks it stored matches the objects
	// that appeared since: every chunk it PUT was missing before.
	for key, o := range atKill {
		a, ok := after[key]
		switch {
		case !ok:
			t.Errorf("chunk %s present at the kill is gone", key)
		case !a.LastModified.Equal(o.LastModified) || a.ETag != o.ETag:
			t.Errorf("chunk %s stored again by the restarted host: modified %v etag %s, was %v etag %s",
				key, a.LastModified, a.ETag, o.LastModified, o.ETag)
		}
	}
	met := hk.scrape(t)
	const chunks = "hangar_snapshot_upload_chunks_total"
	uploaded := met.sum(chunks, `result="uploaded"`)
	dedup := met.sum(chunks, `result="deduplicated"`)
	if int(uploaded) != len(storedAfter) {
		t.Errorf("the restarted host counted %v chunks uploaded (%s), but %d chunk objects appeared in the bucket since the kill", uploaded, chunks, len(storedAfter))
	}
	if len(storedAfter) == 0 {
		t.Errorf("no chunk was stored after the restart: the upload was over at the kill, nothing was resumed")
	}
	if int(dedup) < len(storedBefore) {
		t.Errorf("the restarted host counted %v chunks already stored, fewer than the %d its first run stored: the resume did not skip them", dedup, len(storedBefore))
	}

	// The manifest commits once, by the restarted host, after the kill.
	keys := s.bucketKeys(t, manifestPrefix)
	if !slices.Equal(keys, []string{manifestPrefix + "manifest.json"}) {
		t.Errorf("snapshot %s's objects in the bucket: %v, want its manifest only", sid, keys)
	}
	const jobs = "hangar_host_jobs_total"
	if n := met.sum(jobs, `result="committed"`); n != 1 {
		t.Errorf("the restarted host counted %v committed jobs (%s), want 1", n, jobs)
	}
	if sn.CommittedAt == nil || sn.CommittedAt.Before(killed) {
		t.Errorf("snapshot %s committed at %v, want after the kill at %v", sid, sn.CommittedAt, killed)
	}
	rep := s.verify(t, sid)
	line := fmt.Sprintf("%d chunks stored before the kill, %d after the restart (%d skipped); committed %v after the restart",
		len(storedBefore), len(storedAfter), int(dedup), committed)
	t.Logf("%s; verify: %d chunks, %d stored bytes", line, rep.Chunks, rep.Bytes)
	recordf("kill -9 during upload: resumed", "%s", line)

	var rs api.Instance
	r := s.cli(t, &rs, "instances", "restore", in.Id, "--host", "h1")
	if rs.State != api.InstanceStateRunning || str(rs.Host) != "h1" {
		t.Fatalf("restore after the resumed upload: %s on %s, want Running on h1", rs.State, str(rs.Host))
	}
	s.checkMarks(t, in.Id, m)
	t.Logf("restored on h1 in %v", r.took.Round(time.Millisecond))
	// The daemon runs on (its config file is beside its data directory);
	// the guest's QEMU, whose arguments name paths inside it, must not.
	if left := leftovers(hk.DataDir + "/"); len(left) > 0 {
		t.Errorf("processes of host %s's guests left after the restore elsewhere: %v", id, left)
	}
}

// chunkObjects lists the bucket's chunk objects straight from MinIO, by
// key.
func (s *Stack) chunkObjects(t *testing.T) map[string]minio.ObjectInfo {
	t.Helper()
	c, err := s.MinIO.Client()
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]minio.ObjectInfo{}
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: "chunks/", Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list chunks: %v", o.Err)
		}
		objs[o.Key] = o
	}
	return objs
}

// settledChunkObjects lists the chunk objects until two listings a second
// apart agree.
func (s *Stack) settledChunkObjects(t *testing.T, ctx context.Context) map[string]minio.ObjectInfo {
	t.Helper()
	prev := s.chunkObjects(t)
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("the bucket's chunks did not settle: %v", ctx.Err())
		case <-time.After(time.Second):
		}
		cur := s.chunkObjects(t)
		if sameObjects(prev, cur) {
			return cur
		}
		prev = cur
	}
}

func sameObjects(a, b map[string]minio.ObjectInfo) bool {
	return maps.EqualFunc(a, b, func(x, y minio.ObjectInfo) bool {
		return x.LastModified.Equal(y.LastModified) && x.ETag == y.ETag
	})
}

// added returns the keys in after that are not in before, sorted.
func added(before, after map[string]minio.ObjectInfo) []string {
	var keys []string
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, strings.Compare)
	return keys
}
