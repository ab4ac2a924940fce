package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/hangar-vm/hangar/internal/memtest"
	"github.com/hangar-vm/hangar/internal/miniotest"
)

// BenchmarkPutGet measures one object's round trip through a local MinIO at
// chunk size (one PUT) and at 64 MiB (multi-part, 16 MiB parts, 4 at a time).
func BenchmarkPutGet(b *testing.B) {
	srv := miniotest.Shared(b)
	bucket := miniotest.BucketName(b.Name())
	if err := srv.CreateBucket(context.Background(), bucket); err != nil {
		b.Fatal(err)
	}
	cfg := configFor(srv, bucket)
	cfg.PartSize = DefaultPartSize
	s := open(b, cfg)
	ctx := context.Background()
	for _, size := range []int{4 << 20, 64 << 20} {
		data := make([]byte, size)
		memtest.Fill(data, 1, 0)
		key := fmt.Sprintf("bench/%d", size)
		b.Run(fmt.Sprintf("Put/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := s.Put(ctx, key, bytes.NewReader(data), int64(size)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Get/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				rc, err := s.Get(ctx, key, 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
