package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// lazyOpts tune the lazy arm (flags -lazy-*).
type lazyOpts struct {
	workers   int
	readAhead int
	maxWrite  int
	kill      bool // after the rounds: kill the FUSE server under a running guest
}

func (o *lazyOpts) register(fs *flag.FlagSet) {
	fs.IntVar(&o.workers, "lazy-workers", 4, "lazy arm: chunks the background prefetcher fetches at once")
	fs.IntVar(&o.readAhead, "lazy-readahead", 0, "lazy arm: FUSE max_readahead in bytes (0: go-fuse's default)")
	fs.IntVar(&o.maxWrite, "lazy-maxwrite", 0, "lazy arm: FUSE max request size in bytes (0: go-fuse's default, 128 KiB)")
	fs.BoolVar(&o.kill, "lazy-kill", false, "after the rounds: restore lazily with the FUSE server in a child process (no prefetch), kill -9 it under the running guest and report what QEMU and the guest do")
}

// lazyResult is one lazy restore's measurements.
type lazyResult struct {
	cost         roundCost
	atReady      lazyfs.Stats  // when the agent first answered
	verifyAt     time.Duration // request → first verify done (prefetch still running?)
	verifyDuring bool          // the first verify ran before the prefetch completed
	prefetch     time.Duration // request → every chunk present (nopf: read through after the first verify)
	final        lazyfs.Stats
	// Split of the wall: manifest read, small files fetched, mounted,
	// QEMU restored (incoming loaded, cont), agent answered.
	tManifest, tSmall, tMount, tRestore time.Duration
	// After the prefetch: QEMU's resident memory (smaps_rollup) and the
	// backing file's pages in the page cache.
	qemuMem         string
	backingResident int64
	afterEvict      lazyfs.Stats // after POSIX_FADV_DONTNEED of the FUSE file and a third verify
}

// lazyCold is one lazy restore on host b: manifest, the small files
// fetched whole, the memory file served by lazyfs (cache first, then the
// store; background prefetch), QEMU restored with share=off over it,
// request → agent answers. The guest is verified twice: at once (while
// the prefetch runs) and after every chunk is present.
func (b *vmBench) lazyCold(sid string, want guestCheck, minioPID int, arm restoreArm) (lazyResult, error) {
	ctx := b.ctx
	h := b.hosts[1]
	var res lazyResult
	dir, err := os.MkdirTemp(h.root, "lz")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	mnt := filepath.Join(dir, "m")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return res, err
	}
	fetcher := lazyfs.RepoFetcher{Repo: h.repo.Repo, Cache: h.cache, Offer: true}

	m0, s0, start := procCPU(minioPID), selfCPU(), time.Now()
	man, err := h.repo.Manifest(ctx, sid)
	if err != nil {
		return res, err
	}
	res.tManifest = time.Since(start)
	mem, err := fetchSmallFiles(ctx, fetcher, man, dir)
	if err != nil {
		return res, err
	}
	res.tSmall = time.Since(start)
	workers := b.lazy.workers
	if arm.concurrency > 0 {
		workers = arm.concurrency
	}
	mounted := time.Since(start)
	srv, err := lazyfs.Mount(mnt, mem, fetcher, lazyfs.Options{
		BackingDir: dir, PrefetchWorkers: workers, MaxReadAhead: b.lazy.readAhead, MaxWrite: b.lazy.maxWrite, Logger: b.log,
		NoPrefetch: arm.noPrefetch, PrefetchFirst: hotFor(arm, b.hotOrder), RestWorkers: arm.restWorkers, PrefetchDelay: arm.prefetchDelay, PrefetchYield: arm.yield, DemandAhead: arm.ahead,
	})
	if err != nil {
		return res, err
	}
	defer srv.Close()
	res.tMount = time.Since(start)
	cfg := vmhost.Config{Name: "lazy", MemoryMiB: b.memMiB, VCPUs: b.vcpus, Boot: b.image.Boot(), Dir: dir}
	vm, err := h.hv.Restore(ctx, cfg, vmhost.RestoreSource{Dir: dir, MemoryPath: srv.Path(), PrivateMemory: true})
	if err != nil {
		return res, fmt.Errorf("lazy restore: %w", err)
	}
	defer vm.Kill() // before srv.Close (deferred first, runs last): the mapping must go first
	res.tRestore = time.Since(start)
	c, err := guest.WaitReady(ctx, vm)
	if err != nil {
		return res, fmt.Errorf("lazy restore: %w", err)
	}
	defer c.Close()
	res.cost = roundCost{wall: time.Since(start), cpu: selfCPU() - s0, minio: procCPU(minioPID) - m0}
	res.atReady = srv.Stats()
	if err := verify(ctx, c, want); err != nil {
		return res, fmt.Errorf("lazy restore, prefetch running: %w", err)
	}
	res.verifyAt = time.Since(start)
	select {
	case <-srv.PrefetchDone():
	default:
		res.verifyDuring = true
	}
	if arm.noPrefetch {
		// Nothing fills the rest: read the file through the mount.
		if err := readThrough(srv.Path()); err != nil {
			return res, err
		}
	}
	select {
	case <-srv.PrefetchDone():
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(5 * time.Minute):
		return res, errors.New("lazy restore: prefetch not done after 5 minutes")
	}
	if err := verify(ctx, c, want); err != nil {
		return res, fmt.Errorf("lazy restore, prefetch complete: %w", err)
	}
	res.final = srv.Stats()
	res.prefetch = mounted + res.final.PrefetchDone
	res.qemuMem = smapsRollup(vm.PID())
	res.backingResident, _ = srv.BackingResident()
	// Page cache probe: drop the FUSE file's cached pages that no mapping
	// holds, then let the guest read its fill again; the reads that come
	// back to the server are the ones the kernel had to refill.
	if err := fadviseDontNeed(srv.Path()); err != nil {
		return res, err
	}
	if err := verify(ctx, c, want); err != nil {
		return res, fmt.Errorf("lazy restore, after evicting the page cache: %w", err)
	}
	res.afterEvict = srv.Stats()
	if res.final.Errors != 0 || res.final.Fetched != res.final.Chunks {
		return res, fmt.Errorf("lazy restore: %d of %d chunks fetched, %d errors", res.final.Fetched, res.final.Chunks, res.final.Errors)
	}
	if res.final.FromCache != 0 {
		return res, fmt.Errorf("lazy restore was not cold: %d chunks from the cache", res.final.FromCache)
	}
	return res, nil
}

// fetchSmallFiles writes every file of man except the memory file into
// dir, fetched whole through f, and returns the memory file's entry.
func fetchSmallFiles(ctx context.Context, f lazyfs.Fetcher, man *snapshot.Manifest, dir string) (snapshot.File, error) {
	var mem *snapshot.File
	for i, file := range man.Files {
		if file.Name == vmhost.MemoryFile {
			mem = &man.Files[i]
			continue
		}
		out, err := os.OpenFile(filepath.Join(dir, file.Name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return snapshot.File{}, err
		}
		err = out.Truncate(file.Size)
		for _, c := range file.Chunks {
			if err != nil || c.Hole {
				continue
			}
			var fc snapshot.FetchedChunk
			if fc, err = f.FetchChunk(ctx, c.ChunkID()); err == nil {
				_, err = out.WriteAt(fc.Raw, int64(c.Index)*int64(file.ChunkSize))
			}
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return snapshot.File{}, fmt.Errorf("fetch %s: %w", file.Name, err)
		}
	}
	if mem == nil {
		return snapshot.File{}, fmt.Errorf("snapshot %s has no %s file", man.ID, vmhost.MemoryFile)
	}
	return *mem, nil
}

func fadviseDontNeed(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise %s: %w", path, err)
	}
	return nil
}

func hotFor(arm restoreArm, order []int) []int {
	if arm.hot {
		return order
	}
	return nil
}

func readThrough(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for {
		_, err := f.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// smapsRollup is a process's resident memory split: anonymous (guest
// pages written, copy-on-write) and file-backed (the memory file's page
// cache, mapped).
func smapsRollup(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"Rss:", "Pss_Anon:", "Pss_File:"} {
			if strings.HasPrefix(l, k) {
				out = append(out, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

func (r lazyResult) line(round int, name string) string {
	a, f := r.atReady, r.final
	return fmt.Sprintf("round %d, hangar %-22s %.3fs wall (manifest %.3f, small files %.3f, mount %.3f, QEMU restored %.3f), CPU %.2fs + MinIO %.2fs; at agent answer: %d/%d chunks (%d demand, %d prefetch), %.1f MiB stored, %d reads waited %.3fs; verify done %.2fs (prefetch running: %v); prefetch complete %.2fs; reads %d (%s); after: QEMU %s, backing file cached %d MiB; FUSE reads: %d at the final verify, %d after evicting the page cache and verifying again",
		round, name+":", r.cost.wall.Seconds(), r.tManifest.Seconds(), r.tSmall.Seconds(), r.tMount.Seconds(), r.tRestore.Seconds(), r.cost.cpu.Seconds(), r.cost.minio.Seconds(),
		a.Fetched, a.Chunks, a.DemandFetches, a.PrefetchFetchs, float64(a.StoredBytes)/(1<<20), a.ReadsWaited, a.ReadWait.Seconds(),
		r.verifyAt.Seconds(), r.verifyDuring, r.prefetch.Seconds(), f.Reads, f.ReadSizeSummary(), r.qemuMem, r.backingResident>>20, f.Reads, r.afterEvict.Reads)
}

// lazyKill restores lazily with the FUSE server in a child process
// (hangar-bench lazyserve, no prefetch), waits for the agent, kills the
// child with SIGKILL and reports what the guest, QEMU and the mount do.
func (b *vmBench) lazyKill(sid string) error {
	for _, readFirst := range []bool{false, true} {
		if err := b.lazyKillOne(sid, readFirst); err != nil {
			return err
		}
	}
	return nil
}

// lazyKillOne is one kill: at once after the agent answers, or (readFirst)
// after reading the whole file through the mount, so that every page is
// in the FUSE file's page cache when the server dies.
func (b *vmBench) lazyKillOne(sid string, readFirst bool) error {
	ctx := b.ctx
	h := b.hosts[1]
	dir, err := os.MkdirTemp(h.root, "lk")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mnt := filepath.Join(dir, "m")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return err
	}
	man, err := h.repo.Manifest(ctx, sid)
	if err != nil {
		return err
	}
	if _, err := fetchSmallFiles(ctx, lazyfs.RepoFetcher{Repo: h.repo.Repo}, man, dir); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "lazyserve", "-endpoint", b.srv.Endpoint, "-bucket", b.bucket, "-snapshot", sid, "-dir", mnt, "-backing", dir)
	child.Env = append(os.Environ(), "HANGAR_BENCH_ACCESS_KEY="+b.srv.AccessKey, "HANGAR_BENCH_SECRET_KEY="+b.srv.SecretKey)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer func() {
		child.Process.Kill()
		child.Wait()
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		return fmt.Errorf("lazyserve: %q, %v", line, err)
	}
	cfg := vmhost.Config{Name: "lazykill", MemoryMiB: b.memMiB, VCPUs: b.vcpus, Boot: b.image.Boot(), Dir: dir}
	vm, err := h.hv.Restore(ctx, cfg, vmhost.RestoreSource{Dir: dir, MemoryPath: filepath.Join(mnt, vmhost.MemoryFile), PrivateMemory: true})
	if err != nil {
		return fmt.Errorf("lazy kill: restore: %w", err)
	}
	defer vm.Kill()
	c, err := guest.WaitReady(ctx, vm)
	if err != nil {
		return fmt.Errorf("lazy kill: %w", err)
	}
	defer c.Close()
	if readFirst {
		if err := readThrough(filepath.Join(mnt, vmhost.MemoryFile)); err != nil {
			return err
		}
	}
	fmt.Printf("\nFUSE server kill (whole file read through the mount first: %v): guest answers (server pid %d, no prefetch); killing the server with SIGKILL\n", readFirst, child.Process.Pid)
	child.Process.Kill()
	st, _ := child.Process.Wait()
	fmt.Printf("  server: %v\n", st)
	if _, err := os.Stat(filepath.Join(mnt, vmhost.MemoryFile)); err != nil {
		fmt.Printf("  stat of the memory file on the dead mount: %v\n", err)
	}
	// A small command whose pages the guest already touched (the agent's
	// own), then one that touches never-read memory (the fill).
	for _, script := range []string{"echo alive", "md5sum /fill/token; tail -c 8388608 /fill/heap | md5sum", sampleScript} {
		t := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		res, err := c.Exec(cctx, agent.ExecRequest{Argv: []string{"sh", "-c", script}, Timeout: 15})
		cancel()
		fmt.Printf("  guest %q after %.2fs: ", script, time.Since(t).Seconds())
		if err != nil {
			fmt.Printf("error %v\n", err)
		} else {
			fmt.Printf("exit %d, %q\n", res.ExitCode, strings.TrimSpace(string(res.Stdout)))
		}
		select {
		case <-vm.Done():
			ws, _ := vm.Wait(ctx)
			fmt.Printf("  QEMU exited: %v\n  QEMU log tail: %s\n", ws, tail(vm.Paths().Log, 600))
			fmt.Printf("  console tail: %s\n", tail(vm.Paths().ConsoleLog, 600))
			return nil
		default:
			fmt.Printf("  QEMU still running (state %s)\n", vm.State())
		}
	}
	fmt.Printf("  console tail: %s\n", tail(vm.Paths().ConsoleLog, 600))
	return nil
}

func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", " | ")
}

// runLazyServe is the child of -lazy-kill: it serves one snapshot's
// memory file lazily (no prefetch) until killed.
func runLazyServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lazyserve", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "S3 endpoint")
	bucket := fs.String("bucket", "", "bucket")
	sid := fs.String("snapshot", "", "snapshot id")
	dir := fs.String("dir", "", "mount point")
	backing := fs.String("backing", "", "backing file directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := s3.Open(ctx, s3.Config{Endpoint: *endpoint, Bucket: *bucket, AccessKey: os.Getenv("HANGAR_BENCH_ACCESS_KEY"),
		SecretKey: s3.Secret(os.Getenv("HANGAR_BENCH_SECRET_KEY"))})
	if err != nil {
		return err
	}
	repo, err := snapshot.New(store, snapshot.Config{})
	if err != nil {
		return err
	}
	man, err := repo.Manifest(ctx, *sid)
	if err != nil {
		return err
	}
	var mem *snapshot.File
	for i := range man.Files {
		if man.Files[i].Name == vmhost.MemoryFile {
			mem = &man.Files[i]
		}
	}
	if mem == nil {
		return errors.New("no memory file")
	}
	srv, err := lazyfs.Mount(*dir, *mem, lazyfs.RepoFetcher{Repo: repo}, lazyfs.Options{BackingDir: *backing, NoPrefetch: true})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	select {
	case <-ctx.Done():
	case <-sig:
	}
	return srv.Close()
}
