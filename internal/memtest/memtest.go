// Package memtest generates deterministic bytes that look like a guest's
// memory, for tests and benchmarks of the pipelines that move memory.
//
// Real guest RAM is a mix of pages never touched (zero), kernel and program
// text, heap structures full of small integers and pointers that share their
// high bits, page-cache text, and some incompressible data (compressed files,
// keys, random buffers). Zero pages come both in long runs (memory the guest
// never used) and scattered singly among used pages. Fill reproduces that mix
// so that compression ratios and zero-chunk counts in benchmarks are close to
// what a real guest gives, and identical for a given seed.
package memtest

import (
	"encoding/binary"
	"math/rand/v2"
)

// PageSize is the guest page size the generator works in.
const PageSize = 4096

// Mix is the share of each kind of non-zero page; the shares need not add up
// to one, they are weights.
type Mix struct {
	Text, Struct, Random float64
}

// DefaultMix is the non-zero page mix used unless a test says otherwise.
var DefaultMix = Mix{Text: 0.40, Struct: 0.35, Random: 0.25}

var words = []string{
	"the", "kernel", "page", "memory", "struct", "device", "virtio", "queue",
	"buffer", "return", "error", "static", "inline", "sandbox", "browser",
	"agent", "request", "response", "http", "json", "value", "null", "true",
	"false", "function", "const", "import", "module", "index", "table",
	"{\"id\":", "\"name\":", "</div>", "<span class=", "GET /api/v1/", "200 OK",
}

// Fill writes memory-like bytes into b: about zeroFraction of its pages are
// zero, half of those in runs of 256 to 2048 pages (1 to 8 MiB) and half
// scattered singly; the other pages follow DefaultMix. The result depends only
// on seed and len(b).
func Fill(b []byte, seed uint64, zeroFraction float64) {
	FillMix(b, seed, zeroFraction, DefaultMix)
}

// FillMix is Fill with an explicit mix of non-zero pages.
func FillMix(b []byte, seed uint64, zeroFraction float64, mix Mix) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pages := (len(b) + PageSize - 1) / PageSize
	// Long zero runs take half of the zero budget (at most half the pages,
	// so a free page is always left to start a run on); the rest is drawn
	// page by page among the remaining pages so the overall fraction holds.
	runBudget := int(float64(pages) * zeroFraction / 2)
	zero := make([]bool, pages)
	for runBudget > 0 {
		n := min(256+r.IntN(1793), runBudget)
		start := r.IntN(pages)
		for i := start; i < start+n && i < pages; i++ {
			if !zero[i] {
				zero[i] = true
				runBudget--
			}
		}
	}
	used := 0
	for _, z := range zero {
		if z {
			used++
		}
	}
	left := pages - used
	var pScattered float64
	if left > 0 {
		pScattered = (float64(pages)*zeroFraction - float64(used)) / float64(left)
	}
	total := mix.Text + mix.Struct + mix.Random
	for i := 0; i < pages; i++ {
		page := b[i*PageSize : min((i+1)*PageSize, len(b))]
		if zero[i] || r.Float64() < pScattered {
			clear(page)
			continue
		}
		switch x := r.Float64() * total; {
		case x < mix.Text:
			fillText(page, r)
		case x < mix.Text+mix.Struct:
			fillStruct(page, r)
		default:
			fillRandom(page, r)
		}
	}
}

func fillText(p []byte, r *rand.Rand) {
	n := 0
	for n < len(p) {
		w := words[r.IntN(len(words))]
		n += copy(p[n:], w)
		if n < len(p) {
			if r.IntN(12) == 0 {
				p[n] = '\n'
			} else {
				p[n] = ' '
			}
			n++
		}
	}
}

// fillStruct writes 64-byte records: a pointer into one of a few heap
// regions, small counters, flags and a little noise.
func fillStruct(p []byte, r *rand.Rand) {
	base := uint64(0xffff888000000000) + uint64(r.IntN(16))<<28
	for off := 0; off+64 <= len(p); off += 64 {
		rec := p[off : off+64]
		binary.LittleEndian.PutUint64(rec[0:], base+uint64(r.IntN(1<<20))*64)
		binary.LittleEndian.PutUint64(rec[8:], base+uint64(r.IntN(1<<20))*64)
		binary.LittleEndian.PutUint32(rec[16:], uint32(r.IntN(1000)))
		binary.LittleEndian.PutUint32(rec[20:], uint32(r.IntN(4)))
		binary.LittleEndian.PutUint64(rec[24:], uint64(r.IntN(1<<16)))
		clear(rec[32:56])
		binary.LittleEndian.PutUint64(rec[56:], r.Uint64())
	}
}

func fillRandom(p []byte, r *rand.Rand) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
}
