package s3

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Put implements storage.Putter. S3 makes a PUT (or a completed multi-part
// upload) visible atomically, so readers never see a partial object.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.put(ctx, "put", key, r, size, false)
}

// MaxCreateSize bounds Create: a conditional create is always one PUT (see
// Create), and S3 takes at most 5 GiB in one PUT.
const MaxCreateSize = 5 << 30

// Create implements storage.Creator with a single PUT carrying
// "If-None-Match: *" (minio-go's SetMatchETagExcept("*")); the server
// answers 412 if the key exists, which translateError makes ErrAlreadyExists.
//
// Never multi-part: minio-go v7.0.91 sends the custom header on
// CreateMultipartUpload but drops it from CompleteMultipartUpload, so the
// server checks the condition when the upload starts, not when it commits,
// and two racing uploads can both "create" the object (TestCreateRaceMultipart
// caught this). Creates are for small commit records such as manifests.
func (s *Store) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.put(ctx, "create", key, r, size, true)
}

func (s *Store) put(ctx context.Context, op, key string, r io.ReadSeeker, size int64, ifAbsent bool) error {
	name, err := s.objectName(key)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if size < 0 {
		// minio-go would buffer parts of unknown size in memory.
		return fmt.Errorf("%s %s: negative size %d", op, key, size)
	}
	body, err := section(r, size)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	opts := s.putOpts // a copy: the custom header below must not leak into Put
	opts.DisableContentSha256 = s.unsignedKey(key)
	if ifAbsent {
		if size > MaxCreateSize {
			return fmt.Errorf("%s %s: %d bytes is more than a conditional create can write (%d)", op, key, size, MaxCreateSize)
		}
		opts.SetMatchETagExcept("*")
		opts.DisableMultipart = true
	}
	if _, err := s.client.PutObject(ctx, s.bucket, name, body, size, opts); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, translateError(ctx, err))
	}
	return nil
}

// section returns the size bytes of r from its current position as an
// io.SectionReader when r can read at offsets. minio-go uploads parts of a
// ReaderAt in parallel straight from it, without buffering, but reads it from
// offset 0: the section keeps the caller's position meaningful.
func section(r io.ReadSeeker, size int64) (io.Reader, error) {
	ra, ok := r.(io.ReaderAt)
	if !ok {
		return io.LimitReader(r, size), nil
	}
	pos, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(ra, pos, size), nil
}

// unsignedKey reports whether key's body is sent as UNSIGNED-PAYLOAD
// (Config.UnsignedPayloadPrefixes).
func (s *Store) unsignedKey(key string) bool {
	for _, p := range s.unsigned {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
