package miniotest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/testenv"
)

// Start starts a MinIO server for t with a fresh temporary data directory
// and stops it in t.Cleanup, printing its log if t failed. A missing binary
// fails t (skips it only with HANGAR_SKIP_MINIO=1), see internal/testenv.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := testenv.MinIOBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	s, err := StartProcess(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("minio log (%s):\n%s", s.Endpoint, s.LogTail(64<<10))
		}
	})
	return s
}

var bucketSeq atomic.Uint64

// NewBucket creates a fresh, empty bucket for t and returns its name. Buckets
// are not removed afterwards: the server's data directory is temporary.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := BucketName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateBucket(ctx, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// BucketName derives a valid, unique S3 bucket name (3-63 characters of
// lowercase letters, digits and hyphens) from a free-form hint such as a
// test name.
func BucketName(hint string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(hint) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	suffix := fmt.Sprintf("-%d-%s", bucketSeq.Add(1), randomHex(3))
	base := strings.Trim(b.String(), "-")
	if max := 63 - len(suffix) - 2; len(base) > max {
		base = strings.TrimRight(base[:max], "-")
	}
	return "t-" + base + suffix
}
