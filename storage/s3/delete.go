package s3

import (
	"context"
	"errors"
	"fmt"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/storage"
)

// Delete implements storage.Deleter. S3 answers 204 for a missing key too;
// a NoSuchKey from a stricter server is also success.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.objectName(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	err = translateError(ctx, s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
