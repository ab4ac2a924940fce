package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/digests"
	"github.com/hangar-vm/hangar/storage/faulty"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

const uploadTimeout = 5 * time.Minute

func ptr[T any](v T) *T { return &v }

// TestStandbyRestoreAcrossHosts parks one guest and resumes it on the other
// "host" three times, each hop with another codec: zstd A→B (B's cache is
// empty), lz4 B→A, none A→B. Each time the token written into the guest's
// RAM-backed /run reads back, the boot id is unchanged and the in-memory
// counter continues.
func TestStandbyRestoreAcrossHosts(t *testing.T) {
	ctx := context.Background()
	store := bucketStore(t)
	a := newHost(t, "a", store, hostOpts{})
	b := newHost(t, "b", store, hostOpts{})
	// What the server passes: the image's name and the instance policy,
	// which the manifests carry for a server rebuilding its catalog.
	policy := &compression.Policy{Algorithm: "lz4", Level: ptr(2)}
	in, err := a.m.Create(ctx, CreateSpec{Name: "traveller", Image: "default", MemoryMiB: guestMiB, VCPUs: 1, SnapshotPolicy: policy})
	if err != nil {
		t.Fatal(err)
	}
	id := in.ID
	token, before := writeToken(t, a.agentOf(id))

	hops := []struct {
		from, to *host
		opts     StandbyOptions
		want     string
	}{
		// The server's way: its snapshot id and the setting it resolved.
		{a, b, StandbyOptions{SnapshotID: "sb-hop-0", Name: "traveller-standby", Compression: &compression.Setting{Algorithm: compression.Zstd, Level: 1}}, "zstd:1"},
		// The manager's own resolution, for callers without a server.
		{b, a, StandbyOptions{Override: &compression.Policy{Algorithm: "LZ4"}}, "lz4:0"},
		{a, b, StandbyOptions{Override: &compression.Policy{Enabled: ptr(false)}}, "none"},
	}
	for i, hop := range hops {
		t.Logf("hop %d: %s → %s with %s", i, hop.from.name, hop.to.name, hop.want)
		start := time.Now()
		st, err := hop.from.m.Standby(ctx, id, hop.opts)
		if err != nil {
			t.Fatalf("hop %d: standby: %v", i, err)
		}
		if want := hop.opts.SnapshotID; want != "" && st.Snapshot.ID != want {
			t.Fatalf("hop %d: snapshot id %s, asked %s", i, st.Snapshot.ID, want)
		}
		t.Logf("hop %d: standby returned after %v", i, time.Since(start))
		if st.State != StateStandby || st.Snapshot == nil || !st.Snapshot.Local || st.Snapshot.Compression != hop.want ||
			(st.Snapshot.Storage != StorageLocal && st.Snapshot.Storage != StorageUploading) {
			t.Fatalf("hop %d: after standby: %+v, snapshot %+v", i, st, st.Snapshot)
		}
		sid := st.Snapshot.ID
		done := hop.from.waitStorage(id, StorageCentral, uploadTimeout)
		t.Logf("hop %d: committed after %v: %+v", i, time.Since(start), *done.Snapshot.Totals)
		if done.Snapshot.Local || done.Snapshot.Totals == nil || done.Snapshot.Totals.Raw < guestMiB<<20 ||
			done.Snapshot.Progress.Total != done.Snapshot.Totals.Raw || done.Snapshot.Progress.Raw != done.Snapshot.Totals.Raw {
			t.Fatalf("hop %d: committed snapshot %+v", i, done.Snapshot)
		}
		if _, err := os.Stat(hop.from.m.dirs.snapshotDir(sid)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("hop %d: local files not dropped after commit: %v", i, err)
		}
		// Hop 0's memory never had chunk digests (a fresh boot); later
		// hops' memory was restored on this host, which recorded them,
		// so the standby upload took unchanged chunks' ids from there.
		// (The token written after each restore must still read back
		// next hop: a changed chunk never keeps its old id.)
		if p := done.Snapshot.Progress; (i == 0) != (p.Unchanged == 0) || p.Unchanged > p.NonZero {
			t.Fatalf("hop %d: upload progress %+v: unchanged bytes wrong for a memory file restored here: %v", i, p, i > 0)
		} else {
			t.Logf("hop %d: %d of %d non-zero bytes unchanged since the restore (not hashed)", i, p.Unchanged, p.NonZero)
		}
		man, err := hop.to.repo.Manifest(ctx, sid)
		if err != nil {
			t.Fatalf("hop %d: manifest: %v", i, err)
		}
		if got := (compression.Setting{Algorithm: compression.Algorithm(man.Compression.Algorithm), Level: man.Compression.Level}).String(); got != hop.want {
			t.Fatalf("hop %d: manifest compression %s, want %s", i, got, hop.want)
		}
		var rec vmRecord
		if err := json.Unmarshal(man.VM, &rec); err != nil || rec.Image != "default" || rec.Name != "traveller" ||
			rec.SnapshotPolicy == nil || rec.SnapshotPolicy.Algorithm != "lz4" || *rec.SnapshotPolicy.Level != 2 {
			t.Fatalf("hop %d: manifest vm record %s (%v)", i, man.VM, err)
		}
		if l := man.Labels; l[LabelRole] != RoleStandby || l[LabelInstanceName] != "traveller" || l[LabelImage] != "default" || l[LabelSnapshotName] != hop.opts.Name ||
			man.Committed.Before(man.Created) {
			t.Fatalf("hop %d: manifest labels %v, created %v, committed %v", i, l, man.Created, man.Committed)
		}
		// The instance moves: the server would forget it on the source.
		if err := hop.from.m.Delete(ctx, id); err != nil {
			t.Fatalf("hop %d: delete on source: %v", i, err)
		}
		storeChunks := hop.to.counter("hangar.host.restore.chunks", attribute.String("source", "store"))
		start = time.Now()
		r, err := hop.to.m.RestoreSnapshot(ctx, sid, ForkSpec{})
		if err != nil {
			t.Fatalf("hop %d: restore on %s: %v", i, hop.to.name, err)
		}
		t.Logf("hop %d: restore on %s took %v", i, hop.to.name, time.Since(start))
		if r.ID != id || r.Name != "traveller" || r.State != StateRunning || r.MemoryMiB != guestMiB || r.Image != "default" ||
			r.SnapshotPolicy == nil || r.SnapshotPolicy.Algorithm != "lz4" || r.RestoredFrom != sid {
			t.Fatalf("hop %d: restored %+v", i, r)
		}
		if i == 0 && hop.to.counter("hangar.host.restore.chunks", attribute.String("source", "store")) == storeChunks {
			t.Fatalf("hop 0: restore on a host with an empty cache fetched nothing from the store")
		}
		if _, err := os.Stat(digests.PathFor(filepath.Join(r.RunDir, vmhost.MemoryFile))); err != nil {
			t.Fatalf("hop %d: the restored memory file has no chunk digests: %v", i, err)
		}
		c := hop.to.agentOf(id)
		checkResumed(t, c, token, before)
		token, before = writeToken(t, c)
	}
	if n := a.counter("hangar.host.jobs", attribute.String("kind", "upload"), attribute.String("result", "committed")); n != 2 {
		t.Errorf("host a: %d committed upload jobs, want 2", n)
	}
	if n := b.counter("hangar.host.jobs", attribute.String("result", "committed"), attribute.String("algorithm", "lz4")); n != 1 {
		t.Errorf("host b: %d committed lz4 upload jobs, want 1", n)
	}
	if n := a.counter("hangar.host.snapshot.bytes", attribute.String("kind", "raw")); n < 2*guestMiB<<20 {
		t.Errorf("host a: %d raw bytes uploaded, want at least two guests' worth", n)
	}
	if err := b.m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// TestStoreTroubleAndPreemption: with the store down, a standby still
// parks the VM; the upload shows the error and retries, and the VM stays
// restorable from its local files (the retrying job is preempted). When
// the store comes back, a retry commits. With a slow store, a restore
// preempts the running upload and nothing half-uploaded becomes visible.
func TestStoreTroubleAndPreemption(t *testing.T) {
	ctx := context.Background()
	store := faulty.New(bucketStore(t))
	a := newHost(t, "a", store, hostOpts{})
	id := a.create("parked").ID
	preempted := func() int64 {
		return a.counter("hangar.host.preemptions", attribute.String("operation", "restore"))
	}

	t.Run("store down, restore from local files", func(t *testing.T) {
		c := a.agentOf(id)
		token, before := writeToken(t, c)
		store.SetOutage(true)
		defer store.SetOutage(false)
		st, err := a.m.Standby(ctx, id, StandbyOptions{})
		if err != nil {
			t.Fatalf("standby with the store down: %v", err)
		}
		sid := st.Snapshot.ID
		in := a.waitStorage(id, StorageError, time.Minute)
		if !strings.Contains(in.Snapshot.Error, "unavailable") || !in.Snapshot.Local {
			t.Fatalf("snapshot while the store is down: %+v", in.Snapshot)
		}
		waitJob(t, a, sid, func(j Job) bool { return j.State == JobRetrying && j.Attempts >= 2 })
		p0 := preempted()
		r, err := a.m.Restore(ctx, id)
		if err != nil {
			t.Fatalf("restore from local files with the store down: %v", err)
		}
		if r.State != StateRunning || r.Snapshot != nil {
			t.Fatalf("after restore: %+v", r)
		}
		if got := preempted(); got != p0+1 {
			t.Fatalf("preemptions %d, want %d", got, p0+1)
		}
		if jobs, _ := a.m.Jobs(ctx); len(jobs) != 0 {
			t.Fatalf("jobs left after the restore: %+v", jobs)
		}
		store.SetOutage(false)
		noManifest(t, a.repo, sid)
		checkResumed(t, a.agentOf(id), token, before)
	})

	t.Run("store comes back, retry commits", func(t *testing.T) {
		token, before := writeToken(t, a.agentOf(id))
		store.SetOutage(true)
		st, err := a.m.Standby(ctx, id, StandbyOptions{Override: &compression.Policy{Algorithm: "lz4", Level: ptr(3)}})
		if err != nil {
			t.Fatal(err)
		}
		a.waitStorage(id, StorageError, time.Minute)
		store.SetOutage(false)
		in := a.waitStorage(id, StorageCentral, uploadTimeout)
		if in.Snapshot.Error != "" || in.Snapshot.Compression != "lz4:3" {
			t.Fatalf("committed snapshot %+v", in.Snapshot)
		}
		// The upload filled the host cache: restoring here fetches nothing.
		fromStore := a.counter("hangar.host.restore.chunks", attribute.String("source", "store"))
		if _, err := a.m.Restore(ctx, id); err != nil {
			t.Fatalf("restore from central: %v", err)
		}
		if got := a.counter("hangar.host.restore.chunks", attribute.String("source", "store")); got != fromStore {
			t.Fatalf("restore after a local upload fetched %d chunks from the store, want 0 (cache)", got-fromStore)
		}
		if _, err := a.repo.Manifest(ctx, st.Snapshot.ID); err != nil {
			t.Fatal(err)
		}
		checkResumed(t, a.agentOf(id), token, before)
	})

	t.Run("slow store, restore preempts the upload", func(t *testing.T) {
		token, before := writeToken(t, a.agentOf(id))
		// Every create (chunks, the manifest) now hangs until cancelled.
		store.AddFault(faulty.OpCreate, faulty.Fault{Delay: time.Hour, Times: -1})
		st, err := a.m.Standby(ctx, id, StandbyOptions{Override: &compression.Policy{Algorithm: "zstd", Level: ptr(3)}})
		if err != nil {
			t.Fatal(err)
		}
		sid := st.Snapshot.ID
		waitJob(t, a, sid, func(j Job) bool { return j.State == JobRunning })
		time.Sleep(500 * time.Millisecond) // let the pipeline reach the store
		p0 := preempted()
		r, err := a.m.Restore(ctx, id)
		if err != nil {
			t.Fatalf("restore during upload: %v", err)
		}
		if got := preempted(); got != p0+1 {
			t.Fatalf("preemptions %d, want %d", got, p0+1)
		}
		if r.Snapshot != nil {
			t.Fatalf("restored instance still shows snapshot %+v", r.Snapshot)
		}
		noManifest(t, a.repo, sid)
		checkResumed(t, a.agentOf(id), token, before)
		if n := a.counter("hangar.host.jobs", attribute.String("result", "preempted")); n != 2 {
			t.Fatalf("%d preempted jobs in metrics, want 2", n)
		}
	})
	if err := a.m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func waitJob(t *testing.T, h *host, sid string, ok func(Job) bool) Job {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		jobs, _ := h.m.Jobs(context.Background())
		for _, j := range jobs {
			if j.ID == sid && ok(j) {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never reached the wanted state: %+v", sid, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForks: a local fork reads the standby files without disturbing the
// source; three concurrent forks of the committed snapshot on another host
// all run, each with its own memory, and that host read each chunk from
// the store once.
func TestForks(t *testing.T) {
	ctx := context.Background()
	shared := bucketStore(t)
	storeB := newCountingStore(shared)
	a := newHost(t, "a", shared, hostOpts{cfg: Config{KeepLocalAfterCommit: true}})
	b := newHost(t, "b", storeB, hostOpts{})
	id := a.create("origin").ID
	token, before := writeToken(t, a.agentOf(id))
	st, err := a.m.Standby(ctx, id, StandbyOptions{Override: &compression.Policy{Algorithm: "zstd"}})
	if err != nil {
		t.Fatal(err)
	}
	sid := st.Snapshot.ID

	// A local fork, possibly while the upload runs: it must not cancel it.
	fa, err := a.m.Fork(ctx, id, ForkSpec{Name: "fork-a"})
	if err != nil {
		t.Fatalf("local fork: %v", err)
	}
	ca := a.agentOf(fa.ID)
	checkResumed(t, ca, token, before)
	tokA, _ := writeToken(t, ca)
	in := a.waitStorage(id, StorageCentral, uploadTimeout)
	if !in.Snapshot.Local || in.State != StateStandby {
		t.Fatalf("source after a local fork and the commit: %+v %+v", in, in.Snapshot)
	}
	if n := a.counter("hangar.host.preemptions"); n != 0 {
		t.Fatalf("a fork preempted the upload (%d)", n)
	}

	man, err := b.repo.Manifest(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for _, f := range man.Files {
		for _, c := range f.Chunks {
			if !c.Hole {
				distinct[c.ID] = true
			}
		}
	}
	forks := make([]Instance, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range forks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			forks[i], errs[i] = b.m.Fork(ctx, sid, ForkSpec{Name: fmt.Sprintf("fork-b%d", i)})
		}()
	}
	wg.Wait()
	tokens := make([]string, 3)
	clients := make([]*agent.Client, 3)
	for i, f := range forks {
		if errs[i] != nil {
			t.Fatalf("fork %d on b: %v", i, errs[i])
		}
		if f.State != StateRunning || f.Snapshot == nil || f.Snapshot.ID != sid {
			t.Fatalf("fork %d: %+v", i, f)
		}
		clients[i] = b.agentOf(f.ID)
		checkResumed(t, clients[i], token, before)
		tokens[i], _ = writeToken(t, clients[i])
	}
	for i, c := range clients {
		got, err := c.ReadFile(ctx, "/run/token")
		if err != nil || string(got) != tokens[i] {
			t.Fatalf("fork %d reads %q, %v; want its own %q", i, got, err, tokens[i])
		}
	}
	if got, err := ca.ReadFile(ctx, "/run/token"); err != nil || string(got) != tokA {
		t.Fatalf("local fork reads %q, %v; want %q", got, err, tokA)
	}
	n, twice := storeB.chunkGets()
	if n != len(distinct) || len(twice) > 0 {
		t.Fatalf("host b read %d chunk objects (%d read more than once: %v); the snapshot has %d distinct chunks", n, len(twice), twice, len(distinct))
	}
	t.Logf("3 forks on b: %d distinct chunks, each read from the store once", n)
	// The metric counts each store read once, however the forks shared
	// their fetches: the others count those chunks as shared.
	fromStore := b.counter("hangar.host.restore.chunks", attribute.String("source", "store"))
	fromCache := b.counter("hangar.host.restore.chunks", attribute.String("source", "cache"))
	sharedN := b.counter("hangar.host.restore.chunks", attribute.String("source", "shared"))
	if fromStore != int64(len(distinct)) || fromStore+fromCache+sharedN != 3*int64(len(distinct)) {
		t.Fatalf("restore.chunks: store %d, cache %d, shared %d; want store %d and %d in all", fromStore, fromCache, sharedN, len(distinct), 3*len(distinct))
	}
	t.Logf("restore.chunks on b: store %d, cache %d, shared %d", fromStore, fromCache, sharedN)

	// The source is untouched and can still be restored.
	if _, err := a.m.Restore(ctx, id); err != nil {
		t.Fatalf("restore of the fork source: %v", err)
	}
	checkResumed(t, a.agentOf(id), token, before)
}

// TestRefusals: what a restore must refuse, with no VM resumed: a snapshot
// for another guest image, one with a corrupt chunk, unknown ids, and
// illegal transitions.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	store := bucketStore(t)
	a := newHost(t, "a", store, hostOpts{cfg: Config{CommitWait: 200 * time.Millisecond}})
	id := a.create("victim").ID

	t.Run("unknown ids", func(t *testing.T) {
		for _, bad := range []string{"nope", "../etc", "", "UPPER"} {
			if _, err := a.m.Get(ctx, bad); !errors.Is(err, ErrNotFound) {
				t.Errorf("get %q: %v, want ErrNotFound", bad, err)
			}
			if _, err := a.m.Restore(ctx, bad); !errors.Is(err, ErrNotFound) {
				t.Errorf("restore %q: %v, want ErrNotFound", bad, err)
			}
			if err := a.m.Delete(ctx, bad); !errors.Is(err, ErrNotFound) {
				t.Errorf("delete %q: %v, want ErrNotFound", bad, err)
			}
		}
		if _, err := a.m.RestoreSnapshot(ctx, "s-never-committed", ForkSpec{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("restore of a missing snapshot: %v, want ErrNotFound", err)
		}
	})

	t.Run("illegal transitions", func(t *testing.T) {
		if _, err := a.m.Restore(ctx, id); !errors.Is(err, ErrInvalidState) {
			t.Errorf("restore of a running instance: %v, want ErrInvalidState", err)
		}
		if _, err := a.m.Start(ctx, id); !errors.Is(err, ErrInvalidState) {
			t.Errorf("start of a running instance: %v, want ErrInvalidState", err)
		}
		if _, err := a.m.Fork(ctx, id, ForkSpec{Name: "f"}); !errors.Is(err, ErrInvalidState) {
			t.Errorf("fork of a running instance: %v, want ErrInvalidState", err)
		}
		if _, err := a.m.Standby(ctx, id, StandbyOptions{Override: &compression.Policy{Algorithm: "zstd", Level: ptr(42)}}); !errors.Is(err, compression.ErrInvalidPolicy) {
			t.Errorf("standby with level 42: %v, want a policy error", err)
		} else if in, _ := a.m.Get(ctx, id); in.State != StateRunning {
			t.Errorf("an invalid policy changed the state to %s", in.State)
		}
		if _, err := a.m.Create(ctx, CreateSpec{ID: id, Name: "dup", MemoryMiB: guestMiB, VCPUs: 1}); !errors.Is(err, ErrAlreadyExists) {
			t.Errorf("create with a taken id: %v, want ErrAlreadyExists", err)
		}
	})

	// A committed snapshot to play with.
	st, err := a.m.Standby(ctx, id, StandbyOptions{Override: &compression.Policy{Algorithm: "zstd"}})
	if err != nil {
		t.Fatal(err)
	}
	sid := st.Snapshot.ID
	a.waitStorage(id, StorageCentral, uploadTimeout)
	if _, err := a.m.Standby(ctx, id, StandbyOptions{}); !errors.Is(err, ErrInvalidState) {
		t.Errorf("standby of a standby instance: %v, want ErrInvalidState", err)
	}
	if _, err := a.m.Stop(ctx, id); !errors.Is(err, ErrInvalidState) {
		t.Errorf("stop of a standby instance: %v, want ErrInvalidState", err)
	}

	t.Run("image mismatch", func(t *testing.T) {
		other := testImage(t)
		other.Digest = "sha256:" + strings.Repeat("0", 64)
		c := newHost(t, "c", store, hostOpts{image: &other})
		_, err := c.m.RestoreSnapshot(ctx, sid, ForkSpec{})
		if !errors.Is(err, vmhost.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "guest image") {
			t.Fatalf("restore with another image: %v, want ErrSnapshotMismatch naming the image", err)
		}
		if list, _ := c.m.List(ctx); len(list) != 0 {
			t.Fatalf("refused restore left instances: %+v", list)
		}
	})

	t.Run("corrupt chunk", func(t *testing.T) {
		man, err := a.repo.Manifest(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		var victim string
		for _, c := range man.Files[0].Chunks {
			if !c.Hole {
				victim = c.ID
				break
			}
		}
		key := "chunks/" + victim[:2] + "/" + victim
		rc, err := store.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		buf := new(strings.Builder)
		_, err = copyAll(buf, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		b := []byte(buf.String())
		b[len(b)-1] ^= 0xff // flip the last payload byte
		if err := store.Put(ctx, key, strings.NewReader(string(b)), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		d := newHost(t, "d", store, hostOpts{}) // empty cache: must read the store
		_, err = d.m.RestoreSnapshot(ctx, sid, ForkSpec{ID: "corrupt-restore"})
		if !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("restore with a corrupt chunk: %v, want ErrCorrupt", err)
		}
		if _, err := d.m.Get(ctx, "corrupt-restore"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("refused restore left an instance: %v", err)
		}
		if pids := qemuUnder(d.root); len(pids) > 0 {
			t.Fatalf("a VM runs after a refused restore: %v", pids)
		}
	})
}
