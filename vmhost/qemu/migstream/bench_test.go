package migstream

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkConvert converts a synthetic stream of a 1 GiB block, half data
// pages, half zero pages (as QEMU sends a half-full guest), from memory
// into a sparse file on disk (page cache; no fsync), and reports the
// stream rate and the CPU time of the process.
//
//	go test -run XXX -bench Convert -benchtime 3x ./vmhost/qemu/migstream/
func BenchmarkConvert(b *testing.B) {
	const block = 1 << 30
	sb := &streamBuilder{}
	sb.header("x-ignore-shared")
	sb.start(2, []testBlock{{"ram0", block, 0}}, true)
	sb.u64(flagEOS)
	sb.footer(2)
	data := make([]byte, 1<<20)
	rand.Read(data)
	for off := uint64(0); off < block; off += pageSize {
		if off%(64<<20) == 0 {
			sb.part(secPart, 2)
		}
		if off < block/2 {
			sb.page("ram0", off, data[off%(1<<20):off%(1<<20)+pageSize])
		} else {
			sb.page("ram0", off, nil)
		}
		if off%(64<<20) == 64<<20-pageSize {
			sb.end(2)
		}
	}
	sb.part(secEnd, 2)
	sb.end(2)
	sb.devices(3)
	stream := sb.buf.Bytes()
	dir := b.TempDir()
	b.SetBytes(int64(len(stream)))
	b.ResetTimer()
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		path := filepath.Join(dir, "mem")
		os.Remove(path)
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		r0 := rusage()
		if _, err := Convert(bytes.NewReader(stream), io.Discard, f, "ram0"); err != nil {
			b.Fatal(err)
		}
		cpu += rusage() - r0
		f.Close()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(len(stream))/1e6/(cpu.Seconds()/float64(b.N)), "MB/cpu-s")
}

func rusage() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
