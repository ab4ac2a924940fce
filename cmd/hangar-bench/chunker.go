package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/storage/chunk"
)

// runChunker compares hangar's parallel chunker with the compressors VM
// managers run today, on one memory-like file:
//
//   - hangar zero detection alone (parallel ReadAt + IsZero per chunk);
//   - hangar chunker (zero detection, SHA-256, compression, stored form)
//     at zstd 1 and lz4 0, writing every stored chunk to one output file;
//   - zstd -1 (the CLI's default: one compression thread, the way VM
//     managers compress a memory file today), zstd -1 --single-thread,
//     zstd -1 -T0 (all cores) and lz4 -1, each writing its output file.
//
// Every output goes to a temporary file beside the input, so all rows pay
// the same kind of I/O; the input is read once before measuring so every
// row reads it from the page cache. Each row reports its median wall time,
// the spread of wall times over the rounds, its median CPU time (user +
// system, per GiB too: the work per byte, which load changes far less), and
// its speed against zstd -1 as the median and range of per-round ratios.
func runChunker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("chunker", flag.ContinueOnError)
	size := byteSize(1 << 30)
	fs.Var(&size, "size", "input size when the input file is generated (1GiB, 256MiB, or bytes)")
	zero := fs.Float64("zero", 0.6, "fraction of zero pages when the input file is generated")
	input := fs.String("input", "", "input file: reused as is if it exists, else generated there (default: a file in the temp dir named after -size and -zero)")
	runs := fs.Int("runs", 3, "rounds: measure every row this many times, interleaved, and report medians and spreads")
	workers := fs.Int("workers", 0, "hangar chunker workers (0 = GOMAXPROCS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *zero < 0 || *zero > 1 || *runs < 1 || *workers < 0 {
		return errors.New("want 0 <= -zero <= 1, -runs >= 1, -workers >= 0")
	}
	for _, tool := range []string{"zstd", "lz4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s CLI not found (scripts/deps.sh installs it): %w", tool, err)
		}
	}
	path := *input
	if path == "" {
		path = filepath.Join(os.TempDir(), fmt.Sprintf("hangar-bench-%s-zero%.2f.mem", formatSize(int64(size)), *zero))
	}
	n, err := prepareInput(ctx, path, int64(size), *zero)
	if err != nil {
		return err
	}
	// Warm the page cache so that no row pays for the first read.
	if err := readAll(path); err != nil {
		return err
	}

	zstd1, err := compression.New(compression.Zstd, 1)
	if err != nil {
		return err
	}
	lz40, err := compression.New(compression.LZ4, 0)
	if err != nil {
		return err
	}
	w := *workers
	if w == 0 {
		w = runtime.GOMAXPROCS(0)
	}
	rows := []benchRow{
		{name: "hangar zero detection", run: func(ctx context.Context, in, _ string) (result, error) { return zeroScan(ctx, in, w) }},
		{name: "hangar chunker zstd 1", run: func(ctx context.Context, in, out string) (result, error) { return chunker(ctx, in, out, zstd1, w) }},
		{name: "hangar chunker lz4 0", run: func(ctx context.Context, in, out string) (result, error) { return chunker(ctx, in, out, lz40, w) }},
		{name: "zstd -1", run: external("zstd", "-1", "-q", "-f", "{in}", "-o", "{out}")},
		{name: "zstd -1 --single-thread", run: external("zstd", "-1", "--single-thread", "-q", "-f", "{in}", "-o", "{out}")},
		{name: "zstd -1 -T0", run: external("zstd", "-1", "-T0", "-q", "-f", "{in}", "-o", "{out}")},
		{name: "lz4 -1", run: external("lz4", "-1", "-q", "-f", "{in}", "{out}")},
	}
	fmt.Printf("input %s: %d bytes (%.0f%% zero pages when generated), %d CPUs, GOMAXPROCS %d, hangar workers %d, %s, %d rounds\n",
		path, n, *zero*100, runtime.NumCPU(), runtime.GOMAXPROCS(0), w, toolVersions(), *runs)
	// Rounds go over every row in turn, so that a burst of load from other
	// processes on a shared machine hits all rows alike rather than one;
	// speed ratios are then taken within each round (paired) and their
	// spread reported, which says more than a ratio of two medians.
	load0 := loadAvg()
	for round := range *runs {
		for i := range rows {
			res, err := measure(ctx, rows[i].run, path)
			if err != nil {
				return fmt.Errorf("%s: %w", rows[i].name, err)
			}
			rows[i].all = append(rows[i].all, res)
		}
		h, z := rows[1].all[round], rows[3].all[round] // hangar chunker zstd 1, zstd -1
		fmt.Printf("round %d: load %s, CPU pressure %s; hangar zstd 1 %.3f s (%.2f CPU-s), zstd -1 %.3f s (%.2f CPU-s): %.2f×\n",
			round+1, loadAvg(), cpuPressure(), h.wall.Seconds(), h.cpu.Seconds(), z.wall.Seconds(), z.cpu.Seconds(), z.wall.Seconds()/h.wall.Seconds())
	}
	printTable(os.Stdout, rows, n)
	fmt.Printf("load average before: %s, after: %s; CPU pressure now: %s\n", load0, loadAvg(), cpuPressure())
	return nil
}

// cpuPressure is the kernel's PSI "some" line for CPU: the share of time
// runnable tasks waited for a CPU (avg10, avg60, avg300).
func cpuPressure() string {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 {
		return "unknown"
	}
	return strings.Join(f[1:4], " ")
}

// loadAvg is the 1, 5 and 15 minute load averages: on a shared machine,
// part of the context a measurement needs.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

type benchRow struct {
	name string
	run  func(ctx context.Context, in, out string) (result, error)
	all  []result // one per round, in round order
}

// median is the row's result with the median wall time.
func (r benchRow) median() result {
	s := slices.Clone(r.all)
	slices.SortFunc(s, func(a, b result) int { return int(a.wall - b.wall) })
	return s[len(s)/2]
}

// medianCPU is the median of the row's CPU times (its own median, not the
// CPU time of the median-wall round: CPU time varies less with load).
func (r benchRow) medianCPU() time.Duration {
	c := make([]time.Duration, len(r.all))
	for i, x := range r.all {
		c[i] = x.cpu
	}
	slices.Sort(c)
	return c[len(c)/2]
}

// spread is the row's fastest and slowest wall time.
func (r benchRow) spread() (lo, hi time.Duration) {
	lo, hi = r.all[0].wall, r.all[0].wall
	for _, x := range r.all[1:] {
		lo, hi = min(lo, x.wall), max(hi, x.wall)
	}
	return lo, hi
}

// pairedSpeedup is base's wall time over r's, round by round: the median,
// lowest and highest of those ratios.
func pairedSpeedup(r, base benchRow) (med, lo, hi float64) {
	q := make([]float64, len(r.all))
	for i := range r.all {
		q[i] = base.all[i].wall.Seconds() / r.all[i].wall.Seconds()
	}
	slices.Sort(q)
	return q[len(q)/2], q[0], q[len(q)-1]
}

type result struct {
	wall time.Duration
	cpu  time.Duration
	out  int64  // output bytes; -1 when the row writes none
	note string // extra facts (holes)
}

// measure runs one row with a fresh output file beside the input and
// removes the output afterwards.
func measure(ctx context.Context, run func(ctx context.Context, in, out string) (result, error), in string) (result, error) {
	f, err := os.CreateTemp(filepath.Dir(in), ".hangar-bench-out-*")
	if err != nil {
		return result{}, err
	}
	out := f.Name()
	f.Close()
	defer os.Remove(out)
	return run(ctx, in, out)
}

// zeroScan reads the file in chunks on w goroutines and checks each for
// zeros: the cost of hole detection alone, reads included.
func zeroScan(ctx context.Context, in string, w int) (result, error) {
	f, err := os.Open(in)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return result{}, err
	}
	size := st.Size()
	nChunks := (size + chunk.DefaultSize - 1) / chunk.DefaultSize
	holes := make([]int64, w)
	cpu0 := selfCPU()
	start := time.Now()
	g, ctx := errgroup.WithContext(ctx)
	for k := range w {
		g.Go(func() error {
			buf := make([]byte, chunk.DefaultSize)
			for i := int64(k); i < nChunks; i += int64(w) {
				if err := ctx.Err(); err != nil {
					return err
				}
				off := i * chunk.DefaultSize
				b := buf[:min(chunk.DefaultSize, size-off)]
				if _, err := f.ReadAt(b, off); err != nil {
					return err
				}
				if chunk.IsZero(b) {
					holes[k]++
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	var h int64
	for _, x := range holes {
		h += x
	}
	return result{wall: wall, cpu: selfCPU() - cpu0, out: -1, note: fmt.Sprintf("%d of %d chunks are holes", h, nChunks)}, nil
}

// chunker runs chunk.Split over the file and appends every stored chunk to
// out, as a local chunk cache would keep them.
func chunker(ctx context.Context, in, out string, codec compression.Codec, w int) (result, error) {
	f, err := os.Open(in)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return result{}, err
	}
	o, err := os.Create(out)
	if err != nil {
		return result{}, err
	}
	defer o.Close()
	var stored, holes, chunks int64
	cpu0 := selfCPU()
	start := time.Now()
	err = chunk.Split(ctx, f, st.Size(), chunk.Options{Codec: codec, Workers: w}, func(_ context.Context, c *chunk.Chunk) error {
		defer c.Release()
		chunks++
		if c.Hole {
			holes++
			return nil
		}
		n, err := o.Write(c.Stored)
		stored += int64(n)
		return err
	})
	if err == nil {
		err = o.Close()
	}
	if err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	return result{wall: wall, cpu: selfCPU() - cpu0, out: stored, note: fmt.Sprintf("%d holes of %d chunks", holes, chunks)}, nil
}

// external runs a CLI with {in} and {out} substituted.
func external(name string, args ...string) func(ctx context.Context, in, out string) (result, error) {
	return func(ctx context.Context, in, out string) (result, error) {
		a := make([]string, len(args))
		for i, s := range args {
			a[i] = strings.NewReplacer("{in}", in, "{out}", out).Replace(s)
		}
		cmd := exec.CommandContext(ctx, name, a...)
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return result{}, fmt.Errorf("%s %s: %w", name, strings.Join(a, " "), err)
		}
		wall := time.Since(start)
		st, err := os.Stat(out)
		if err != nil {
			return result{}, err
		}
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return result{wall: wall, cpu: cpu, out: st.Size()}, nil
	}
}

func printTable(w io.Writer, rows []benchRow, in int64) {
	byName := map[string]benchRow{}
	for _, r := range rows {
		byName[r.name] = r
	}
	base := byName["zstd -1"]
	gib := float64(in) / (1 << 30)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tMB/s\twall s\twall s min-max\tCPU s\tCPU s/GiB\toutput bytes\tout/in\tvs zstd -1 (paired: median, min-max)\t")
	for _, r := range rows {
		m := r.median()
		cpu := r.medianCPU()
		lo, hi := r.spread()
		outCol, ratio := "-", "-"
		if m.out >= 0 {
			outCol = fmt.Sprint(m.out)
			ratio = fmt.Sprintf("%.3f", float64(m.out)/float64(in))
		}
		med, qlo, qhi := pairedSpeedup(r, base)
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.3f-%.3f\t%.2f\t%.2f\t%s\t%s\t%.2f× (%.2f-%.2f)\t\n", r.name,
			float64(in)/m.wall.Seconds()/1e6, m.wall.Seconds(), lo.Seconds(), hi.Seconds(), cpu.Seconds(),
			cpu.Seconds()/gib, outCol, ratio, med, qlo, qhi)
	}
	tw.Flush()
	for _, r := range rows {
		if note := r.all[0].note; note != "" {
			fmt.Fprintf(w, "%s: %s\n", r.name, note)
		}
	}
	h := byName["hangar chunker zstd 1"]
	zs := byName["hangar zero detection"].median()
	fmt.Fprintf(w, "\nzero detection: %.1f GB/s incl. reads from page cache (target >= 5 GB/s)\n", float64(in)/zs.wall.Seconds()/1e9)
	for _, ref := range []string{"zstd -1", "zstd -1 --single-thread", "zstd -1 -T0"} {
		b := byName[ref]
		med, lo, hi := pairedSpeedup(h, b)
		size := float64(h.median().out)/float64(b.median().out) - 1
		verdict := ""
		if ref == "zstd -1" {
			verdict = fmt.Sprintf(" (target >= 1.20× and <= +10%%: %s)", passFail(med >= 1.2 && size <= 0.10))
		}
		fmt.Fprintf(w, "hangar zstd 1 / %s: %.2f× throughput (rounds %.2f-%.2f), output %+.1f%%%s\n", ref, med, lo, hi, size*100, verdict)
	}
}

func passFail(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// prepareInput reuses path if it exists, else writes size bytes of
// memtest data there (atomically: a temp file renamed into place, so an
// interrupted run never leaves a short input to be reused). It returns the
// file's size.
func prepareInput(ctx context.Context, path string, size int64, zero float64) (int64, error) {
	if st, err := os.Stat(path); err == nil {
		if !st.Mode().IsRegular() {
			return 0, fmt.Errorf("input %s is not a regular file", path)
		}
		fmt.Printf("reusing input %s\n", path)
		return st.Size(), nil
	}
	fmt.Printf("writing %s of memory-like bytes to %s\n", formatSize(size), path)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hangar-bench-input-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	// 64 MiB segments, each from its own seed: bounded memory, and the
	// same bytes for the same size and zero fraction on every machine.
	const seg = 64 << 20
	buf := make([]byte, seg)
	for off, i := int64(0), uint64(0); off < size; off, i = off+seg, i+1 {
		if err := ctx.Err(); err != nil {
			tmp.Close()
			return 0, err
		}
		b := buf[:min(seg, size-off)]
		memtest.Fill(b, 1000+i, zero)
		if _, err := tmp.Write(b); err != nil {
			tmp.Close()
			return 0, err
		}
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, err
	}
	return size, nil
}

func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// selfCPU is this process's user + system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func toolVersions() string {
	var vs []string
	for _, tool := range []string{"zstd", "lz4"} {
		out, err := exec.Command(tool, "--version").Output()
		if err != nil {
			continue
		}
		s := string(out)
		if i := strings.Index(s, " v"); i >= 0 {
			s = tool + " " + strings.Fields(s[i+1:])[0]
		}
		vs = append(vs, strings.TrimRight(strings.TrimSpace(s), ","))
	}
	vs = append(vs, runtime.Version())
	return strings.Join(vs, ", ")
}
