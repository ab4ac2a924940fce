package s3

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/miniotest"
	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/storetest"
)

// One MinIO server for the whole test binary; every store gets a fresh bucket
// or a fresh prefix in it.
func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.CloseShared()
	os.Exit(code)
}

func configFor(srv *miniotest.Server, bucket string) Config {
	return Config{
		Endpoint:  srv.Endpoint,
		Bucket:    bucket,
		AccessKey: srv.AccessKey,
		SecretKey: Secret(srv.SecretKey),
		// The smallest part size S3 allows, so that the suite's larger
		// objects go through the multi-part path too.
		PartSize: MinPartSize,
	}
}

func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newBucketStore is a Store on a fresh bucket of the shared server.
func newBucketStore(t *testing.T) storage.Store {
	srv := miniotest.Shared(t)
	return open(t, configFor(srv, srv.NewBucket(t)))
}

var (
	prefixBucket string // one bucket shared by all prefix stores
	prefixSeq    atomic.Uint64
)

// newPrefixStore is a Store on a fresh prefix of one bucket that earlier
// prefix stores have filled, so any leak across prefixes shows.
func newPrefixStore(t *testing.T) storage.Store {
	srv := miniotest.Shared(t)
	if prefixBucket == "" {
		prefixBucket = srv.NewBucket(t)
	}
	cfg := configFor(srv, prefixBucket)
	cfg.Prefix = fmt.Sprintf("tenant-%d", prefixSeq.Add(1))
	return open(t, cfg)
}

func TestConformance(t *testing.T) {
	t.Run("Bucket", func(t *testing.T) { storetest.Run(t, newBucketStore) })
	t.Run("Prefix", func(t *testing.T) { storetest.Run(t, newPrefixStore) })
}
