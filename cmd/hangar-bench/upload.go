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
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/chunk"
	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/storage/snapshot"
)

// runUpload measures hangar's upload and download pipelines against a local
// MinIO server it starts itself, beside what an operator does without
// hangar, on one memory-like file:
//
//   - hangar upload (zstd 1, 4 MiB chunks), in a child process so that its
//     peak RSS is the pipeline's alone;
//   - hangar upload of the same file with 1% of its chunks changed, in a
//     fresh child process that loads the chunk index first (one listing,
//     counted in the time), as a restarted host would;
//   - hangar download into a fresh directory with no cache (every chunk
//     from MinIO, verified, decompressed, written sparse);
//   - baseline: zstd -1 the whole file (the CLI's default single thread),
//     upload the .zst as one object with minio-go (explicit part size and
//     threads), download it, zstd -d it.
//
// Every restored file is compared with the input after its timing.
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
	child := fs.String("child", "", "internal: run one hangar upload (snapshot id) and print its result as JSON")
	endpoint := fs.String("endpoint", "", "internal: MinIO endpoint for -child")
	bucket := fs.String("bucket", "", "internal: bucket for -child")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *child != "" {
		return uploadChild(ctx, *child, *endpoint, *bucket, *input, *uploaders)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *zero < 0 || *zero > 1 || *changed <= 0 || *changed > 1 || *uploaders < 1 || *concurrency < 1 || *threads < 1 {
		return errors.New("want 0 <= -zero <= 1, 0 < -changed <= 1, -uploaders, -concurrency and -threads >= 1")
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
	for _, b := range []string{"hangar", "baseline"} {
		if err := srv.CreateBucket(ctx, b); err != nil {
			return err
		}
	}
	load0 := loadAvg()
	fmt.Printf("input %s: %s, MinIO at %s (data in %s), %s\n", *input, formatSize(n), srv.Endpoint, work, toolVersions())
	if err := readAll(*input); err != nil { // every row reads from the page cache
		return err
	}

	var rep report
	rep.in = n

	// hangar upload, then the 1%-changed upload, each in a child process.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	runChild := func(id, path string) (childResult, error) {
		cmd := exec.CommandContext(ctx, self, "upload", "-child", id, "-endpoint", srv.Endpoint, "-bucket", "hangar",
			"-input", path, "-uploaders", fmt.Sprint(*uploaders))
		cmd.Env = append(os.Environ(), "HANGAR_BENCH_ACCESS_KEY="+srv.AccessKey, "HANGAR_BENCH_SECRET_KEY="+srv.SecretKey)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return childResult{}, fmt.Errorf("child upload %s: %w", id, err)
		}
		var res childResult
		if err := json.Unmarshal(out, &res); err != nil {
			return childResult{}, fmt.Errorf("child upload %s: %w (output %q)", id, err, out)
		}
		return res, nil
	}
	fmt.Println("hangar upload ...")
	if rep.up1, err = runChild("first", *input); err != nil {
		return err
	}
	changedPath := filepath.Join(work, "memory-changed")
	nChanged, err := writeChanged(*input, changedPath, *changed)
	if err != nil {
		return err
	}
	if err := readAll(changedPath); err != nil {
		return err
	}
	fmt.Printf("hangar upload with %d chunks changed ...\n", nChanged)
	if rep.up2, err = runChild("second", changedPath); err != nil {
		return err
	}
	os.Remove(changedPath)

	// hangar download into a fresh directory, no cache.
	store, err := openStore(ctx, srv.Endpoint, "hangar", srv.AccessKey, srv.SecretKey)
	if err != nil {
		return err
	}
	repo, err := snapshot.New(store, snapshot.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	m, err := repo.Manifest(ctx, "first")
	if err != nil {
		return err
	}
	outDir := filepath.Join(work, "restore")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return err
	}
	fmt.Println("hangar download ...")
	start := time.Now()
	if _, err := repo.Download(ctx, m, outDir, snapshot.DownloadOptions{Concurrency: *concurrency}); err != nil {
		return err
	}
	rep.down = time.Since(start)
	if err := sameFile(*input, filepath.Join(outDir, "memory")); err != nil {
		return fmt.Errorf("hangar download: %w", err)
	}
	os.RemoveAll(outDir)
	if rep.stored, err = bucketBytes(ctx, store, ""); err != nil {
		return err
	}

	// The baseline.
	fmt.Println("baseline ...")
	if err := baseline(ctx, srv, *input, work, uint64(part), *threads, &rep); err != nil {
		return err
	}
	rep.print(os.Stdout)
	fmt.Printf("load average before: %s, after: %s\n", load0, loadAvg())
	return nil
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
}

// uploadChild is one hangar upload in its own process: open the store,
// load the index (a fresh process knows nothing), upload, report.
func uploadChild(ctx context.Context, id, endpoint, bucket, input string, uploaders int) error {
	store, err := openStore(ctx, endpoint, bucket, os.Getenv("HANGAR_BENCH_ACCESS_KEY"), os.Getenv("HANGAR_BENCH_SECRET_KEY"))
	if err != nil {
		return err
	}
	counted := &sentCounter{Store: store}
	repo, err := snapshot.New(counted, snapshot.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	var res childResult
	start := time.Now()
	if err := repo.LoadIndex(ctx); err != nil {
		return err
	}
	res.LoadIndex = time.Since(start)
	m, err := repo.Upload(ctx, snapshot.Info{ID: id, Kind: "standby", Compression: compression.Setting{Algorithm: compression.Zstd, Level: 1}},
		[]snapshot.FileSource{{Name: "memory", Path: input}}, snapshot.UploadOptions{ChunkSize: chunk.DefaultSize, Uploaders: uploaders})
	if err != nil {
		return err
	}
	res.Wall = time.Since(start)
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

func openStore(ctx context.Context, endpoint, bucket, access, secret string) (*s3.Store, error) {
	return s3.Open(ctx, s3.Config{Endpoint: endpoint, Bucket: bucket, AccessKey: access, SecretKey: s3.Secret(secret),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
// non-hole 4 MiB chunks, spread evenly. It returns how many it changed.
func writeChanged(in, out string, fraction float64) (int, error) {
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
		one[0] ^= 0x5a
		if _, err := dst.WriteAt(one, off); err != nil {
			return 0, err
		}
	}
	return n, dst.Close()
}

// baseline runs the operator's way and fills rep's baseline fields.
func baseline(ctx context.Context, srv *miniotest.Server, input, work string, part uint64, threads uint, rep *report) error {
	zst := filepath.Join(work, "memory.zst")
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "zstd", "-1", "-q", "-f", input, "-o", zst).CombinedOutput(); err != nil {
		return fmt.Errorf("zstd -1: %w: %s", err, out)
	}
	rep.baseCompress = time.Since(start)
	st, err := os.Stat(zst)
	if err != nil {
		return err
	}
	rep.baseSize = st.Size()
	client, err := srv.Client()
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := client.FPutObject(ctx, "baseline", "memory.zst", zst, minio.PutObjectOptions{PartSize: part, NumThreads: threads}); err != nil {
		return fmt.Errorf("baseline put: %w", err)
	}
	rep.basePut = time.Since(start)
	os.Remove(zst)
	got := filepath.Join(work, "restored.zst")
	start = time.Now()
	if err := client.FGetObject(ctx, "baseline", "memory.zst", got, minio.GetObjectOptions{}); err != nil {
		return fmt.Errorf("baseline get: %w", err)
	}
	rep.baseGet = time.Since(start)
	restored := filepath.Join(work, "restored")
	start = time.Now()
	if out, err := exec.CommandContext(ctx, "zstd", "-d", "-q", "-f", got, "-o", restored).CombinedOutput(); err != nil {
		return fmt.Errorf("zstd -d: %w: %s", err, out)
	}
	rep.baseDecompress = time.Since(start)
	os.Remove(got)
	defer os.Remove(restored)
	return sameFile(input, restored)
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
	in                                             int64
	up1, up2                                       childResult
	down                                           time.Duration
	stored                                         int64
	baseCompress, basePut, baseGet, baseDecompress time.Duration
	baseSize                                       int64
}

func (r *report) print(w io.Writer) {
	baseUp := r.baseCompress + r.basePut
	baseDown := r.baseGet + r.baseDecompress
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\twall s\tMB/s\tbytes sent\tbytes stored\tvs baseline\t")
	row := func(name string, d time.Duration, sent, stored string, vs string) {
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%s\t%s\t%s\t\n", name, d.Seconds(), float64(r.in)/d.Seconds()/1e6, sent, stored, vs)
	}
	row("baseline upload: zstd -1 + PUT", baseUp, fmt.Sprint(r.baseSize), fmt.Sprint(r.baseSize), "1.00×")
	row("  zstd -1", r.baseCompress, "-", "-", "")
	row("  PUT (minio-go)", r.basePut, "-", "-", "")
	row("hangar upload (zstd 1)", r.up1.Wall, fmt.Sprint(r.up1.Sent), fmt.Sprint(r.up1.Totals.Compressed), fmt.Sprintf("%.2f×", baseUp.Seconds()/r.up1.Wall.Seconds()))
	row("hangar upload, 1% changed", r.up2.Wall, fmt.Sprint(r.up2.Sent), fmt.Sprint(r.up2.Totals.NewStored), fmt.Sprintf("%.2f×", baseUp.Seconds()/r.up2.Wall.Seconds()))
	row("baseline download: GET + zstd -d", baseDown, "-", "-", "1.00×")
	row("  GET (minio-go)", r.baseGet, "-", "-", "")
	row("  zstd -d", r.baseDecompress, "-", "-", "")
	row("hangar download (cold cache)", r.down, "-", "-", fmt.Sprintf("%.2f×", baseDown.Seconds()/r.down.Seconds()))
	tw.Flush()
	t := r.up1.Totals
	fmt.Fprintf(w, "\nhangar first upload: raw %d, non-zero %d, stored %d (%d holes, %d chunks); index load %.3fs\n",
		t.Raw, t.NonZero, t.Compressed, t.Holes, t.Chunks, r.up1.LoadIndex.Seconds())
	fmt.Fprintf(w, "hangar second upload: %d new bytes stored, index load %.3fs; bucket holds %d bytes after both\n",
		r.up2.Totals.NewStored, r.up2.LoadIndex.Seconds(), r.stored)
	fmt.Fprintf(w, "hangar upload peak RSS: %d MiB (first), %d MiB (second)\n\n", r.up1.MaxRSS>>20, r.up2.MaxRSS>>20)
	speed := baseUp.Seconds() / r.up1.Wall.Seconds()
	re := r.up1.Wall.Seconds() / r.up2.Wall.Seconds()
	down := baseDown.Seconds() / r.down.Seconds()
	fmt.Fprintf(w, "target upload >= 1.3× baseline: %.2f× %s\n", speed, passFail(speed >= 1.3))
	fmt.Fprintf(w, "target 1%%-changed upload >= 10× faster than the first: %.1f× %s\n", re, passFail(re >= 10))
	fmt.Fprintf(w, "target download+decompress >= 2× baseline: %.2f× %s\n", down, passFail(down >= 2))
	fmt.Fprintf(w, "target no more bytes stored than baseline (first snapshot): %d vs %d %s\n", t.Compressed, r.baseSize, passFail(t.Compressed <= r.baseSize))
	fmt.Fprintf(w, "target upload peak RSS < 512 MiB: %d MiB %s\n", r.up1.MaxRSS>>20, passFail(r.up1.MaxRSS > 0 && r.up1.MaxRSS < 512<<20))
}
