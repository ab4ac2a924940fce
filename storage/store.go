package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors. Every backend translates its own errors into these (in one
// function per backend), and wrappers and callers test them with errors.Is.
// None of them is ever retried.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a conditional Create found the key already present.
	ErrAlreadyExists = errors.New("already exists")
	// ErrCorrupt: bytes were read but are not what they claim to be (bad
	// header, wrong length, content that does not hash to its id).
	ErrCorrupt = errors.New("corrupt data")
	// ErrInvalidKey: the key is not a valid object key (see ValidateKey).
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidRange: a Get asked for bytes outside an existing object (a
	// negative offset, or a range that starts or ends past its end).
	ErrInvalidRange = errors.New("invalid range")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Getter reads objects.
type Getter interface {
	// Get returns a reader for length bytes of key starting at offset.
	// length < 0 means up to the end of the object. A missing key is
	// ErrNotFound (reported by Get itself, not by the first Read). A range
	// past the end of the object (offset > size, offset+length > size) or a
	// negative offset is an error wrapping ErrInvalidRange (which is never
	// retried), reported by Get or at the latest by the reader before
	// io.EOF, never a short object; offset == size yields no bytes. The
	// caller closes the reader.
	// Get may be retried.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
}

// Putter writes objects unconditionally.
type Putter interface {
	// Put stores size bytes read from r under key, replacing any object
	// there. Readers of key see either the old or the new object, never a
	// partial one. r is a ReadSeeker so that a retry can rewind and resend
	// it. Put may be retried.
	Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error
}

// Creator writes an object only if the key is absent (If-None-Match: *).
type Creator interface {
	// Create stores the object like Put, but fails with ErrAlreadyExists if
	// key already exists. Among concurrent Creates of one key exactly one
	// succeeds. This is the commit point of a snapshot. A retry after an
	// ambiguous failure may answer ErrAlreadyExists for the caller's own
	// write; callers that care compare the stored bytes.
	Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error
}

// Stater reports an object's metadata.
type Stater interface {
	// Stat returns the object's info, or ErrNotFound. Stat may be retried.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
}

// Lister enumerates objects.
type Lister interface {
	// List calls fn for every object whose key starts with prefix, in
	// lexical key order, from the calling goroutine. An error returned by fn
	// stops the listing and is returned by List. List may be retried, in
	// which case fn may see keys again.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// Deleter removes objects.
type Deleter interface {
	// Delete removes key. Deleting a missing key is not an error, so Delete
	// may be retried.
	Delete(ctx context.Context, key string) error
}

// Store is a whole object store: what every backend implements and every
// wrapper passes through. Code that needs less takes the narrower interface.
//
// Keys are slash-separated relative paths of printable ASCII (see
// ValidateKey). Every method honours ctx: once it is cancelled the method
// returns promptly with an error wrapping ctx.Err().
type Store interface {
	Getter
	Putter
	Creator
	Stater
	Lister
	Deleter
}
