package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hangar-vm/hangar/storage"
)

var _ storage.Store = (*Store)(nil)

// Store is an in-memory object store. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	objects map[string]object
}

// object is immutable once stored: Put replaces it, never edits it, so a
// reader handed out by Get can keep using its bytes without the lock.
type object struct {
	data    []byte
	modTime time.Time
}

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[string]object)}
}

// Get implements storage.Getter.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := check(ctx, "get", key); err != nil {
		return nil, err
	}
	s.mu.RLock()
	obj, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, storage.ErrNotFound)
	}
	size := int64(len(obj.data))
	end := size
	if length >= 0 {
		end = offset + length
	}
	if offset < 0 || offset > size || end > size || end < offset {
		return nil, fmt.Errorf("get %s: %w: offset %d length %d outside object of %d bytes", key, storage.ErrInvalidRange, offset, length, size)
	}
	return io.NopCloser(bytes.NewReader(obj.data[offset:end])), nil
}

// Put implements storage.Putter.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.write(ctx, "put", key, r, size, false)
}

// Create implements storage.Creator.
func (s *Store) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.write(ctx, "create", key, r, size, true)
}

func (s *Store) write(ctx context.Context, op, key string, r io.ReadSeeker, size int64, exclusive bool) error {
	if err := check(ctx, op, key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%s %s: negative size %d", op, key, size)
	}
	// Read the whole body before taking the lock: a slow reader must not
	// stall other callers, and a short one must leave nothing behind.
	// LimitReader rather than make([]byte, size): a bogus size must not
	// allocate before the reader proves it has the bytes.
	data, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", op, key, err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("%s %s: body has %d bytes, size says %d: %w", op, key, len(data), size, io.ErrUnexpectedEOF)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[key]; ok && exclusive {
		return fmt.Errorf("%s %s: %w", op, key, storage.ErrAlreadyExists)
	}
	s.objects[key] = object{data: data, modTime: time.Now()}
	return nil
}

// Stat implements storage.Stater.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := check(ctx, "stat", key); err != nil {
		return storage.ObjectInfo{}, err
	}
	s.mu.RLock()
	obj, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(obj.data)), ModTime: obj.modTime}, nil
}

// List implements storage.Lister. It takes a snapshot of the matching keys
// and calls fn without holding the lock, so fn may use the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	s.mu.RLock()
	var infos []storage.ObjectInfo
	for k, obj := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, storage.ObjectInfo{Key: k, Size: int64(len(obj.data)), ModTime: obj.modTime})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b storage.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, oi := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements storage.Deleter.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := check(ctx, "delete", key); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	return nil
}

// check validates the key before anything else (an invalid key never
// touches the store) and then the context.
func check(ctx context.Context, op, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}
