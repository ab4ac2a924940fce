package memtest

import (
	"bytes"
	"testing"
)

func TestFillZeroFractionAndDeterminism(t *testing.T) {
	const size = 64 << 20
	a := make([]byte, size)
	Fill(a, 7, 0.6)
	zero := make([]byte, PageSize)
	z := 0
	for off := 0; off < size; off += PageSize {
		if bytes.Equal(a[off:off+PageSize], zero) {
			z++
		}
	}
	got := float64(z) / float64(size/PageSize)
	if got < 0.55 || got > 0.65 {
		t.Fatalf("zero page fraction %.3f, want about 0.6", got)
	}
	b := make([]byte, size)
	Fill(b, 7, 0.6)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different bytes")
	}
	Fill(b, 8, 0.6)
	if bytes.Equal(a, b) {
		t.Fatal("different seeds gave the same bytes")
	}
}
