package qemu_test

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// BenchmarkStandbyRestore measures, on real TCG guests with half their RAM
// in use (written just before standby, so it is dirty in the page cache):
// boot to agent-ready, standby (request to durable and stopped), the
// guest's pause-to-durable time, restore (request to agent answering) from
// a sparse copy in another directory, and the device state's size.
//
//	go test -run XXX -bench StandbyRestore -benchtime 1x ./vmhost/qemu/
func BenchmarkStandbyRestore(b *testing.B) {
	for _, mem := range []int{256, 1024} {
		b.Run(fmt.Sprintf("mem=%dMiB", mem), func(b *testing.B) {
			im := testImage(b)
			root := shortTemp(b)
			d := newDriver(b, root)
			ctx := context.Background()
			var boot, standby, durable, restore time.Duration
			var devState int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				run := filepath.Join(root, fmt.Sprintf("r%d", i))
				vm, c, bt := bootGuest(b, d, config(im, run+"a", mem))
				boot += bt
				fill := fmt.Sprintf("mkdir -p /fill && mount -t tmpfs -o size=90%% none /fill && "+
					"dd if=/dev/urandom of=/fill/seed bs=1M count=1 2>/dev/null && "+
					"i=0; while [ $i -lt %d ]; do cat /fill/seed; i=$((i+1)); done > /fill/data && sync", mem/2)
				res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", fill}, Timeout: 600})
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("fill guest memory: %+v, %v", res, err)
				}
				b.StartTimer()
				start := time.Now()
				info, err := vm.Standby(ctx, run+"A")
				standby += time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(run+"A", vmhost.MemoryFile), &st); err == nil {
					b.Logf("memory file: %d MiB allocated of %d", st.Blocks*512>>20, mem)
				}
				durable += info.PauseDuration
				devState += info.DeviceStateBytes
				copySnapshot(b, run+"A", run+"B")
				b.StartTimer()
				start = time.Now()
				vm2, err := d.Restore(ctx, config(im, run+"b", mem), vmhost.RestoreSource{Dir: run + "B"})
				if err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithTimeout(ctx, time.Minute)
				c2, err := guest.WaitReady(rctx, vm2)
				cancel()
				restore += time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				c2.Close()
				vm2.Kill()
				b.StartTimer()
			}
			n := float64(b.N)
			b.ReportMetric(boot.Seconds()/n, "boot-s")
			b.ReportMetric(float64(standby.Milliseconds())/n, "standby-ms")
			b.ReportMetric(float64(durable.Milliseconds())/n, "paused-to-durable-ms")
			b.ReportMetric(float64(restore.Milliseconds())/n, "restore-ms")
			b.ReportMetric(float64(devState)/n/1024, "device-state-KiB")
		})
	}
}
