package chunk

import (
	"fmt"
	"math/bits"
)

// Chunk sizes (DESIGN §3). Guest memory changes page-aligned, so fixed
// chunks dedup as well as content-defined ones and allow random access by
// offset; powers of two keep every chunk boundary page- and huge-page-aligned.
const (
	DefaultSize = 4 << 20
	MinSize     = 1 << 20
	MaxSize     = 16 << 20
)

// ValidateSize reports whether n is an allowed chunk size: a power of two
// from MinSize to MaxSize inclusive.
func ValidateSize(n int) error {
	if n < MinSize || n > MaxSize || bits.OnesCount(uint(n)) != 1 {
		return fmt.Errorf("chunk size %d is invalid: want a power of two from %d (1 MiB) to %d (16 MiB)", n, MinSize, MaxSize)
	}
	return nil
}
