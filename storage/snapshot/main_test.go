package snapshot

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/storage/s3"
)

// One MinIO server for the whole test binary, started by the first test
// that needs it; every test gets a fresh bucket.
func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.CloseShared()
	os.Exit(code)
}

// minioStore returns a store on a fresh bucket of the shared real MinIO
// server.
func minioStore(t testing.TB) *s3.Store {
	t.Helper()
	srv := miniotest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s3.Open(ctx, s3.Config{
		Endpoint:  srv.Endpoint,
		Bucket:    srv.NewBucket(t),
		AccessKey: srv.AccessKey,
		SecretKey: s3.Secret(srv.SecretKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
