package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/storage/cache"
	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
	"github.com/hangar-vm/hangar/vmhost/manager"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// runVM measures one guest's standby, upload and restore through two
// instance managers ("hosts" a and b: own data directory, QEMU driver and
// chunk cache each, one MinIO bucket shared), beside the way VM managers
// commonly do it today, on the same guest state:
//
//   - hangar: Standby on a (request → memory and device state durable on
//     local disk, instance Standby; the upload job starts after), upload
//     (standby returned → snapshot committed centrally), RestoreSnapshot on
//     b with an empty cache (request → guest agent answering), and again
//     on b with the chunks in its cache;
//   - baseline: the same QEMU standby, then zstd -1 of the whole memory
//     file (and fsync of the .zst) before standby counts as done; one
//     object PUT with minio-go (explicit part size); on b: GET of the whole
//     object, zstd -d into the memory file, QEMU restore from it → guest
//     agent answering; warm: zstd -d of the .zst b already holds, restore.
//
// The guest's memory is filled from inside the guest (see fillScript), and
// every restored guest is checked: a token and samples of the fill read
// back, the agent's boot id is unchanged and its in-memory counter did
// not go back.
func runVM(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vm", flag.ContinueOnError)
	memMiB := fs.Int("memory", 1024, "guest RAM in MiB")
	used := fs.Float64("used", 0.5, "fraction of guest RAM filled with memory-like data from inside the guest")
	codec := fs.String("codec", "zstd:1", "hangar's compression, algorithm[:level] (zstd, lz4, none)")
	vcpus := fs.Int("vcpus", 1, "guest vCPUs")
	accel := fs.String("accel", qemu.AccelTCG, "QEMU accelerator: tcg or kvm")
	part := byteSize(16 << 20)
	fs.Var(&part, "part", "baseline: minio-go part size")
	fillQueue := byteSize(cache.DefaultFillQueueBytes)
	fs.Var(&fillQueue, "fill-queue", "bound of the host caches' background fill queue (cache.WithFillQueue)")
	threads := fs.Uint("threads", 4, "baseline: minio-go parts uploaded at once")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of hangar's cold restore (this process) to this file")
	armsFlag := fs.String("arms", "nosync+inline", "hangar download variants for the cold restores, comma-separated, each '+'-joined from fsync|nosync, inline|offer (host cache filled in the fetch workers | in the background) and cN (concurrency); or mgr (the manager's lazy restore, restore.lazy on host b; not first); or lazy (the spike's lazyfs + QEMU share=off with prefetch variants nopf, dN, yield, hot, rN, kN; not first); the first is used for the main cold and warm restore")
	rounds := fs.Int("rounds", 0, "after the main run, this many rounds of cold restores on b: every arm and the baseline, with CPU-seconds")
	var lazy lazyOpts
	lazy.register(fs)
	dropStore := fs.Bool("rounds-drop-store-cache", true, "evict MinIO's files from the page cache before every cold restore of the rounds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	policy, err := parseCodec(*codec)
	if err != nil {
		return err
	}
	arms, err := parseArms(*armsFlag)
	if err != nil {
		return err
	}
	var errs []error
	if *rounds < 0 {
		errs = append(errs, fmt.Errorf("-rounds %d: want >= 0", *rounds))
	}
	if *memMiB < 256 || *memMiB > 16384 {
		errs = append(errs, fmt.Errorf("-memory %d: want 256 to 16384 MiB", *memMiB))
	}
	if *used <= 0 || *used > 0.8 {
		errs = append(errs, fmt.Errorf("-used %v: want 0 < used <= 0.8 (the guest kernel needs the rest)", *used))
	}
	if *vcpus < 1 || *threads < 1 {
		errs = append(errs, errors.New("-vcpus and -threads must be >= 1"))
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		errs = append(errs, fmt.Errorf("zstd CLI not found (scripts/deps.sh installs it): %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	image, err := guest.Build(ctx, guest.BuildOptions{Logger: log})
	if err != nil {
		return err
	}
	bin, err := miniotest.FindBinary()
	if err != nil {
		return err
	}
	// Short: VM sockets live under it (manager.MaxDataDirLen).
	work, err := os.MkdirTemp("", "hb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	srv, err := miniotest.StartProcess(ctx, bin, filepath.Join(work, "minio"))
	if err != nil {
		return err
	}
	defer srv.Close()
	const bucket = "hangar-vm-bench"
	if err := srv.CreateBucket(ctx, bucket); err != nil {
		return err
	}
	b := &vmBench{
		ctx: ctx, log: log, image: image, srv: srv, bucket: bucket, work: work,
		memMiB: *memMiB, vcpus: *vcpus, used: *used, policy: policy, codec: *codec,
		part: uint64(part), threads: *threads, cpuProfile: *cpuProfile,
		arms: arms, rounds: *rounds, dropStoreCache: *dropStore, fillQueue: int64(fillQueue), lazy: lazy,
	}
	fmt.Printf("guest %d MiB, %d vCPU, %s; %.0f%% filled; hangar %s; MinIO %s; %s\n",
		*memMiB, *vcpus, *accel, *used*100, *codec, srv.Endpoint, toolVersions())
	fmt.Printf("load average %s, CPU pressure %s\n", loadAvg(), cpuPressure())
	for i, name := range []string{"a", "b"} {
		h, err := b.openHost(name, *accel)
		if err != nil {
			return err
		}
		defer h.close()
		b.hosts[i] = h
	}
	rep, err := b.run()
	if err != nil {
		return err
	}
	rep.print(os.Stdout)
	if rep.rounds != nil {
		rep.rounds.print(os.Stdout)
	}
	fmt.Printf("load average after: %s, CPU pressure %s\n", loadAvg(), cpuPressure())
	return nil
}

// parseCodec turns "zstd:1", "lz4", "none" into a policy.
func parseCodec(s string) (*compression.Policy, error) {
	name, lvl, hasLevel := strings.Cut(s, ":")
	alg, err := compression.ParseAlgorithm(name)
	if err != nil {
		return nil, fmt.Errorf("-codec %q: %w", s, err)
	}
	p := &compression.Policy{Algorithm: string(alg)}
	if hasLevel {
		n, err := strconv.Atoi(lvl)
		if err != nil {
			return nil, fmt.Errorf("-codec %q: level %q is not a number", s, lvl)
		}
		p.Level = &n
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("-codec %q: %w", s, err)
	}
	return p, nil
}

// vmBench is one run's shared state.
type vmBench struct {
	ctx     context.Context
	log     *slog.Logger
	image   guest.Image
	srv     *miniotest.Server
	bucket  string
	work    string
	memMiB  int
	vcpus   int
	used    float64
	policy  *compression.Policy
	codec   string
	part    uint64
	threads uint
	// cpuProfile, if set, receives a CPU profile of the cold restore.
	cpuProfile     string
	arms           []restoreArm
	rounds         int
	dropStoreCache bool
	fillQueue      int64
	lazy           lazyOpts
	hotOrder       []int // touch profile for lazy+hot arms
	hosts          [2]*benchHost
}

// benchHost is one "host": its own data directory, QEMU driver, chunk
// cache, Repo and Manager; only the bucket is shared.
type benchHost struct {
	name  string
	root  string
	hv    *qemu.Driver
	cache *cache.Cache
	repo  *timedRepo
	m     *manager.Manager
	// mLazy is a second manager on the same driver, repo and cache, with
	// restore.lazy (the mgr arm), opened when first needed.
	mLazy *manager.Manager
}

// lazyManager returns h's restore.lazy manager, opening it the first time
// (its own data directory beside the main one).
func (h *benchHost) lazyManager(b *vmBench) (*manager.Manager, error) {
	if h.mLazy != nil {
		return h.mLazy, nil
	}
	m, err := manager.Open(b.ctx, manager.Config{DataDir: filepath.Join(h.root, "dl"), RestoreLazy: true, CompressionDefault: b.policy},
		manager.Deps{Hypervisor: h.hv, Image: b.image, Repo: h.repo, Cache: h.cache, Logger: b.log.With("host", h.name, "manager", "lazy")})
	if err != nil {
		return nil, fmt.Errorf("open the restore.lazy manager: %w", err)
	}
	h.mLazy = m
	return m, nil
}

func (b *vmBench) openHost(name, accel string) (*benchHost, error) {
	h := &benchHost{name: name, root: filepath.Join(b.work, name)}
	ctx := b.ctx
	log := b.log.With("host", name)
	var err error
	if h.hv, err = qemu.New(ctx, qemu.Settings{Accel: accel, Logger: log}); err != nil {
		return nil, err
	}
	if h.cache, err = cache.Open(filepath.Join(h.root, "cache"), 4<<30, cache.WithLogger(log), cache.WithFillQueue(b.fillQueue)); err != nil {
		h.close()
		return nil, err
	}
	store, err := s3.Open(ctx, s3.Config{Endpoint: b.srv.Endpoint, Bucket: b.bucket, AccessKey: b.srv.AccessKey,
		SecretKey: s3.Secret(b.srv.SecretKey), Logger: log})
	if err != nil {
		h.close()
		return nil, err
	}
	repo, err := snapshot.New(store, snapshot.Config{Logger: log})
	if err != nil {
		h.close()
		return nil, err
	}
	h.repo = &timedRepo{Repo: repo, arm: b.arms[0]}
	// KeepLocalAfterCommit: the baseline takes the very same memory file
	// after hangar's upload committed (hard links, no copy). Dropping the
	// files happens after the commit, so it changes no measured time.
	h.m, err = manager.Open(ctx, manager.Config{DataDir: filepath.Join(h.root, "d"), KeepLocalAfterCommit: true, CompressionDefault: b.policy},
		manager.Deps{Hypervisor: h.hv, Image: b.image, Repo: h.repo, Cache: h.cache, Logger: log})
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// close stops the manager and kills every VM the host's driver runs.
func (h *benchHost) close() {
	if h.mLazy != nil {
		h.mLazy.Close()
	}
	if h.m != nil {
		h.m.Close()
	}
	if h.hv != nil {
		h.hv.Close()
	}
	if h.cache != nil {
		h.cache.Close()
	}
}

// timedRepo records how long the manager's last upload and download
// took inside the pipeline (the rest of a restore is QEMU and the agent),
// and when a download's last chunk was written: what follows is the fsync
// and rename of the files. Embedding keeps LoadIndex, which the manager
// uses when present.
type timedRepo struct {
	*snapshot.Repo
	mu     sync.Mutex
	upload time.Duration
	down   downloadTiming
	arm    restoreArm // applied to every download's options
}

func (r *timedRepo) setArm(a restoreArm) {
	r.mu.Lock()
	r.arm = a
	r.mu.Unlock()
}

// downloadTiming splits a download: chunks fetched, verified and written,
// then the files made durable.
type downloadTiming struct {
	total, chunks time.Duration
	first         time.Duration // to the first chunk written
	stats         snapshot.DownloadStats
}

func (r *timedRepo) Upload(ctx context.Context, snap snapshot.Info, files []snapshot.FileSource, opts snapshot.UploadOptions) (*snapshot.Manifest, error) {
	start := time.Now()
	m, err := r.Repo.Upload(ctx, snap, files, opts)
	r.mu.Lock()
	r.upload = time.Since(start)
	r.mu.Unlock()
	return m, err
}

func (r *timedRepo) Download(ctx context.Context, m *snapshot.Manifest, dir string, opts snapshot.DownloadOptions) (snapshot.DownloadStats, error) {
	r.mu.Lock()
	arm := r.arm
	r.mu.Unlock()
	arm.apply(&opts)
	start := time.Now()
	var firstChunk, lastChunk time.Time // written by the serialised progress callback
	next := opts.Progress
	opts.Progress = func(p snapshot.DownloadProgress) {
		lastChunk = time.Now()
		if firstChunk.IsZero() {
			firstChunk = lastChunk
		}
		if next != nil {
			next(p)
		}
	}
	st, err := r.Repo.Download(ctx, m, dir, opts)
	end := time.Now()
	r.mu.Lock()
	r.down = downloadTiming{total: end.Sub(start), first: firstChunk.Sub(start), chunks: lastChunk.Sub(start), stats: st}
	r.mu.Unlock()
	return st, err
}

func (r *timedRepo) last() (up time.Duration, down downloadTiming) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.upload, r.down
}

var _ manager.Repo = (*timedRepo)(nil)

// fillPart is one kind of memory-like data the guest writes into tmpfs.
type fillPart struct {
	name, what string
	share      float64
}

// fillMix is the guest memory mix, as shares of the filled part. It aims
// at what a busy guest's RAM holds: incompressible data (encrypted or
// compressed buffers, random keys), machine code, text, sparse
// struct-like heap, and pages the guest zeroed. Repeated sources
// (code, text) repeat with a period above the 4 MiB chunk size, so that
// neither side gains from copies a few MiB apart.
var fillMix = []fillPart{
	{"random", "dd if=/dev/urandom (incompressible)", 0.25},
	{"code", "copies of /bin/busybox + /sbin/hangar-agent, 5 MiB period (static x86-64 code)", 0.20},
	{"text", "copies of /proc/kallsyms followed by its lines with the fields reversed, 7 MiB period (text)", 0.20},
	{"heap", "/dev/urandom with every byte >= 0x80 zeroed (sparse struct-like data)", 0.10},
	{"zero", "dd if=/dev/zero (pages the guest wrote zeros into)", 0.25},
}

// fillScript is the shell script that fills the guest: a tmpfs at /fill
// holding one file per part, sized in MiB.
func fillScript(totalMiB int) (string, map[string]int) {
	sizes := map[string]int{}
	for _, p := range fillMix {
		sizes[p.name] = int(float64(totalMiB)*p.share + 0.5)
	}
	// repeat writes $2 MiB of copies of file $1 to $3 (head ends the pipe
	// after a counted number of copies, so no loop spins on a broken pipe).
	return fmt.Sprintf(`set -e
mkdir -p /fill
mount -t tmpfs -o size=%dm tmpfs /fill
repeat() { s=$(wc -c < "$1"); k=$(( $2 * 1048576 / s + 1 )); i=0; while [ $i -lt $k ]; do cat "$1"; i=$((i+1)); done | head -c $(( $2 * 1048576 )) > "$3"; }
dd if=/dev/urandom of=/fill/random bs=1M count=%d 2>/dev/null
cat /bin/busybox /sbin/hangar-agent /bin/busybox > /fill/.code
repeat /fill/.code %d /fill/code
{ cat /proc/kallsyms; awk '{print $3 " " $2 " " $1}' /proc/kallsyms; } > /fill/.text
repeat /fill/.text %d /fill/text
dd if=/dev/urandom bs=1M count=%d 2>/dev/null | tr '\200-\377' '\000' > /fill/heap
dd if=/dev/zero of=/fill/zero bs=1M count=%d 2>/dev/null
wc -c /fill/.code /fill/.text
free -m
`, totalMiB+64, sizes["random"], sizes["code"], sizes["text"], sizes["heap"], sizes["zero"]), sizes
}

// sampleScript prints checksums of parts of the fill that a restored
// guest must still have (hashing all of it takes long under TCG).
const sampleScript = `md5sum /fill/.code /fill/.text /fill/token; head -c 8388608 /fill/random | md5sum; tail -c 8388608 /fill/heap | md5sum; tail -c 4194304 /fill/text | md5sum`

// guestCheck is what a restored guest is compared with.
type guestCheck struct {
	samples string
	state   agent.State
}

func execOK(ctx context.Context, c *agent.Client, script string, timeout time.Duration) (string, error) {
	res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", script}, Timeout: timeout.Seconds()})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 || res.TimedOut {
		return "", fmt.Errorf("guest script exit %d (timed out %v): %s%s", res.ExitCode, res.TimedOut, res.Stdout, res.Stderr)
	}
	return string(res.Stdout), nil
}

// verify checks a restored guest against want.
func verify(ctx context.Context, c *agent.Client, want guestCheck) error {
	got, err := execOK(ctx, c, sampleScript, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("verify restored guest: %w", err)
	}
	if got != want.samples {
		return fmt.Errorf("verify restored guest: fill samples differ:\n%s\nwant\n%s", got, want.samples)
	}
	st, err := c.State(ctx)
	if err != nil {
		return fmt.Errorf("verify restored guest: %w", err)
	}
	if st.BootID != want.state.BootID || st.Counter < want.state.Counter {
		return fmt.Errorf("verify restored guest: agent state %+v after, %+v before: memory did not come back", st, want.state)
	}
	return nil
}

// vmReport is one run's measurements.
type vmReport struct {
	boot, fill                time.Duration
	fillOut                   string
	sizes                     map[string]int
	pause                     time.Duration // QEMU stop → device state and memory durable (vm.json)
	standby                   time.Duration // hangar Standby call
	upload, uploadPipe        time.Duration
	totals                    manager.Totals
	zstd, zstdSync            time.Duration
	zstSize                   int64
	put                       time.Duration
	cold, warm                time.Duration
	coldDL, warmDL            downloadTiming
	coldFillTail              time.Duration // cache fill finishing after the cold restore returned
	arm                       string
	rounds                    *roundsReport
	baseGet, baseDecompress   time.Duration
	baseSync                  time.Duration // fsync of the decompressed memory file: not part of the baseline's restore
	baseResume                time.Duration
	baseWarmDecompress        time.Duration
	baseWarmResume            time.Duration
	loadBefore, loadAfterFill string
}

func (b *vmBench) run() (*vmReport, error) {
	ctx := b.ctx
	a, bh := b.hosts[0], b.hosts[1]
	rep := &vmReport{}

	// A guest on host a, filled from inside.
	start := time.Now()
	in, err := a.m.Create(ctx, manager.CreateSpec{Name: "bench", MemoryMiB: b.memMiB, VCPUs: b.vcpus})
	if err != nil {
		return nil, err
	}
	rep.boot = time.Since(start)
	id := in.ID
	fmt.Printf("booted %s on a in %.1fs; filling %.0f%% of its RAM from inside ...\n", id, rep.boot.Seconds(), b.used*100)
	c, err := agent.Dial(ctx, in.AgentSocket)
	if err != nil {
		return nil, err
	}
	script, sizes := fillScript(int(float64(b.memMiB) * b.used))
	rep.sizes = sizes
	start = time.Now()
	if rep.fillOut, err = execOK(ctx, c, script, 30*time.Minute); err != nil {
		c.Close()
		return nil, fmt.Errorf("fill guest memory: %w", err)
	}
	rep.fill = time.Since(start)
	if _, err := execOK(ctx, c, "head -c 32 /dev/urandom | md5sum > /fill/token", time.Minute); err != nil {
		c.Close()
		return nil, err
	}
	var want guestCheck
	if want.samples, err = execOK(ctx, c, sampleScript, 2*time.Minute); err != nil {
		c.Close()
		return nil, err
	}
	if want.state, err = c.State(ctx); err != nil {
		c.Close()
		return nil, err
	}
	c.Close()
	rep.loadAfterFill = loadAvg()
	fmt.Printf("filled in %.1fs; load average %s, CPU pressure %s\n", rep.fill.Seconds(), rep.loadAfterFill, cpuPressure())

	// hangar standby on a; the upload job runs after it returns.
	start = time.Now()
	st, err := standbyDefault(ctx, a.m.Standby, id)
	if err != nil {
		return nil, err
	}
	rep.standby = time.Since(start)
	standbyDone := time.Now()
	sid := st.Snapshot.ID
	fmt.Printf("hangar standby: %.3fs (snapshot %s, storage %s when it returned)\n", rep.standby.Seconds(), sid, st.Snapshot.Storage)
	for {
		cur, err := a.m.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if s := cur.Snapshot; s != nil && s.Storage == manager.StorageCentral {
			rep.upload = time.Since(standbyDone)
			rep.totals = *s.Totals
			break
		}
		if s := cur.Snapshot; s == nil || s.Storage == manager.StorageError {
			return nil, fmt.Errorf("upload of %s failed: %+v", sid, cur.Snapshot)
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return nil, err
		}
	}
	rep.uploadPipe, _ = a.repo.last()
	fmt.Printf("hangar upload: %.2fs (pipeline %.2fs)\n", rep.upload.Seconds(), rep.uploadPipe.Seconds())

	// The baseline starts from the same files: the same QEMU standby.
	snapDir := filepath.Join(a.root, "d", "s", sid)
	baseA := filepath.Join(a.root, "base")
	if err := os.MkdirAll(baseA, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []string{vmhost.MemoryFile, vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if err := os.Link(filepath.Join(snapDir, f), filepath.Join(baseA, f)); err != nil {
			return nil, fmt.Errorf("baseline: link %s: %w", f, err)
		}
	}
	info, err := vmhost.ReadSnapshotInfo(baseA)
	if err != nil {
		return nil, err
	}
	rep.pause = info.PauseDuration
	if err := b.baselineStandbyUpload(baseA, sid, rep); err != nil {
		return nil, err
	}
	fmt.Printf("baseline zstd -1: %.2fs + fsync %.2fs, PUT %.2fs\n", rep.zstd.Seconds(), rep.zstdSync.Seconds(), rep.put.Seconds())

	// hangar cold restore on b: its cache is empty.
	if n := bh.cache.Stats(); n.Entries != 0 {
		return nil, fmt.Errorf("host b's cache holds %d chunks before the cold restore", n.Entries)
	}
	minioPID := findPID(b.srv.Endpoint)
	restoreOn := func(what string) (time.Duration, downloadTiming, error) {
		fmt.Printf("before the %s restore: %s\n", what, dirtyPages())
		m0, s0, start := procCPU(minioPID), selfCPU(), time.Now()
		r, err := bh.m.RestoreSnapshot(ctx, sid, manager.ForkSpec{})
		took := time.Since(start)
		if err != nil {
			return 0, downloadTiming{}, fmt.Errorf("%s restore on b: %w", what, err)
		}
		_, dl := bh.repo.last()
		fmt.Printf("hangar %s restore: CPU %.2fs + MinIO %.2fs; first chunk written after %.3fs\n",
			what, (selfCPU() - s0).Seconds(), (procCPU(minioPID) - m0).Seconds(), dl.first.Seconds())
		// The background cache fill (Cache.Offer) may still run: wait for
		// it, so that the warm restore reads the cache from disk as a
		// later fork would, and report how long it ran on.
		if err := bh.cache.Flush(ctx); err != nil {
			return 0, downloadTiming{}, err
		}
		if what == "cold" {
			rep.coldFillTail = time.Since(start) - took
		}
		_, dl = bh.repo.last()
		fmt.Printf("hangar %s restore on b: %.2fs (download %.2fs, of which fsync+rename %.2fs: %d chunks from the store, %d from the cache)\n",
			what, took.Seconds(), dl.total.Seconds(), (dl.total - dl.chunks).Seconds(), dl.stats.ChunksFromStore, dl.stats.ChunksFromCache)
		c, err := agent.Dial(ctx, r.AgentSocket)
		if err != nil {
			return 0, dl, err
		}
		err = verify(ctx, c, want)
		c.Close()
		if err != nil {
			return 0, dl, fmt.Errorf("hangar %s restore: %w", what, err)
		}
		if err := bh.m.Delete(ctx, r.ID); err != nil {
			return 0, dl, err
		}
		return took, dl, nil
	}
	stopProfile, err := startProfile(b.cpuProfile)
	if err != nil {
		return nil, err
	}
	rep.cold, rep.coldDL, err = restoreOn("cold")
	stopProfile()
	if err != nil {
		return nil, err
	}
	if st := rep.coldDL.stats; st.ChunksFromCache != 0 || st.ChunksFromStore == 0 {
		return nil, fmt.Errorf("cold restore was not cold: %+v", st)
	}
	if rep.warm, rep.warmDL, err = restoreOn("warm"); err != nil {
		return nil, err
	}
	if st := rep.warmDL.stats; st.ChunksFromStore != 0 {
		return nil, fmt.Errorf("warm restore fetched %d chunks from the store", st.ChunksFromStore)
	}
	if err := b.baselineRestore(sid, want, rep); err != nil {
		return nil, err
	}
	rep.arm = b.arms[0].name
	if b.rounds > 0 {
		if rep.rounds, err = b.restoreRounds(sid, want, b.arms, b.rounds); err != nil {
			return nil, err
		}
	}
	if b.lazy.kill {
		if err := b.lazyKill(sid); err != nil {
			return nil, err
		}
	}
	if err := a.m.Delete(ctx, id); err != nil {
		return nil, err
	}
	return rep, nil
}

// baselineStandbyUpload compresses the memory file in dir with the zstd
// CLI at level 1 (its default: one compression thread), makes the .zst
// durable, and uploads it as one object with minio-go, beside the device
// state and vm.json (small objects).
func (b *vmBench) baselineStandbyUpload(dir, sid string, rep *vmReport) error {
	ctx := b.ctx
	zst := filepath.Join(dir, "memory.zst")
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "zstd", "-1", "-q", "-f", filepath.Join(dir, vmhost.MemoryFile), "-o", zst).CombinedOutput(); err != nil {
		return fmt.Errorf("baseline zstd -1: %w: %s", err, out)
	}
	rep.zstd = time.Since(start)
	start = time.Now()
	if err := syncPath(zst); err != nil {
		return err
	}
	if err := vmhost.SyncDir(dir); err != nil {
		return err
	}
	rep.zstdSync = time.Since(start)
	st, err := os.Stat(zst)
	if err != nil {
		return err
	}
	rep.zstSize = st.Size()
	client, err := b.srv.Client()
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := client.FPutObject(ctx, b.bucket, "baseline/"+sid+"/memory.zst", zst,
		minio.PutObjectOptions{PartSize: b.part, NumThreads: b.threads}); err != nil {
		return fmt.Errorf("baseline put: %w", err)
	}
	for _, f := range []string{vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if _, err := client.FPutObject(ctx, b.bucket, "baseline/"+sid+"/"+f, filepath.Join(dir, f), minio.PutObjectOptions{}); err != nil {
			return fmt.Errorf("baseline put %s: %w", f, err)
		}
	}
	rep.put = time.Since(start)
	return nil
}

// baselineRestore downloads the baseline objects on host b, decompresses
// the memory with zstd -d and restores QEMU from it directly; then again
// from the .zst b now holds (warm).
func (b *vmBench) baselineRestore(sid string, want guestCheck, rep *vmReport) error {
	ctx := b.ctx
	h := b.hosts[1]
	client, err := b.srv.Client()
	if err != nil {
		return err
	}
	keep := filepath.Join(h.root, "bz")
	if err := os.MkdirAll(keep, 0o700); err != nil {
		return err
	}
	zst := filepath.Join(keep, "memory.zst")
	// resume decompresses zst into dir (holding the small files) and
	// restores the VM there, up to the guest agent's answer.
	resume := func(dir string, syncTook *time.Duration) (dec, res time.Duration, err error) {
		start := time.Now()
		if out, err := exec.CommandContext(ctx, "zstd", "-d", "-q", "-f", zst, "-o", filepath.Join(dir, vmhost.MemoryFile)).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("baseline zstd -d: %w: %s", err, out)
		}
		dec = time.Since(start)
		if syncTook != nil {
			// What hangar's download does and the baseline does not: timed
			// apart and left out of the baseline's restore time.
			start = time.Now()
			if err := syncPath(filepath.Join(dir, vmhost.MemoryFile)); err != nil {
				return 0, 0, err
			}
			*syncTook = time.Since(start)
		}
		start = time.Now()
		cfg := vmhost.Config{Name: "baseline", MemoryMiB: b.memMiB, VCPUs: b.vcpus, Boot: b.image.Boot(), Dir: dir}
		vm, err := h.hv.Restore(ctx, cfg, vmhost.RestoreSource{Dir: dir})
		if err != nil {
			return 0, 0, fmt.Errorf("baseline restore: %w", err)
		}
		defer vm.Kill()
		c, err := guest.WaitReady(ctx, vm)
		if err != nil {
			return 0, 0, fmt.Errorf("baseline restore: %w", err)
		}
		res = time.Since(start)
		defer c.Close()
		if err := verify(ctx, c, want); err != nil {
			return 0, 0, fmt.Errorf("baseline restore: %w", err)
		}
		return dec, res, nil
	}

	cold := filepath.Join(h.root, "bc")
	if err := os.MkdirAll(cold, 0o700); err != nil {
		return err
	}
	start := time.Now()
	if err := client.FGetObject(ctx, b.bucket, "baseline/"+sid+"/memory.zst", zst, minio.GetObjectOptions{}); err != nil {
		return fmt.Errorf("baseline get: %w", err)
	}
	for _, f := range []string{vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if err := client.FGetObject(ctx, b.bucket, "baseline/"+sid+"/"+f, filepath.Join(cold, f), minio.GetObjectOptions{}); err != nil {
			return fmt.Errorf("baseline get %s: %w", f, err)
		}
		if err := copyFile(filepath.Join(cold, f), filepath.Join(keep, f)); err != nil {
			return err
		}
	}
	rep.baseGet = time.Since(start)
	if rep.baseDecompress, rep.baseResume, err = resume(cold, &rep.baseSync); err != nil {
		return err
	}
	os.RemoveAll(cold)
	fmt.Printf("baseline cold restore on b: GET %.2fs, zstd -d %.2fs, QEMU restore → agent %.2fs\n",
		rep.baseGet.Seconds(), rep.baseDecompress.Seconds(), rep.baseResume.Seconds())

	warm := filepath.Join(h.root, "bw")
	if err := os.MkdirAll(warm, 0o700); err != nil {
		return err
	}
	for _, f := range []string{vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if err := copyFile(filepath.Join(keep, f), filepath.Join(warm, f)); err != nil {
			return err
		}
	}
	if rep.baseWarmDecompress, rep.baseWarmResume, err = resume(warm, nil); err != nil {
		return err
	}
	os.RemoveAll(warm)
	fmt.Printf("baseline warm restore on b: zstd -d %.2fs, QEMU restore → agent %.2fs\n",
		rep.baseWarmDecompress.Seconds(), rep.baseWarmResume.Seconds())
	return nil
}

func (r *vmReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nguest fill (MiB): ")
	for _, p := range fillMix {
		fmt.Fprintf(w, "%s %d  ", p.name, r.sizes[p.name])
	}
	fmt.Fprintf(w, "\nhangar snapshot: raw %d, non-zero %d, stored %d; baseline .zst %d\n\n",
		r.totals.Raw, r.totals.NonZero, r.totals.Compressed, r.zstSize)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\thangar s\tbaseline s\tbaseline / hangar\t")
	row := func(name string, h, b time.Duration) {
		hs, bs, ratio := "-", "-", "-"
		if h > 0 {
			hs = fmt.Sprintf("%.3f", h.Seconds())
		}
		if b > 0 {
			bs = fmt.Sprintf("%.3f", b.Seconds())
		}
		if h > 0 && b > 0 {
			ratio = fmt.Sprintf("%.2f×", b.Seconds()/h.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, hs, bs, ratio)
	}
	baseStandby := r.standby + r.zstd + r.zstdSync
	row("standby latency (request → locally durable)", r.standby, baseStandby)
	row("  QEMU stop + device state + fsync (both)", r.pause, r.pause)
	row("  zstd -1 of the memory file", 0, r.zstd)
	row("  fsync of the .zst", 0, r.zstdSync)
	row("upload (standby done → central)", r.upload, r.put)
	row("  hangar upload pipeline", r.uploadPipe, 0)
	row("standby request → central", r.standby+r.upload, baseStandby+r.put)
	baseCold := r.baseGet + r.baseDecompress + r.baseResume
	row("cold restore on b (request → agent answers)", r.cold, baseCold)
	row("  hangar download / baseline GET + zstd -d", r.coldDL.total, r.baseGet+r.baseDecompress)
	row("    chunks fetched, verified, written / GET", r.coldDL.chunks, r.baseGet)
	row("    fsync + rename of the files / zstd -d", r.coldDL.total-r.coldDL.chunks, r.baseDecompress)
	row("  QEMU restore → agent (+ manager)", r.cold-r.coldDL.total, r.baseResume)
	row("  (not in baseline: fsync of its memory file)", 0, r.baseSync)
	baseWarm := r.baseWarmDecompress + r.baseWarmResume
	row("warm restore on b (chunks / .zst local)", r.warm, baseWarm)
	row("  hangar download from cache / zstd -d", r.warmDL.total, r.baseWarmDecompress)
	row("    of which fsync + rename", r.warmDL.total-r.warmDL.chunks, 0)
	row("  QEMU restore → agent (+ manager)", r.warm-r.warmDL.total, r.baseWarmResume)
	tw.Flush()
	fmt.Fprintf(w, "\ncold restore (arm %s): %d chunks from the store (%d bytes), cache fill ran on %.3fs after it returned; warm: %d from the cache\n",
		r.arm, r.coldDL.stats.ChunksFromStore, r.coldDL.stats.BytesFromStore, r.coldFillTail.Seconds(), r.warmDL.stats.ChunksFromCache)
	fmt.Fprintf(w, "target cold restore >= 2× faster than baseline: %.2f× %s\n", baseCold.Seconds()/r.cold.Seconds(), passFail(baseCold >= 2*r.cold))
	fmt.Fprintf(w, "target standby < 1s, independent of the upload: %.3fs (upload %.2fs ran after it returned) %s\n",
		r.standby.Seconds(), r.upload.Seconds(), passFail(r.standby < time.Second))
	fmt.Fprintf(w, "guest booted in %.1fs, filled in %.1fs; guest says:\n%s", r.boot.Seconds(), r.fill.Seconds(), r.fillOut)
}

// standbyDefault calls a manager's Standby with zero options: the codec
// comes from the host default (Config.CompressionDefault), as for a
// standby request that names none. Generic over the options type so that
// the bench does not depend on how the manager spells it.
func standbyDefault[O any](ctx context.Context, standby func(context.Context, string, O) (manager.Instance, error), id string) (manager.Instance, error) {
	var none O
	return standby(ctx, id, none)
}

// startProfile starts a CPU profile into path ("" profiles nothing) and
// returns its stop function.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func syncPath(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// dirtyPages reports the machine's dirty and under-writeback page cache
// (/proc/meminfo): writeback running during a restore competes with it.
func dirtyPages() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "meminfo unreadable"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Dirty:") || strings.HasPrefix(l, "Writeback:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}
