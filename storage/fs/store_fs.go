package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hangar-vm/hangar/storage"
)

var _ storage.Store = (*Store)(nil)

// tempPrefix starts the name of every temporary file. '~' is not a key
// byte, so no key names a temporary file and List can tell them apart.
const tempPrefix = "~tmp-"

// Store is an object store in a local directory. It is safe for concurrent
// use, also by several Stores (in one or several processes) on one root.
type Store struct {
	root *os.Root
	dir  string
}

// Open returns a store rooted at dir, creating the directory if needed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open fs store: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open fs store: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open fs store: %w", err)
	}
	return &Store{root: root, dir: dir}, nil
}

// Close releases the root directory handle. The store is unusable after.
func (s *Store) Close() error { return s.root.Close() }

// Dir returns the root directory the store was opened on.
func (s *Store) Dir() string { return s.dir }

// Get implements storage.Getter.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := check(ctx, "get", key); err != nil {
		return nil, err
	}
	f, err := s.root.Open(filepath.FromSlash(key))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, translate(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, translate(err))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, storage.ErrNotFound)
	}
	size := fi.Size()
	end := size
	if length >= 0 {
		end = offset + length
	}
	if offset < 0 || offset > size || end > size || end < offset {
		f.Close()
		return nil, fmt.Errorf("get %s: %w: offset %d length %d outside object of %d bytes", key, storage.ErrInvalidRange, offset, length, size)
	}
	// The open file keeps the version that was current at Open: a
	// concurrent Put renames a new inode over the name, it does not edit
	// this one.
	return &sectionFile{SectionReader: io.NewSectionReader(f, offset, end-offset), f: f}, nil
}

type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionFile) Close() error { return s.f.Close() }

// Put implements storage.Putter.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	if err := s.write(ctx, key, r, size, false); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Create implements storage.Creator.
func (s *Store) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	if err := s.write(ctx, key, r, size, true); err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	return nil
}

func (s *Store) write(ctx context.Context, key string, r io.ReadSeeker, size int64, exclusive bool) (err error) {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	dir := path.Dir(key)
	if dir != "." {
		if err := s.root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
			return fmt.Errorf("make parent directory (is a parent an object?): %w", err)
		}
	}
	tmp, err := s.writeTemp(ctx, dir, r, size)
	if err != nil {
		return err
	}
	// From here on the temporary file exists and must go whatever happens:
	// after a successful link it is a second name of the object, after a
	// rename it is gone already (Remove then fails harmlessly).
	defer func() {
		if rerr := s.root.Remove(tmp); rerr != nil && !errors.Is(rerr, iofs.ErrNotExist) && err == nil {
			err = fmt.Errorf("remove temporary file: %w", rerr)
		}
	}()
	// Last chance to back out: a write whose context ended must not become
	// visible, even though all its bytes arrived.
	if err := ctx.Err(); err != nil {
		return err
	}
	name := filepath.FromSlash(key)
	if exclusive {
		if err := s.root.Link(tmp, name); err != nil {
			if errors.Is(err, iofs.ErrExist) {
				if fi, serr := s.root.Lstat(name); serr == nil && fi.IsDir() {
					return fmt.Errorf("key is a directory of other keys: %w", err)
				}
				return storage.ErrAlreadyExists
			}
			return fmt.Errorf("link into place: %w", err)
		}
	} else if err := s.root.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return s.syncDir(dir)
}

// writeTemp copies exactly size bytes from r into a new, fsynced temporary
// file in dir and returns its name relative to the root. On error no file
// is left.
func (s *Store) writeTemp(ctx context.Context, dir string, r io.Reader, size int64) (_ string, err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand contract)
	name := filepath.Join(filepath.FromSlash(dir), tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			s.root.Remove(name)
		}
	}()
	if n, cerr := io.CopyN(f, ctxReader{ctx, r}, size); cerr != nil {
		if errors.Is(cerr, io.EOF) {
			return "", fmt.Errorf("body has %d bytes, size says %d: %w", n, size, io.ErrUnexpectedEOF)
		}
		return "", fmt.Errorf("write body: %w", cerr)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync temporary file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close temporary file: %w", err)
	}
	return name, nil
}

// syncDir makes a rename or link in dir durable.
func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(filepath.FromSlash(dir))
	if err != nil {
		return fmt.Errorf("open directory to sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// ctxReader stops a copy as soon as its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Stat implements storage.Stater.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := check(ctx, "stat", key); err != nil {
		return storage.ObjectInfo{}, err
	}
	fi, err := s.root.Stat(filepath.FromSlash(key))
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, translate(err))
	}
	if !fi.Mode().IsRegular() {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements storage.Deleter. A directory is not an object, so
// deleting a key that names one does nothing. The directory is not fsynced:
// a delete lost in a crash only leaves garbage that GC removes again.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := check(ctx, "delete", key); err != nil {
		return err
	}
	name := filepath.FromSlash(key)
	fi, err := s.root.Lstat(name)
	if err != nil {
		if errors.Is(translate(err), storage.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := s.root.Remove(name); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List implements storage.Lister. It walks only the directories that can
// hold keys with the prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	// The deepest directory that holds every key with the prefix.
	start := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	err := s.walk(ctx, start, prefix, fn)
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return unwrapStop(err)
}

// errStop marks an error returned by fn, which List hands back untouched.
var errStop = errors.New("stopped by callback")

type stopError struct{ err error }

func (e stopError) Error() string        { return e.err.Error() }
func (e stopError) Is(target error) bool { return target == errStop }
func (e stopError) Unwrap() error        { return e.err }

func unwrapStop(err error) error {
	var se stopError
	if errors.As(err, &se) {
		return se.err
	}
	return err
}

// walk lists dir (a key prefix without trailing slash, "" for the root).
// Within one directory, sorting entries by name with "/" appended to
// directories yields key order: every key below directory d starts with
// d+"/", and no other entry name contains a slash.
func (s *Store) walk(ctx context.Context, dir, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := "."
	if dir != "" {
		name = filepath.FromSlash(dir)
	}
	d, err := s.root.Open(name)
	if err != nil {
		if errors.Is(translate(err), storage.ErrNotFound) {
			return nil // nothing was ever stored under this prefix
		}
		return err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil // an object, not a directory: no key below it
		}
		return err
	}
	type entry struct {
		sortKey string
		de      iofs.DirEntry
	}
	list := make([]entry, 0, len(entries))
	for _, de := range entries {
		// Temporary files and anything else that is not a key segment
		// (a stray file an operator dropped here) are not objects.
		if storage.ValidateKey(de.Name()) != nil {
			continue
		}
		sk := de.Name()
		if de.IsDir() {
			sk += "/"
		}
		list = append(list, entry{sk, de})
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.sortKey, b.sortKey) })
	for _, e := range list {
		key := e.de.Name()
		if dir != "" {
			key = dir + "/" + key
		}
		if e.de.IsDir() {
			sub := key + "/"
			if strings.HasPrefix(sub, prefix) || strings.HasPrefix(prefix, sub) {
				if err := s.walk(ctx, key, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !e.de.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			continue
		}
		fi, err := e.de.Info()
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				continue // deleted while we listed
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return stopError{err}
		}
	}
	return nil
}

// RemoveStaleTemp removes temporary files older than age, left behind by
// writers that crashed mid-write, and returns how many it removed. Files
// younger than age may belong to a write in progress (in this or another
// process) and are kept.
func (s *Store) RemoveStaleTemp(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	removed := 0
	err := iofs.WalkDir(s.root.FS(), ".", func(p string, de iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if de.IsDir() || !strings.HasPrefix(de.Name(), tempPrefix) {
			return nil
		}
		fi, err := de.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			return nil
		}
		if err := s.root.Remove(filepath.FromSlash(p)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("remove stale temporary files: %w", err)
	}
	return removed, nil
}

// translate maps file-system errors to the storage sentinels, in one place.
// ENOTDIR means a parent of the key is an object, so the key is absent too.
func translate(err error) error {
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w (%v)", storage.ErrNotFound, err)
	}
	return err
}

// check validates the key before anything else (an invalid key never
// touches the disk) and then the context.
func check(ctx context.Context, op, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}
