package compression

import (
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// The settings the benchmarks compare: each zstd strategy, lz4 fast and HC
// at both ends, and none as the memcpy baseline.
var benchSettings = []Setting{
	{Zstd, 1}, {Zstd, 3}, {Zstd, 9}, {Zstd, 19},
	{LZ4, 0}, {LZ4, 1}, {LZ4, 9},
	{None, 0},
}

// benchChunk is one 4 MiB chunk of memory-like bytes, 60% zero pages.
var benchChunk = sync.OnceValue(func() []byte { return memBytes(4<<20, 42) })

func benchEncoded(b *testing.B, c Codec) []byte {
	enc, err := c.Encode(nil, benchChunk())
	if err != nil {
		b.Fatal(err)
	}
	return enc
}

func reportRatio(b *testing.B, raw, enc int) {
	b.ReportMetric(float64(raw)/float64(enc), "ratio")
}

// BenchmarkEncode: MB/s of raw input compressed, one goroutine.
func BenchmarkEncode(b *testing.B) {
	src := benchChunk()
	for _, s := range benchSettings {
		b.Run(s.String(), func(b *testing.B) {
			c := mustCodec(b, s)
			var enc []byte
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				enc, _ = c.Encode(enc[:0], src)
			}
			reportRatio(b, len(src), len(enc))
		})
	}
}

// BenchmarkDecode: MB/s of raw output produced, one goroutine.
func BenchmarkDecode(b *testing.B) {
	src := benchChunk()
	for _, s := range benchSettings {
		b.Run(s.String(), func(b *testing.B) {
			c := mustCodec(b, s)
			enc := benchEncoded(b, c)
			dec := make([]byte, 0, len(src))
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				var err error
				if dec, err = c.Decode(dec[:0], enc, len(src)); err != nil {
					b.Fatal(err)
				}
			}
			reportRatio(b, len(src), len(enc))
		})
	}
}

// BenchmarkEncodeParallel and BenchmarkDecodeParallel run the codec from
// GOMAXPROCS goroutines at once (vary with -cpu), as the chunk pipeline's
// workers do; they measure pool contention and total throughput.
func BenchmarkEncodeParallel(b *testing.B) {
	src := benchChunk()
	for _, s := range benchSettings {
		b.Run(s.String(), func(b *testing.B) {
			c := mustCodec(b, s)
			b.SetBytes(int64(len(src)))
			b.RunParallel(func(pb *testing.PB) {
				var enc []byte
				for pb.Next() {
					enc, _ = c.Encode(enc[:0], src)
				}
			})
			reportRatio(b, len(src), len(benchEncoded(b, c)))
		})
	}
}

func BenchmarkDecodeParallel(b *testing.B) {
	src := benchChunk()
	for _, s := range benchSettings {
		b.Run(s.String(), func(b *testing.B) {
			c := mustCodec(b, s)
			enc := benchEncoded(b, c)
			b.SetBytes(int64(len(src)))
			b.RunParallel(func(pb *testing.PB) {
				dec := make([]byte, 0, len(src))
				for pb.Next() {
					var err error
					if dec, err = c.Decode(dec[:0], enc, len(src)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRatio(b, len(src), len(enc))
		})
	}
}

// BenchmarkZstdPooling backs the choice made in codec_zstd.go: a sync.Pool
// of single-goroutine encoders (what the codec does) against one shared
// encoder whose concurrency-safe EncodeAll hands out GOMAXPROCS internal
// encoders, both on 4 MiB chunks from parallel goroutines.
func BenchmarkZstdPooling(b *testing.B) {
	src := benchChunk()
	for _, level := range []int{1, 3} {
		c := mustCodec(b, Setting{Zstd, level})
		b.Run(Setting{Zstd, level}.String()+"/pool", func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.RunParallel(func(pb *testing.PB) {
				var enc []byte
				for pb.Next() {
					enc, _ = c.Encode(enc[:0], src)
				}
			})
		})
		b.Run(Setting{Zstd, level}.String()+"/shared", func(b *testing.B) {
			shared, err := zstd.NewWriter(nil,
				zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
				zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
				zstd.WithEncoderCRC(false))
			if err != nil {
				b.Fatal(err)
			}
			defer shared.Close()
			b.SetBytes(int64(len(src)))
			b.RunParallel(func(pb *testing.PB) {
				var enc []byte
				for pb.Next() {
					enc = shared.EncodeAll(src, enc[:0])
				}
			})
		})
	}
	for _, crc := range []bool{false, true} {
		name := "zstd:1/crc=false"
		if crc {
			name = "zstd:1/crc=true"
		}
		b.Run(name, func(b *testing.B) {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
				zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(crc))
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			var out []byte
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				out = enc.EncodeAll(src, out[:0])
			}
		})
	}
}
