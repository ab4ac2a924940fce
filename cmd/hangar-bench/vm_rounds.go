package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// restoreArm is one way of running hangar's download during a restore,
// applied by timedRepo over whatever options the manager passes: with or
// without fsync, the host cache filled inline (Put in the fetch workers)
// or in the background (DownloadOptions.BackgroundCacheFill, Cache.Offer),
// and the download's concurrency.
type restoreArm struct {
	name        string
	fsync       bool
	inline      bool
	concurrency int // 0: the manager's choice (the pipeline default)
	// lazy is not a download variant: the spike's lazy restore
	// (vm_lazy.go), memory served by lazyfs, QEMU share=off over it, with
	// the prefetch variants below; for tuning lazyfs.
	lazy bool
	// mgr is the manager's own lazy restore: host b's second manager,
	// opened with restore.lazy (vmhost/manager/lazy.go), restores the
	// snapshot as a host with restore.lazy does. Not first.
	mgr bool
	// For lazy: no prefetch, prefetch delay, prefetch yields to demand
	// (concurrency is the prefetch workers).
	noPrefetch    bool
	prefetchDelay time.Duration
	yield         bool
	hot           bool // prefetch the touch profile of a profiling restore first
	restWorkers   int  // rN: after the hot set, N prefetch workers
	ahead         int  // aN: a demand fetch starts the next N chunks too
	chunkMiB      int  // kN: restore a copy of the snapshot uploaded with N MiB chunks
}

// parseArms reads a comma-separated list of arms, each a '+'-joined set
// of fsync|nosync, inline|offer and cN (concurrency N), or lazy (the lazy
// restore, vm_lazy.go; not first); unset parts take
// what the manager does: nosync, inline, the default concurrency.
func parseArms(s string) ([]restoreArm, error) {
	var arms []restoreArm
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		a := restoreArm{name: name, inline: true}
		for _, tok := range strings.Split(name, "+") {
			switch {
			case tok == "fsync":
				a.fsync = true
			case tok == "nosync":
				a.fsync = false
			case tok == "inline":
				a.inline = true
			case tok == "offer":
				a.inline = false
			case tok == "lazy":
				a.lazy = true
			case tok == "mgr":
				a.mgr = true
			case tok == "nopf":
				a.noPrefetch = true
			case tok == "yield":
				a.yield = true
			case tok == "hot":
				a.hot = true
			case strings.HasPrefix(tok, "k"):
				n, err := strconv.Atoi(tok[1:])
				if err != nil || n < 1 || n > 16 || n&(n-1) != 0 {
					return nil, fmt.Errorf("-arms %q: %q: want kN, N MiB chunks (1, 2, 4, 8, 16)", s, tok)
				}
				a.chunkMiB = n
			case strings.HasPrefix(tok, "a"):
				n, err := strconv.Atoi(tok[1:])
				if err != nil || n < 1 || n > 16 {
					return nil, fmt.Errorf("-arms %q: %q: want aN, N chunks fetched ahead of a demand fetch", s, tok)
				}
				a.ahead = n
			case strings.HasPrefix(tok, "r"):
				n, err := strconv.Atoi(tok[1:])
				if err != nil || n < 1 || n > 64 {
					return nil, fmt.Errorf("-arms %q: %q: want rN, N prefetch workers after the hot set", s, tok)
				}
				a.restWorkers = n
			case strings.HasPrefix(tok, "d"):
				n, err := strconv.Atoi(tok[1:])
				if err != nil || n < 0 {
					return nil, fmt.Errorf("-arms %q: %q: want dN, a prefetch delay of N ms", s, tok)
				}
				a.prefetchDelay = time.Duration(n) * time.Millisecond
			case strings.HasPrefix(tok, "c"):
				n, err := strconv.Atoi(tok[1:])
				if err != nil || n < 1 || n > 64 {
					return nil, fmt.Errorf("-arms %q: %q: want cN with 1 <= N <= 64", s, tok)
				}
				a.concurrency = n
			default:
				return nil, fmt.Errorf("-arms %q: unknown part %q (fsync, nosync, inline, offer, cN; mgr; lazy, nopf, yield, hot, rN, dN, kN, aN)", s, tok)
			}
		}
		arms = append(arms, a)
	}
	if len(arms) == 0 {
		return nil, fmt.Errorf("-arms %q: no arm", s)
	}
	if arms[0].lazy || arms[0].mgr {
		return nil, fmt.Errorf("-arms %q: the first arm is the main run's download variant; put lazy and mgr after it", s)
	}
	return arms, nil
}

// apply changes a download's options to the arm's.
func (a *restoreArm) apply(opts *snapshot.DownloadOptions) {
	opts.NoSync = !a.fsync
	opts.BackgroundCacheFill = !a.inline
	if a.concurrency > 0 {
		opts.Concurrency = a.concurrency
	}
}

// roundCost is one cold restore's cost: wall to the agent's answer, this
// process's CPU and MinIO's meanwhile, and the cache fill that went on
// after the restore returned (its wall and this process's CPU to the end
// of Cache.Flush).
type roundCost struct {
	wall, cpu, minio   time.Duration
	fillTail, fillCPU  time.Duration
	fromStore, dropped int64
}

// roundsReport holds rounds × (arms + baseline) cold restores.
type roundsReport struct {
	arms  []restoreArm
	hang  [][]roundCost // [round][arm]
	base  []roundCost   // [round]
	order [][]int       // [round]: arm indexes in the order they ran
}

// emptyCache removes the chunks of snapshots mans from host b's cache, after
// its queued fills landed, so that the next restore is cold again.
func (b *vmBench) emptyCache(mans ...*snapshot.Manifest) error {
	h := b.hosts[1]
	if err := h.cache.Flush(b.ctx); err != nil {
		return err
	}
	for _, man := range mans {
		for _, f := range man.Files {
			for _, c := range f.Chunks {
				if !c.Hole {
					if err := h.cache.Remove(c.ChunkID()); err != nil {
						return err
					}
				}
			}
		}
	}
	if s := h.cache.Stats(); s.Entries != 0 || s.Queued != 0 {
		return fmt.Errorf("host b's cache still holds %d chunks (%d queued)", s.Entries, s.Queued)
	}
	return nil
}

// restoreRounds runs, rounds times, a cold restore on b for every arm and
// a baseline cold restore, in an order rotated each round (baseline
// included), each with its CPU cost. The rotation matters here beyond
// noise: on this machine (a microVM) the first write into guest memory
// that was never touched costs several times more CPU than into pages
// freed a moment ago, so whichever restore runs first after a quiet spell
// pays for the others. With
// dropStoreCache, MinIO's files are evicted from the page cache before
// each, so every arm reads the store from disk, as the first restore
// after an upload does (MinIO writes with O_DIRECT).
func (b *vmBench) restoreRounds(sid string, want guestCheck, arms []restoreArm, rounds int) (*roundsReport, error) {
	ctx := b.ctx
	h := b.hosts[1]
	man, err := h.repo.Manifest(ctx, sid)
	if err != nil {
		return nil, err
	}
	minioPID := findPID(b.srv.Endpoint)
	rep := &roundsReport{arms: arms}
	// Copies of the snapshot with other chunk sizes, for kN arms.
	chunkSnaps := map[int]*snapshot.Manifest{}
	for _, a := range arms {
		if a.chunkMiB == 0 || chunkSnaps[a.chunkMiB] != nil {
			continue
		}
		km, err := b.uploadChunked(man, a.chunkMiB)
		if err != nil {
			return nil, err
		}
		chunkSnaps[a.chunkMiB] = km
		fmt.Printf("snapshot copy %s: %d MiB chunks, %d non-hole chunks, %d bytes stored\n", km.ID, a.chunkMiB, km.Totals.Chunks, km.Totals.Compressed)
	}
	for _, a := range arms {
		if a.hot && b.hotOrder == nil {
			if err := b.emptyCache(man); err != nil {
				return nil, err
			}
			// A profiling restore, not measured: which chunks the guest
			// touches until its agent answers (what a host would record at
			// the first restore of a snapshot, or a fork's parent).
			lr, err := b.lazyCold(sid, want, minioPID, restoreArm{name: "profile", lazy: true, noPrefetch: true})
			if err != nil {
				return nil, fmt.Errorf("profiling restore: %w", err)
			}
			b.hotOrder = lr.atReady.TouchOrder
			fmt.Printf("touch profile (profiling restore, no prefetch): %d chunks before the agent answered: %v\n", len(b.hotOrder), b.hotOrder)
		}
	}
	defer h.repo.setArm(arms[0])
	for r := range rounds {
		costs := make([]roundCost, len(arms))
		var (
			order []int
			bc    roundCost
		)
		// Index len(arms) is the baseline: it takes its turn in the
		// rotation too, so that no side always runs first in a round.
		for k := range len(arms) + 1 {
			i := (k + r) % (len(arms) + 1)
			order = append(order, i)
			if b.dropStoreCache {
				dropCache(b.srv.Dir)
			}
			if i == len(arms) {
				var err error
				if bc, err = b.baselineCold(sid, want, minioPID); err != nil {
					return nil, fmt.Errorf("round %d, baseline: %w", r+1, err)
				}
				fmt.Printf("round %d, baseline:                     %.3fs wall, CPU %.2fs + MinIO %.2fs\n",
					r+1, bc.wall.Seconds(), bc.cpu.Seconds(), bc.minio.Seconds())
				continue
			}
			arm := arms[i]
			all := []*snapshot.Manifest{man}
			for _, km := range chunkSnaps {
				all = append(all, km)
			}
			if err := b.emptyCache(all...); err != nil {
				return nil, err
			}
			if arm.lazy {
				lsid := sid
				if km := chunkSnaps[arm.chunkMiB]; km != nil {
					lsid = km.ID
				}
				lr, err := b.lazyCold(lsid, want, minioPID, arm)
				if err != nil {
					return nil, fmt.Errorf("round %d, arm %s: %w", r+1, arm.name, err)
				}
				costs[i] = lr.cost
				fmt.Println(lr.line(r+1, arm.name))
				continue
			}
			h.repo.setArm(arm)
			if arm.mgr {
				c, err := b.managerLazyCold(sid, want, minioPID)
				if err != nil {
					return nil, fmt.Errorf("round %d, arm %s: %w", r+1, arm.name, err)
				}
				costs[i] = c
				fmt.Printf("round %d, hangar %-22s %.3fs wall, CPU %.2fs + MinIO %.2fs (manager, restore.lazy)\n",
					r+1, arm.name+":", c.wall.Seconds(), c.cpu.Seconds(), c.minio.Seconds())
				continue
			}
			dirty := dirtyPages()
			dropped0 := h.cache.Stats().FillsDropped
			m0, s0, start := procCPU(minioPID), selfCPU(), time.Now()
			in, err := h.m.RestoreSnapshot(ctx, sid, manager.ForkSpec{})
			if err != nil {
				return nil, fmt.Errorf("round %d, arm %s: %w", r+1, arm.name, err)
			}
			c := roundCost{wall: time.Since(start), cpu: selfCPU() - s0, minio: procCPU(minioPID) - m0}
			if err := h.cache.Flush(ctx); err != nil {
				return nil, err
			}
			c.fillTail, c.fillCPU = time.Since(start)-c.wall, selfCPU()-s0-c.cpu
			_, dl := h.repo.last()
			c.fromStore, c.dropped = int64(dl.stats.ChunksFromStore), h.cache.Stats().FillsDropped-dropped0
			if dl.stats.ChunksFromCache != 0 || dl.stats.ChunksFromStore == 0 {
				return nil, fmt.Errorf("round %d, arm %s: restore was not cold: %+v", r+1, arm.name, dl.stats)
			}
			if err := b.checkAndDelete(h.m, in, want); err != nil {
				return nil, fmt.Errorf("round %d, arm %s: %w", r+1, arm.name, err)
			}
			costs[i] = c
			fmt.Printf("round %d, hangar %-22s %.3fs wall, CPU %.2fs + MinIO %.2fs; cache fill after it %.3fs, %.2f CPU-s; first chunk %.3fs; before: %s\n",
				r+1, arm.name+":", c.wall.Seconds(), c.cpu.Seconds(), c.minio.Seconds(), c.fillTail.Seconds(), c.fillCPU.Seconds(), dl.first.Seconds(), dirty)
		}
		rep.hang, rep.base, rep.order = append(rep.hang, costs), append(rep.base, bc), append(rep.order, order)
	}
	return rep, nil
}

// uploadChunked uploads host a's local copy of snapshot man again, as a
// new snapshot with chunkMiB MiB chunks (the manager always uses 4 MiB).
func (b *vmBench) uploadChunked(man *snapshot.Manifest, chunkMiB int) (*snapshot.Manifest, error) {
	a := b.hosts[0]
	dir := filepath.Join(a.root, "d", "s", man.ID)
	var files []snapshot.FileSource
	for _, f := range man.Files {
		files = append(files, snapshot.FileSource{Name: f.Name, Path: filepath.Join(dir, f.Name)})
	}
	info := snapshot.Info{ID: fmt.Sprintf("%s-k%d", man.ID, chunkMiB), SourceInstance: man.SourceInstance, Kind: man.Kind,
		VM: man.VM, Hypervisor: man.Hypervisor, ImageDigest: man.ImageDigest, Compression: man.Compression.Setting()}
	km, err := a.repo.Repo.Upload(b.ctx, info, files, snapshot.UploadOptions{ChunkSize: chunkMiB << 20})
	if err != nil {
		return nil, fmt.Errorf("upload a %d MiB-chunk copy: %w", chunkMiB, err)
	}
	return km, nil
}

// managerLazyCold is one cold restore on b by the manager with
// restore.lazy: request → agent answers (RestoreSnapshot returns then),
// then the guest is verified and deleted (its mount goes with it).
func (b *vmBench) managerLazyCold(sid string, want guestCheck, minioPID int) (roundCost, error) {
	h := b.hosts[1]
	m, err := h.lazyManager(b)
	if err != nil {
		return roundCost{}, err
	}
	m0, s0, start := procCPU(minioPID), selfCPU(), time.Now()
	in, err := m.RestoreSnapshot(b.ctx, sid, manager.ForkSpec{})
	if err != nil {
		return roundCost{}, err
	}
	c := roundCost{wall: time.Since(start), cpu: selfCPU() - s0, minio: procCPU(minioPID) - m0}
	if in.LazyFrom == nil {
		m.Delete(b.ctx, in.ID)
		return roundCost{}, fmt.Errorf("the restore.lazy manager restored eagerly (no FUSE here?)")
	}
	return c, b.checkAndDelete(m, in, want)
}

// checkAndDelete verifies a restored guest and deletes it through m.
func (b *vmBench) checkAndDelete(m *manager.Manager, in manager.Instance, want guestCheck) error {
	ctx := b.ctx
	c, err := agent.Dial(ctx, in.AgentSocket)
	if err != nil {
		return err
	}
	err = verify(ctx, c, want)
	c.Close()
	if err != nil {
		return err
	}
	return m.Delete(ctx, in.ID)
}

// baselineCold is one baseline cold restore on b, timed and costed: GET
// of the whole .zst (minio-go, in this process), zstd -d into the memory
// file (a child), QEMU restore, the agent's answer. QEMU's own CPU is
// counted on neither side.
func (b *vmBench) baselineCold(sid string, want guestCheck, minioPID int) (roundCost, error) {
	ctx := b.ctx
	h := b.hosts[1]
	client, err := b.srv.Client()
	if err != nil {
		return roundCost{}, err
	}
	dir, err := os.MkdirTemp(h.root, "br")
	if err != nil {
		return roundCost{}, err
	}
	defer os.RemoveAll(dir)
	zst := filepath.Join(dir, "memory.zst")
	m0, s0, start := procCPU(minioPID), selfCPU(), time.Now()
	if err := client.FGetObject(ctx, b.bucket, "baseline/"+sid+"/memory.zst", zst, minio.GetObjectOptions{}); err != nil {
		return roundCost{}, fmt.Errorf("baseline get: %w", err)
	}
	for _, f := range []string{vmhost.DeviceStateFile, vmhost.SnapshotInfoFile} {
		if err := client.FGetObject(ctx, b.bucket, "baseline/"+sid+"/"+f, filepath.Join(dir, f), minio.GetObjectOptions{}); err != nil {
			return roundCost{}, fmt.Errorf("baseline get %s: %w", f, err)
		}
	}
	cmd := exec.CommandContext(ctx, "zstd", "-d", "-q", "-f", zst, "-o", filepath.Join(dir, vmhost.MemoryFile))
	if out, err := cmd.CombinedOutput(); err != nil {
		return roundCost{}, fmt.Errorf("baseline zstd -d: %w: %s", err, out)
	}
	zstdCPU := childCPU(cmd.ProcessState)
	cfg := vmhost.Config{Name: "baseline", MemoryMiB: b.memMiB, VCPUs: b.vcpus, Boot: b.image.Boot(), Dir: dir}
	vm, err := h.hv.Restore(ctx, cfg, vmhost.RestoreSource{Dir: dir})
	if err != nil {
		return roundCost{}, fmt.Errorf("baseline restore: %w", err)
	}
	defer vm.Kill()
	c, err := guest.WaitReady(ctx, vm)
	if err != nil {
		return roundCost{}, fmt.Errorf("baseline restore: %w", err)
	}
	defer c.Close()
	rc := roundCost{wall: time.Since(start), cpu: selfCPU() - s0 + zstdCPU, minio: procCPU(minioPID) - m0}
	if err := verify(ctx, c, want); err != nil {
		return roundCost{}, fmt.Errorf("baseline restore: %w", err)
	}
	return rc, nil
}

func (r *roundsReport) print(w io.Writer) {
	fmt.Fprintf(w, "\ncold restore rounds (%d): wall request → agent answers; CPU = this process (+ zstd for the baseline) and MinIO, QEMU not counted; fill = cache fill finishing after the restore returned\n", len(r.base))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "arm\twall s per round\tmedian\tCPU-s (own+MinIO) median\tfill tail s / CPU-s median\tbaseline / arm per round\tmedian\t")
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	line := func(name string, get func(round int) roundCost) {
		var walls, cpus, tails, fcpus, ratios []time.Duration
		var ws, rs []string
		for i := range r.base {
			c := get(i)
			walls, cpus = append(walls, c.wall), append(cpus, c.cpu+c.minio)
			tails, fcpus = append(tails, c.fillTail), append(fcpus, c.fillCPU)
			ratio := r.base[i].wall.Seconds() / c.wall.Seconds()
			ratios = append(ratios, time.Duration(ratio*1e6))
			ws, rs = append(ws, fmt.Sprintf("%.2f", c.wall.Seconds())), append(rs, fmt.Sprintf("%.2f", ratio))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.2f\t%.3f / %.2f\t%s\t%.2f×\t\n", name, strings.Join(ws, " / "), med(walls).Seconds(),
			med(cpus).Seconds(), med(tails).Seconds(), med(fcpus).Seconds(), strings.Join(rs, " / "), float64(med(ratios))/1e6)
	}
	for a, arm := range r.arms {
		line("hangar "+arm.name, func(i int) roundCost { return r.hang[i][a] })
	}
	line("baseline", func(i int) roundCost { return r.base[i] })
	tw.Flush()
	// The target, for the restore a host with restore.lazy does.
	for a, arm := range r.arms {
		if !arm.mgr {
			continue
		}
		var ratios []float64
		met := 0
		for i := range r.base {
			ratio := r.base[i].wall.Seconds() / r.hang[i][a].wall.Seconds()
			ratios = append(ratios, ratio)
			if ratio >= 2 {
				met++
			}
		}
		slices.Sort(ratios)
		fmt.Fprintf(w, "target cold restore >= 2× faster than baseline, manager with restore.lazy (%s): median %.2f× %s (met in %d of %d rounds)\n",
			arm.name, ratios[len(ratios)/2], passFail(ratios[len(ratios)/2] >= 2), met, len(ratios))
	}
	var dropped int64
	for _, cs := range r.hang {
		for _, c := range cs {
			dropped += c.dropped
		}
	}
	fmt.Fprintf(w, "cache fills dropped (queue full) over all rounds: %d\n", dropped)
}
