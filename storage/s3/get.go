package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/storage"
)

// Get implements storage.Getter. It uses minio-go's Core.GetObject, which
// sends the request before returning (Client.GetObject would defer it to the
// first Read), so a missing key is reported here.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	name, err := s.objectName(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: %w: negative offset %d", key, storage.ErrInvalidRange, offset)
	}
	if length == 0 {
		// A range cannot say "no bytes"; check existence and bounds.
		return s.emptyAt(ctx, key, name, offset)
	}

	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err = opts.SetRange(offset, offset+length-1)
	case offset > 0:
		err = opts.SetRange(offset, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	body, _, hdr, err := s.core.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			// The range starts at or past the end. Starting exactly at
			// the end with "to the end" is an empty read, not an error.
			if length < 0 {
				return s.emptyAt(ctx, key, name, offset)
			}
			return nil, s.pastEnd(ctx, key, name, offset, length)
		}
		return nil, fmt.Errorf("get %s: %w", key, translateError(ctx, err))
	}
	if length > 0 {
		// S3 silently shortens a range that runs past the end; the
		// contract calls that an error.
		total, ok := contentRangeTotal(hdr.Get("Content-Range"))
		if !ok {
			body.Close()
			return nil, fmt.Errorf("get %s: ranged response without a valid Content-Range (%q)", key, hdr.Get("Content-Range"))
		}
		if offset+length > total {
			body.Close()
			return nil, fmt.Errorf("get %s: %w: %d+%d past end of object (%d bytes)", key, storage.ErrInvalidRange, offset, length, total)
		}
	}
	return body, nil
}

// emptyAt returns an empty reader if key exists and offset is within it.
func (s *Store) emptyAt(ctx context.Context, key, name string, offset int64) (io.ReadCloser, error) {
	size, _, err := s.stat(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset > size {
		return nil, fmt.Errorf("get %s: %w: offset %d past end of object (%d bytes)", key, storage.ErrInvalidRange, offset, size)
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
}

func (s *Store) pastEnd(ctx context.Context, key, name string, offset, length int64) error {
	size, _, err := s.stat(ctx, name)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	return fmt.Errorf("get %s: %w: %d+%d past end of object (%d bytes)", key, storage.ErrInvalidRange, offset, length, size)
}

// contentRangeTotal parses the total size out of "bytes a-b/total".
func contentRangeTotal(v string) (int64, bool) {
	_, total, ok := strings.Cut(v, "/")
	if !ok || !strings.HasPrefix(v, "bytes ") {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}
