package chunk

import (
	"fmt"
	"testing"
)

func TestIsZero(t *testing.T) {
	if !IsZero(nil) || !IsZero([]byte{}) {
		t.Fatal("empty input is zero")
	}
	// Every length around the 16 KiB comparison block, with one non-zero
	// byte at the start, the end and the block boundaries.
	for _, n := range []int{1, 7, 8, 63, 64, 4095, 4096, len(zeroBlock) - 1, len(zeroBlock), len(zeroBlock) + 1, 3*len(zeroBlock) + 5, DefaultSize} {
		b := make([]byte, n)
		if !IsZero(b) {
			t.Fatalf("len %d: zeros reported non-zero", n)
		}
		for _, i := range []int{0, n / 2, n - 1, len(zeroBlock) - 1, len(zeroBlock), 2*len(zeroBlock) + 3} {
			if i >= n {
				continue
			}
			b[i] = 0x80
			if IsZero(b) {
				t.Fatalf("len %d: byte %d set but reported zero", n, i)
			}
			b[i] = 0
		}
	}
	// Unaligned start.
	b := make([]byte, 100003)
	if !IsZero(b[3:]) {
		t.Fatal("unaligned zeros")
	}
	b[100002] = 1
	if IsZero(b[3:]) {
		t.Fatal("unaligned last byte missed")
	}
}

// BenchmarkIsZero measures zero detection on a 4 MiB zero chunk (the worst
// case: every byte must be read). The target is at least 5 GB/s.
func BenchmarkIsZero(b *testing.B) {
	for _, size := range []int{DefaultSize, 256 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			buf := make([]byte, size)
			for i := range buf { // fault the pages in before timing
				buf[i] = 0
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				if !IsZero(buf) {
					b.Fatal("not zero")
				}
			}
		})
	}
}
