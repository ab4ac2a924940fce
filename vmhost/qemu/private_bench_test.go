package qemu_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// BenchmarkPrivateStandby compares, on a real TCG guest with half its RAM
// filled, the ordinary standby (share=on: device state only) with the
// standby of the same guest restored share=off, whose every RAM page goes
// through migstream. It reports both requests' wall time, the private
// one's paused-to-durable time, and the CPU spent during the private
// standby by this process (converter and driver) and by QEMU.
//
//	go test -run XXX -bench PrivateStandby -benchtime 1x ./vmhost/qemu/
func BenchmarkPrivateStandby(b *testing.B) {
	for _, mem := range []int{1024} {
		b.Run(fmt.Sprintf("mem=%dMiB", mem), func(b *testing.B) {
			im := testImage(b)
			root := shortTemp(b)
			d := newDriver(b, root)
			dp := privateDriver(b)
			ctx := context.Background()
			var shared, private, privDurable, convCPU, qemuCPU time.Duration
			var allocMiB int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				run := filepath.Join(root, fmt.Sprintf("r%d", i))
				vm, c, _ := bootGuest(b, d, config(im, run+"a", mem))
				fill := fmt.Sprintf("mkdir -p /fill && mount -t tmpfs -o size=90%% none /fill && "+
					"dd if=/dev/urandom of=/fill/seed bs=1M count=1 2>/dev/null && "+
					"i=0; while [ $i -lt %d ]; do cat /fill/seed; i=$((i+1)); done > /fill/data && sync", mem/2)
				res, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", fill}, Timeout: 600})
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("fill guest memory: %+v, %v", res, err)
				}
				start := time.Now()
				if _, err := vm.Standby(ctx, run+"A"); err != nil {
					b.Fatal(err)
				}
				shared += time.Since(start)

				vm2, err := dp.Restore(ctx, config(im, run+"b", mem), vmhost.RestoreSource{Dir: run + "A"})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Reconnect(ctx, vm2.Paths().AgentSocket); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"sh", "-c", "echo two > /run/two"}}); err != nil {
					b.Fatal(err)
				}
				q0 := procCPU(b, vm2.PID())
				c0, ch0 := rusage(syscall.RUSAGE_SELF), rusage(syscall.RUSAGE_CHILDREN)
				b.StartTimer()
				start = time.Now()
				info, err := vm2.Standby(ctx, run+"B")
				private += time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				convCPU += rusage(syscall.RUSAGE_SELF) - c0
				qemuCPU += rusage(syscall.RUSAGE_CHILDREN) - ch0 - q0
				privDurable += info.PauseDuration
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(run+"B", vmhost.MemoryFile), &st); err == nil {
					allocMiB += st.Blocks * 512 >> 20
				}

				// The converted snapshot resumes the shared way.
				vm3, err := d.Restore(ctx, config(im, run+"c", mem), vmhost.RestoreSource{Dir: run + "B"})
				if err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithTimeout(ctx, time.Minute)
				c3, err := guest.WaitReady(rctx, vm3)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				if got, err := c3.ReadFile(ctx, "/run/two"); err != nil || string(got) != "two\n" {
					b.Fatalf("after shared restore of the converted snapshot: %q, %v", got, err)
				}
				c3.Close()
				c.Close()
				vm3.Kill()
				os.RemoveAll(run + "A")
				b.StartTimer()
			}
			n := float64(b.N)
			b.ReportMetric(float64(shared.Milliseconds())/n, "shared-standby-ms")
			b.ReportMetric(float64(private.Milliseconds())/n, "private-standby-ms")
			b.ReportMetric(float64(privDurable.Milliseconds())/n, "private-paused-to-durable-ms")
			b.ReportMetric(convCPU.Seconds()/n, "converter-cpu-s")
			b.ReportMetric(qemuCPU.Seconds()/n, "qemu-cpu-s")
			b.ReportMetric(float64(allocMiB)/n, "memory-file-MiB")
		})
	}
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a live process's CPU time so far (utime+stime).
func procCPU(b *testing.B, pid int) time.Duration {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}
