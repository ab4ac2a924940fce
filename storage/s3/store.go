package s3

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/hangar-vm/hangar/storage"
)

// Store is a storage.Store in one bucket of an S3-compatible server.
type Store struct {
	client  *minio.Client
	core    minio.Core // non-lazy GetObject: Get reports a missing key itself
	bucket  string
	prefix  string // "" or "<Config.Prefix>/"
	putOpts minio.PutObjectOptions
	// unsigned lists the key prefixes sent as UNSIGNED-PAYLOAD
	// (Config.UnsignedPayloadPrefixes).
	unsigned []string
	log      *slog.Logger
}

var _ storage.Store = (*Store)(nil)

// Open connects to the server cfg names and checks that the bucket exists,
// creating it if cfg.CreateBucket is set. Open does not retry: wrap the
// call, or the store, in storage/retry.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey.Reveal(), cfg.SessionToken.Reveal()),
		Secure: cfg.UseTLS,
		Region: cfg.Region,
		// No retries inside the SDK: storage/retry is the one place for
		// retry policy (see doc.go).
		MaxRetries: 1,
		Transport:  cfg.transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", cfg.Endpoint, err)
	}
	s := &Store{
		client: client,
		core:   minio.Core{Client: client},
		bucket: cfg.Bucket,
		prefix: cfg.keyPrefix(),
		putOpts: minio.PutObjectOptions{
			ContentType: "application/octet-stream",
			PartSize:    cfg.PartSize,
			NumThreads:  cfg.PartConcurrency,
		},
		unsigned: slices.Clone(cfg.UnsignedPayloadPrefixes),
		log:      cfg.Logger.With("component", "storage/s3", "endpoint", cfg.Endpoint, "bucket", cfg.Bucket),
	}
	if err := s.ensureBucket(ctx, cfg.CreateBucket, cfg.Region); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) ensureBucket(ctx context.Context, create bool, region string) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.bucket, translateError(ctx, err))
	}
	if ok {
		return nil
	}
	if !create {
		return fmt.Errorf("s3 bucket %s does not exist (set create_bucket to create it)", s.bucket)
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" {
		err = nil // another Open created it first
	}
	if err != nil {
		return fmt.Errorf("s3 create bucket %s: %w", s.bucket, translateError(ctx, err))
	}
	s.log.Info("created bucket")
	return nil
}

// objectName validates key and maps it into the bucket.
func (s *Store) objectName(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}
