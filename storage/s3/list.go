package s3

import (
	"context"
	"fmt"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/storage"
)

// List implements storage.Lister with ListObjectsV2, which returns keys in
// lexical (UTF-8 binary) order; keys are ASCII, so that is byte order.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	// Cancelling stops minio-go's listing goroutine when fn ends the loop
	// early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objects := s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{
		Prefix:    s.prefix + prefix,
		Recursive: true,
	})
	for obj := range objects {
		if obj.Err != nil {
			return fmt.Errorf("list %s: %w", prefix, translateError(ctx, obj.Err))
		}
		key, ok := strings.CutPrefix(obj.Key, s.prefix)
		if !ok {
			return fmt.Errorf("list %s: server returned key %q outside prefix %q", prefix, obj.Key, s.prefix)
		}
		if err := fn(storage.ObjectInfo{Key: key, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
	}
	// minio-go closes the channel without an error when ctx is cancelled.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}
