package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/digests"
	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// runUpload measures hangar's upload and download pipelines against a local
// MinIO server it starts itself, beside what an operator does without
// hangar, on one memory-like file, -rounds times on fresh buckets:
//
//   - hangar upload (zstd 1, 4 MiB chunks), in a child process so that its
//     peak RSS and CPU time are the pipeline's alone: once with every body
//     signed (the s3 default), once with chunk bodies as UNSIGNED-PAYLOAD
//     (s3.Config.UnsignedPayloadPrefixes = ["chunks/"]) and the host's
//     digest key (UploadOptions.DigestKey), as a host daemon uploads: it
//     also leaves the file's chunk digests (storage/digests);
//   - hangar upload of the same file with 1% of its chunks changed, in a
//     fresh child process that loads the chunk index first (one listing,
//     counted in the time), twice, each with its own changed chunks so
//     that both store as much: without a digest record (every chunk
//     hashed, as before), and as the same host does, with its key and the
//     record the first upload left (copied to the changed copy: a record
//     describes bytes, not a path, so this is the file changed in place);
//   - hangar download into a fresh directory with no cache (every chunk
//     from MinIO, verified, decompressed, written sparse), with fsync (the
//     default) and with DownloadOptions.NoSync;
//   - baseline: zstd -1 the whole file (the CLI's default single thread),
//     upload the .zst as one object with minio-go (explicit part size and
//     threads) once signed and once with DisableContentSha256 (the same
//     client setting as hangar's unsigned arm), download it, zstd -d it,
//     and fsync the result (timed apart).
//
// Each arm reports wall time, its own CPU time (children's rusage, or this
// process's for in-process arms) and the MinIO server's CPU time meanwhile
// (/proc/<pid>/stat). MinIO's files are evicted from the page cache
// before every download arm, so all of them read the store cold. Every
// restored file is compared with the input after its timing.
func runUpload(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	size := byteSize(1 << 30)
	fs.Var(&size, "size", "input size when the input file is generated (1GiB, 256MiB, or bytes)")
	zero := fs.Float64("zero", 0.6, "fraction of zero pages when the input file is generated")
	input := fs.String("input", "", "input file: reused as is if it exists, else generated there (default: a file in the temp dir named after -size and -zero)")
	part := byteSize(16 << 20)
	fs.Var(&part, "part", "baseline: minio-go part size")
	threads := fs.Uint("threads", 4, "baseline: minio-go parts uploaded at once")
	uploaders := fs.Int("uploaders", 8, "hangar: chunks uploaded at once")
	concurrency := fs.Int("concurrency", 8, "hangar: chunks downloaded at once")
	changed := fs.Float64("changed", 0.01, "fraction of non-hole chunks changed for the second upload")
	rounds := fs.Int("rounds", 1, "measure everything this many times (fresh buckets each round) and summarise")
	child := fs.String("child", "", "internal: run one hangar upload (snapshot id) and print its result as JSON")
	unsigned := fs.Bool("unsigned", false, "internal: -child sends chunk bodies as UNSIGNED-PAYLOAD")
	keyFile := fs.String("digest-key", "", "internal: -child uploads with this host digest key file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the 1%-changed upload with a digest record (its child process, last round) to this file")
	endpoint := fs.String("endpoint", "", "internal: MinIO endpoint for -child")
	bucket := fs.String("bucket", "", "internal: bucket for -child")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *child != "" {
		return uploadChild(ctx, *child, *endpoint, *bucket, *input, *keyFile, *cpuProfile, *uploaders, *unsigned)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *zero < 0 || *zero > 1 || *changed <= 0 || *changed > 1 || *uploaders < 1 || *concurrency < 1 || *threads < 1 || *rounds < 1 {
		return errors.New("want 0 <= -zero <= 1, 0 < -changed <= 1, -uploaders, -concurrency, -threads and -rounds >= 1")
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		return fmt.Errorf("zstd CLI not found (scripts/deps.sh installs it): %w", err)
	}
	if *input == "" {
		*input = filepath.Join(os.TempDir(), fmt.Sprintf("hangar-bench-%s-zero%.2f.mem", formatSize(int64(size)), *zero))
	}
	n, err := prepareInput(ctx, *input, int64(size), *zero)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(*input), "hangar-bench-upload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	bin, err := miniotest.FindBinary()
	if err != nil {
		return err
	}
	srv, err := miniotest.StartProcess(ctx, bin, filepath.Join(work, "minio"))
	if err != nil {
		return err
	}
	defer srv.Close()
	minioPID := findPID(srv.Endpoint)
	load0 := loadAvg()
	fmt.Printf("input %s: %s, MinIO at %s (pid %d, data in %s), %s\n", *input, formatSize(n), srv.Endpoint, minioPID, work, toolVersions())
	if err := readAll(*input); err != nil { // every row reads from the page cache
		return err
	}
	changedPath := filepath.Join(work, "memory-changed")
	nChanged, err := writeChanged(*input, changedPath, *changed, 0x5a)
	if err != nil {
		return err
	}
	defer os.Remove(changedPath)
	changedDigests := filepath.Join(work, "memory-changed-digests")
	if _, err := writeChanged(*input, changedDigests, *changed, 0xa5); err != nil {
		return err
	}
	defer os.Remove(changedDigests)
	defer os.Remove(digests.PathFor(*input)) // left by the first upload; the key goes with work
	fmt.Printf("second upload: %d chunks changed\n", nChanged)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := benchEnv{ctx: ctx, srv: srv, minioPID: minioPID, self: self, input: *input, changed: changedPath, changedDigests: changedDigests,
		keyFile: filepath.Join(work, "host", "digest.key"), work: work, cpuProfile: *cpuProfile,
		uploaders: *uploaders, concurrency: *concurrency, part: uint64(part), threads: *threads}
	var reps []*report
	for i := range *rounds {
		fmt.Printf("\nround %d of %d, load average %s\n", i+1, *rounds, loadAvg())
		rep, err := env.round(i)
		if err != nil {
			return err
		}
		rep.in = n
		rep.print(os.Stdout)
		reps = append(reps, rep)
	}
	if len(reps) > 1 {
		summarise(os.Stdout, reps)
	}
	fmt.Printf("load average before: %s, after: %s\n", load0, loadAvg())
	return nil
}

// benchEnv is what every round shares.
type benchEnv struct {
	ctx                    context.Context
	srv                    *miniotest.Server
	minioPID               int
	self                   string
	input, changed, work   string
	changedDigests         string // changed otherwise, for the arm with a digest record
	keyFile                string // the host's digest key
	cpuProfile             string // of the same-host 1%-changed child
	uploaders, concurrency int
	part                   uint64
	threads                uint
}

// round measures every arm once, on fresh buckets.
func (e *benchEnv) round(i int) (*report, error) {
	ctx, srv := e.ctx, e.srv
	signedBucket, hangarBucket, baseBucket := fmt.Sprintf("hangar-signed-%d", i), fmt.Sprintf("hangar-%d", i), fmt.Sprintf("baseline-%d", i)
	for _, b := range []string{signedBucket, hangarBucket, baseBucket} {
		if err := srv.CreateBucket(ctx, b); err != nil {
			return nil, err
		}
	}
	rep := &report{}
	runChild := func(id, bucket, path string, unsigned bool, keyFile string, profile ...string) (childResult, error) {
		cmd := exec.CommandContext(ctx, e.self, "upload", "-child", id, "-endpoint", srv.Endpoint, "-bucket", bucket,
			"-input", path, "-uploaders", fmt.Sprint(e.uploaders), fmt.Sprintf("-unsigned=%v", unsigned), "-digest-key", keyFile)
		if len(profile) > 0 && profile[0] != "" {
			cmd.Args = append(cmd.Args, "-cpuprofile", profile[0])
		}
		cmd.Env = append(os.Environ(), "HANGAR_BENCH_ACCESS_KEY="+srv.AccessKey, "HANGAR_BENCH_SECRET_KEY="+srv.SecretKey)
		cmd.Stderr = os.Stderr
		m0 := procCPU(e.minioPID)
		out, err := cmd.Output()
		if err != nil {
			return childResult{}, fmt.Errorf("child upload %s: %w", id, err)
		}
		var res childResult
		if err := json.Unmarshal(out, &res); err != nil {
			return childResult{}, fmt.Errorf("child upload %s: %w (output %q)", id, err, out)
		}
		res.MinIOCPU = procCPU(e.minioPID) - m0
		return res, nil
	}
	var err error
	fmt.Println("hangar upload (signed bodies) ...")
	if rep.upSigned, err = runChild("first", signedBucket, e.input, false, ""); err != nil {
		return nil, err
	}
	fmt.Println("hangar upload (unsigned chunk bodies, host digest key) ...")
	os.Remove(digests.PathFor(e.input))
	if rep.up1, err = runChild("first", hangarBucket, e.input, true, e.keyFile); err != nil {
		return nil, err
	}
	fmt.Println("hangar upload, changed, no digest record ...")
	if rep.up2, err = runChild("second", hangarBucket, e.changed, true, ""); err != nil {
		return nil, err
	}
	fmt.Println("hangar upload, changed, same host (digest record) ...")
	rec, err := os.ReadFile(digests.PathFor(e.input))
	if err != nil {
		return nil, fmt.Errorf("the first upload left no digest record: %w", err)
	}
	if err := os.WriteFile(digests.PathFor(e.changedDigests), rec, 0o600); err != nil {
		return nil, err
	}
	if rep.up2d, err = runChild("second-digests", hangarBucket, e.changedDigests, true, e.keyFile, e.cpuProfile); err != nil {
		return nil, err
	}
	if rep.up2d.Unchanged == 0 {
		return nil, errors.New("the upload with a digest record recalled no chunk")
	}

	// hangar download into a fresh directory, no cache.
	store, err := openStore(ctx, srv.Endpoint, hangarBucket, srv.AccessKey, srv.SecretKey, false)
	if err != nil {
		return nil, err
	}
	repo, err := snapshot.New(store, snapshot.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	m, err := repo.Manifest(ctx, "first")
	if err != nil {
		return nil, err
	}
	// Two downloads: Download's default (fsync before the rename) and
	// NoSync. MinIO's files are dropped from the page cache before each,
	// and before the baseline's GET, so every arm reads the store cold.
	for _, noSync := range []bool{false, true} {
		outDir := filepath.Join(e.work, "restore")
		if err := os.Mkdir(outDir, 0o755); err != nil {
			return nil, err
		}
		dropCache(srv.Dir)
		fmt.Printf("hangar download (NoSync %v) ...\n", noSync)
		c, err := inProcess(e.minioPID, func() error {
			_, err := repo.Download(ctx, m, outDir, snapshot.DownloadOptions{Concurrency: e.concurrency, NoSync: noSync})
			return err
		})
		if err != nil {
			return nil, err
		}
		if noSync {
			rep.downNoSync = c
		} else {
			rep.down = c
		}
		if err := sameFile(e.input, filepath.Join(outDir, "memory")); err != nil {
			return nil, fmt.Errorf("hangar download: %w", err)
		}
		os.RemoveAll(outDir)
	}
	if rep.stored, err = bucketBytes(ctx, store, ""); err != nil {
		return nil, err
	}

	fmt.Println("baseline ...")
	if err := baseline(ctx, e, baseBucket, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// childResult is what a child upload reports.
type childResult struct {
	Wall      time.Duration   `json:"wall"`
	LoadIndex time.Duration   `json:"load_index"`
	Totals    snapshot.Totals `json:"totals"`
	Sent      int64           `json:"sent"` // bytes of successful Puts and Creates
	// MaxRSS is the child's VmHWM, read by the child itself: rusage's
	// maxrss would include the parent's RSS at fork time, which Linux
	// keeps across exec.
	MaxRSS int64 `json:"max_rss"`
	// CPU is the child's user + system time from LoadIndex to the commit.
	CPU time.Duration `json:"cpu"`
	// Unchanged is the raw bytes whose ids came from the digest record.
	Unchanged int64 `json:"unchanged"`
	// MinIOCPU is the MinIO server's CPU time while the child ran (filled
	// in by the parent).
	MinIOCPU time.Duration `json:"-"`
}

// uploadChild is one hangar upload in its own process: open the store,
// load the index (a fresh process knows nothing), upload, report.
func uploadChild(ctx context.Context, id, endpoint, bucket, input, keyFile, cpuProfile string, uploaders int, unsigned bool) error {
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	store, err := openStore(ctx, endpoint, bucket, os.Getenv("HANGAR_BENCH_ACCESS_KEY"), os.Getenv("HANGAR_BENCH_SECRET_KEY"), unsigned)
	if err != nil {
		return err
	}
	counted := &sentCounter{Store: store}
	repo, err := snapshot.New(counted, snapshot.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	var res childResult
	c0, start := selfCPU(), time.Now()
	opts := snapshot.UploadOptions{ChunkSize: chunk.DefaultSize, Uploaders: uploaders,
		Progress: func(p snapshot.Progress) { res.Unchanged = p.Unchanged }}
	if keyFile != "" {
		// As a host daemon does at start (vmhost/manager): counted here.
		if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
			return err
		}
		if opts.DigestKey, err = digests.LoadOrCreateKey(keyFile); err != nil {
			return err
		}
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return err
	}
	res.LoadIndex = time.Since(start)
	m, err := repo.Upload(ctx, snapshot.Info{ID: id, Kind: "standby", Compression: compression.Setting{Algorithm: compression.Zstd, Level: 1}},
		[]snapshot.FileSource{{Name: "memory", Path: input}}, opts)
	if err != nil {
		return err
	}
	res.Wall = time.Since(start)
	res.CPU = selfCPU() - c0
	res.Totals = m.Totals
	res.Sent = counted.sent.Load()
	res.MaxRSS = vmHWM()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// vmHWM is this process's peak resident set size in bytes
// (/proc/self/status), or -1 if unknown.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err == nil {
				return kib << 10
			}
		}
	}
	return -1
}

// openStore opens the bench's S3 store; unsigned sends chunk bodies as
// UNSIGNED-PAYLOAD (s3.Config.UnsignedPayloadPrefixes).
func openStore(ctx context.Context, endpoint, bucket, access, secret string, unsigned bool) (*s3.Store, error) {
	cfg := s3.Config{Endpoint: endpoint, Bucket: bucket, AccessKey: access, SecretKey: s3.Secret(secret),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if unsigned {
		cfg.UnsignedPayloadPrefixes = []string{"chunks/"}
	}
	return s3.Open(ctx, cfg)
}

// cost is one arm's wall time and CPU time: its own processes', and the
// MinIO server's meanwhile.
type cost struct {
	wall, cpu, minio time.Duration
}

func (c cost) add(o cost) cost { return cost{c.wall + o.wall, c.cpu + o.cpu, c.minio + o.minio} }

// findPID returns the pid of the MinIO server listening on endpoint (found
// by its command line), or 0.
func findPID(endpoint string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("--address\x00"+endpoint+"\x00")) {
			return pid
		}
	}
	return 0
}

// procCPU is a process's user + system CPU time so far (/proc/<pid>/stat),
// or 0 if unknown.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 Hz on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscanf(f[11], "%d", &ut)
	fmt.Sscanf(f[12], "%d", &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// childCPU is an exited child's user + system time.
func childCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}

// runTool runs a CLI tool and returns its cost.
func runTool(ctx context.Context, minioPID int, name string, args ...string) (cost, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	m0, start := procCPU(minioPID), time.Now()
	out, err := cmd.CombinedOutput()
	c := cost{wall: time.Since(start), cpu: childCPU(cmd.ProcessState), minio: procCPU(minioPID) - m0}
	if err != nil {
		return c, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return c, nil
}

// inProcess times fn, with this process's and MinIO's CPU time.
func inProcess(minioPID int, fn func() error) (cost, error) {
	m0, c0, start := procCPU(minioPID), selfCPU(), time.Now()
	err := fn()
	return cost{wall: time.Since(start), cpu: selfCPU() - c0, minio: procCPU(minioPID) - m0}, err
}

// sentCounter counts the bytes of successful writes: what went over the
// wire and stayed.
type sentCounter struct {
	storage.Store
	sent atomic.Int64
}

func (s *sentCounter) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	err := s.Store.Put(ctx, key, r, size)
	if err == nil {
		s.sent.Add(size)
	}
	return err
}

func (s *sentCounter) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	err := s.Store.Create(ctx, key, r, size)
	if err == nil {
		s.sent.Add(size)
	}
	return err
}

// writeChanged copies in to out and changes one byte in a fraction of its
// non-hole 4 MiB chunks, spread evenly (xor flip). It returns how many it
// changed.
func writeChanged(in, out string, fraction float64, flip byte) (int, error) {
	src, err := os.Open(in)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	var data []int64
	buf := make([]byte, chunk.DefaultSize)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if !chunk.IsZero(buf[:n]) {
				data = append(data, off)
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return 0, err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	n := max(1, int(float64(len(data))*fraction+0.5))
	one := make([]byte, 1)
	for i := range n {
		off := data[i*len(data)/n]
		if _, err := src.ReadAt(one, off); err != nil {
			return 0, err
		}
		one[0] ^= flip
		if _, err := dst.WriteAt(one, off); err != nil {
			return 0, err
		}
	}
	return n, dst.Close()
}

// baseline runs the operator's way and fills rep's baseline fields: zstd -1
// once, then one PUT with minio-go's default (signed body) and one with
// UNSIGNED-PAYLOAD (the client setting hangar's unsigned arm uses), GET,
// zstd -d, and the fsync of the restored file (timed apart: hangar's
// download includes one, the operator's zstd -d does not).
func baseline(ctx context.Context, e *benchEnv, bucket string, rep *report) error {
	srv := e.srv
	zst := filepath.Join(e.work, "memory.zst")
	var err error
	if rep.baseCompress, err = runTool(ctx, e.minioPID, "zstd", "-1", "-q", "-f", e.input, "-o", zst); err != nil {
		return err
	}
	st, err := os.Stat(zst)
	if err != nil {
		return err
	}
	rep.baseSize = st.Size()
	client, err := srv.Client()
	if err != nil {
		return err
	}
	put := func(name string, unsigned bool) (cost, error) {
		return inProcess(e.minioPID, func() error {
			_, err := client.FPutObject(ctx, bucket, name, zst, minio.PutObjectOptions{PartSize: e.part, NumThreads: e.threads, DisableContentSha256: unsigned})
			if err != nil {
				return fmt.Errorf("baseline put: %w", err)
			}
			return nil
		})
	}
	if rep.basePutSigned, err = put("memory-signed.zst", false); err != nil {
		return err
	}
	if rep.basePut, err = put("memory.zst", true); err != nil {
		return err
	}
	os.Remove(zst)
	got := filepath.Join(e.work, "restored.zst")
	dropCache(srv.Dir)
	if rep.baseGet, err = inProcess(e.minioPID, func() error {
		if err := client.FGetObject(ctx, bucket, "memory.zst", got, minio.GetObjectOptions{}); err != nil {
			return fmt.Errorf("baseline get: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	restored := filepath.Join(e.work, "restored")
	if rep.baseDecompress, err = runTool(ctx, e.minioPID, "zstd", "-d", "-q", "-f", got, "-o", restored); err != nil {
		return err
	}
	os.Remove(got)
	defer os.Remove(restored)
	if rep.baseSync, err = inProcess(e.minioPID, func() error {
		f, err := os.OpenFile(restored, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	}); err != nil {
		return err
	}
	return sameFile(e.input, restored)
}

// sameFile compares two files' bytes.
func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	for off := int64(0); ; off += int64(len(ba)) {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("%s and %s differ near offset %d", a, b, off)
		}
		if ea != nil || eb != nil {
			return nil
		}
	}
}

// bucketBytes sums the sizes of the objects under prefix.
func bucketBytes(ctx context.Context, s storage.Lister, prefix string) (int64, error) {
	var n int64
	err := s.List(ctx, prefix, func(oi storage.ObjectInfo) error { n += oi.Size; return nil })
	return n, err
}

type report struct {
	in                                   int64
	upSigned, up1, up2, up2d             childResult
	down, downNoSync                     cost
	stored                               int64
	baseCompress, basePutSigned, basePut cost
	baseGet, baseDecompress, baseSync    cost
	baseSize                             int64
}

func (r *report) childCost(c childResult) cost {
	return cost{wall: c.Wall, cpu: c.CPU, minio: c.MinIOCPU}
}

// ratios are the targets' measures of one round.
type ratios struct {
	upSigned, upUnsigned, reupload, reuploadDigests, down, downSync float64
}

// dropCache evicts the files under dir from the page cache
// (POSIX_FADV_DONTNEED), so that the next read of them comes from the
// disk: only our MinIO's files, not the machine's whole cache. MinIO
// fdatasyncs what it writes, so nothing dirty stays behind.
func dropCache(dir string) {
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if f, err := os.Open(path); err == nil {
			_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			f.Close()
		}
		return nil
	})
}

func (r *report) ratios() ratios {
	baseUpSigned := r.baseCompress.add(r.basePutSigned).wall.Seconds()
	baseUp := r.baseCompress.add(r.basePut).wall.Seconds()
	baseDown := r.baseGet.add(r.baseDecompress).wall.Seconds()
	return ratios{
		upSigned:        baseUpSigned / r.upSigned.Wall.Seconds(),
		upUnsigned:      baseUp / r.up1.Wall.Seconds(),
		reupload:        r.up1.Wall.Seconds() / r.up2.Wall.Seconds(),
		reuploadDigests: r.up1.Wall.Seconds() / r.up2d.Wall.Seconds(),
		down:            baseDown / r.downNoSync.wall.Seconds(),
		downSync:        (baseDown + r.baseSync.wall.Seconds()) / r.down.wall.Seconds(),
	}
}

func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\twall s\tMB/s\tCPU s\tMinIO CPU s\tbytes sent\tbytes stored\tvs baseline\t")
	row := func(name string, c cost, sent, stored string, vs string) {
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%.2f\t%.2f\t%s\t%s\t%s\t\n", name, c.wall.Seconds(), float64(r.in)/c.wall.Seconds()/1e6,
			c.cpu.Seconds(), c.minio.Seconds(), sent, stored, vs)
	}
	vs := func(base, c cost) string { return fmt.Sprintf("%.2f×", base.wall.Seconds()/c.wall.Seconds()) }
	baseUpSigned := r.baseCompress.add(r.basePutSigned)
	baseUp := r.baseCompress.add(r.basePut)
	baseDown := r.baseGet.add(r.baseDecompress)
	size := fmt.Sprint(r.baseSize)
	row("baseline upload: zstd -1 + PUT (signed)", baseUpSigned, size, size, "1.00×")
	row("baseline upload: zstd -1 + PUT (unsigned)", baseUp, size, size, "1.00×")
	row("  zstd -1", r.baseCompress, "-", "-", "")
	row("  PUT (minio-go, signed body)", r.basePutSigned, "-", "-", "")
	row("  PUT (minio-go, UNSIGNED-PAYLOAD)", r.basePut, "-", "-", "")
	row("hangar upload (signed)", r.childCost(r.upSigned), fmt.Sprint(r.upSigned.Sent), fmt.Sprint(r.upSigned.Totals.Compressed), vs(baseUpSigned, r.childCost(r.upSigned)))
	row("hangar upload (unsigned chunks, digest key)", r.childCost(r.up1), fmt.Sprint(r.up1.Sent), fmt.Sprint(r.up1.Totals.Compressed), vs(baseUp, r.childCost(r.up1)))
	row("hangar upload, 1% changed, no digest record", r.childCost(r.up2), fmt.Sprint(r.up2.Sent), fmt.Sprint(r.up2.Totals.NewStored), vs(baseUp, r.childCost(r.up2)))
	row("hangar upload, 1% changed, same host (record)", r.childCost(r.up2d), fmt.Sprint(r.up2d.Sent), fmt.Sprint(r.up2d.Totals.NewStored), vs(baseUp, r.childCost(r.up2d)))
	row("baseline download: GET + zstd -d", baseDown, "-", "-", "1.00×")
	row("  GET (minio-go)", r.baseGet, "-", "-", "")
	row("  zstd -d", r.baseDecompress, "-", "-", "")
	row("  fsync of the restored file", r.baseSync, "-", "-", "")
	row("baseline download + fsync", baseDown.add(r.baseSync), "-", "-", "1.00×")
	row("hangar download (no cache, fsync)", r.down, "-", "-", vs(baseDown.add(r.baseSync), r.down))
	row("hangar download (no cache, NoSync)", r.downNoSync, "-", "-", vs(baseDown, r.downNoSync))
	tw.Flush()
	t := r.up1.Totals
	fmt.Fprintf(w, "\nhangar first upload: raw %d, non-zero %d, stored %d (%d holes, %d chunks); index load %.3fs\n",
		t.Raw, t.NonZero, t.Compressed, t.Holes, t.Chunks, r.up1.LoadIndex.Seconds())
	fmt.Fprintf(w, "hangar second upload: %d new bytes stored, index load %.3fs; with the digest record: %d new bytes stored, %d of %d non-zero bytes unchanged (not hashed); bucket holds %d bytes after all\n",
		r.up2.Totals.NewStored, r.up2.LoadIndex.Seconds(), r.up2d.Totals.NewStored, r.up2d.Unchanged, r.up2d.Totals.NonZero, r.stored)
	fmt.Fprintf(w, "hangar upload peak RSS: %d MiB (first, signed), %d MiB (first, unsigned chunks), %d MiB (second), %d MiB (second, record)\n",
		r.upSigned.MaxRSS>>20, r.up1.MaxRSS>>20, r.up2.MaxRSS>>20, r.up2d.MaxRSS>>20)
	fmt.Fprintf(w, "first / 1%%-changed upload: %.1f× wall, %.1f× CPU without a digest record; %.1f× wall, %.1f× CPU with it\n\n",
		r.up1.Wall.Seconds()/r.up2.Wall.Seconds(), r.up1.CPU.Seconds()/r.up2.CPU.Seconds(),
		r.up1.Wall.Seconds()/r.up2d.Wall.Seconds(), r.up1.CPU.Seconds()/r.up2d.CPU.Seconds())
	q := r.ratios()
	fmt.Fprintf(w, "target upload >= 1.3× baseline: %.2f× both signed %s, %.2f× both unsigned %s\n", q.upSigned, passFail(q.upSigned >= 1.3), q.upUnsigned, passFail(q.upUnsigned >= 1.3))
	fmt.Fprintf(w, "target 1%%-changed upload >= 10× faster than the first (same host, digest record): %.2f× %s (without a record: %.2f×)\n",
		q.reuploadDigests, passFail(q.reuploadDigests >= 10), q.reupload)
	fmt.Fprintf(w, "target download+decompress >= 2× baseline: %.2f× both without fsync %s, %.2f× both with fsync %s\n", q.down, passFail(q.down >= 2), q.downSync, passFail(q.downSync >= 2))
	fmt.Fprintf(w, "target no more bytes stored than baseline (first snapshot): %d vs %d %s\n", t.Compressed, r.baseSize, passFail(t.Compressed <= r.baseSize))
	fmt.Fprintf(w, "target upload peak RSS < 512 MiB: %d MiB %s\n", r.up1.MaxRSS>>20, passFail(r.up1.MaxRSS > 0 && r.up1.MaxRSS < 512<<20))
}

// summarise prints each target's ratio over the rounds: min, median, max.
func summarise(w io.Writer, reps []*report) {
	pick := func(f func(ratios) float64) string {
		v := make([]float64, len(reps))
		for i, r := range reps {
			v[i] = f(r.ratios())
		}
		slices.Sort(v)
		return fmt.Sprintf("min %.2f  median %.2f  max %.2f", v[0], v[len(v)/2], v[len(v)-1])
	}
	fmt.Fprintf(w, "\nover %d rounds:\n", len(reps))
	fmt.Fprintf(w, "  upload vs baseline, both signed:        %s\n", pick(func(q ratios) float64 { return q.upSigned }))
	fmt.Fprintf(w, "  upload vs baseline, both unsigned:      %s\n", pick(func(q ratios) float64 { return q.upUnsigned }))
	fmt.Fprintf(w, "  first / 1%%-changed upload, no record:   %s\n", pick(func(q ratios) float64 { return q.reupload }))
	fmt.Fprintf(w, "  first / 1%%-changed upload, same host:   %s\n", pick(func(q ratios) float64 { return q.reuploadDigests }))
	fmt.Fprintf(w, "  download vs baseline, neither fsyncs:   %s\n", pick(func(q ratios) float64 { return q.down }))
	fmt.Fprintf(w, "  download vs baseline, both fsync:       %s\n", pick(func(q ratios) float64 { return q.downSync }))
}
