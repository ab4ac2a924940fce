package s3

import (
	"context"
	"fmt"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/storage"
)

// Stat implements storage.Stater with a HEAD request.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := s.objectName(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	size, info, err := s.stat(ctx, name)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: size, ModTime: info.LastModified}, nil
}

// stat heads the object called name (already prefixed) and translates the
// error.
func (s *Store) stat(ctx context.Context, name string) (int64, minio.ObjectInfo, error) {
	info, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return 0, info, translateError(ctx, err)
	}
	return info.Size, info, nil
}
