package chunk

import (
	"syscall"
	"time"
)

// rusageThread is Linux's RUSAGE_THREAD (not in package syscall).
const rusageThread = 1

// threadCPU is the calling OS thread's user+system CPU time; ok is false
// where that is unknown. Benchmarks that lock their goroutine to the thread
// report work per byte with it, which the load of other processes on a
// shared machine changes far less than wall time.
func threadCPU() (d time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
