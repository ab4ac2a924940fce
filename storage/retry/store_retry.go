package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/hangar-vm/hangar/storage"
)

var _ storage.Store = (*Store)(nil)

// Store retries the calls of the store it wraps. Safe for concurrent use.
type Store struct {
	inner storage.Store
	cfg   Config
	log   *slog.Logger
}

// New wraps inner. A nil logger discards the retry log.
func New(inner storage.Store, cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{inner: inner, cfg: cfg, log: logger.With("component", "store.retry")}, nil
}

// isRetriable decides, for every method, whether a failed attempt may be
// repeated. The sentinels are answers, not failures; a done caller context
// means nobody wants the answer any more; context.Canceled from below means
// someone stopped the work on purpose. A DeadlineExceeded while the
// caller's context is alive is a per-attempt timeout and is retried.
func isRetriable(ctx context.Context, err error) bool {
	switch {
	case err == nil, ctx.Err() != nil:
		return false
	case errors.Is(err, storage.ErrNotFound),
		errors.Is(err, storage.ErrAlreadyExists),
		errors.Is(err, storage.ErrCorrupt),
		errors.Is(err, storage.ErrInvalidKey),
		errors.Is(err, storage.ErrInvalidRange),
		errors.Is(err, context.Canceled):
		return false
	}
	var p permanent
	return !errors.As(err, &p)
}

// permanent marks an error that must be returned as is, without retry
// (an error from the caller's List callback, a body that cannot rewind).
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// backoff returns the wait before retry number n (n >= 1).
func (s *Store) backoff(n int) time.Duration {
	d := float64(s.cfg.InitialBackoff) * math.Pow(s.cfg.Multiplier, float64(n-1))
	d = math.Min(d, float64(s.cfg.MaxBackoff))
	d -= d * s.cfg.Jitter * rand.Float64()
	return time.Duration(d)
}

// do runs attempt until it succeeds, fails for good, or the budget ends.
func (s *Store) do(ctx context.Context, op, key string, attempt func(n int) error) error {
	start := time.Now()
	for n := 1; ; n++ {
		err := attempt(n)
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// The attempt failed for another reason while the caller gave
			// up; the caller must still see that it gave up.
			return fmt.Errorf("%s %s: %w (last attempt: %w)", op, key, cerr, err)
		}
		if !isRetriable(ctx, err) {
			return err
		}
		if n >= s.cfg.MaxAttempts {
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", op, key, n, err)
		}
		wait := s.backoff(n)
		if elapsed := time.Since(start); elapsed+wait > s.cfg.MaxElapsed {
			return fmt.Errorf("%s %s: giving up after %d attempts in %v: %w", op, key, n, elapsed.Round(time.Millisecond), err)
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "store call failed, retrying",
			slog.String("op", op), slog.String("key", key), slog.Int("attempt", n),
			slog.Duration("wait", wait), slog.Any("err", err))
		if s.cfg.OnRetry != nil {
			s.cfg.OnRetry(op, n, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s %s: %w (while waiting to retry after: %w)", op, key, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// precheck refuses what no retry can fix before anything is sent or read.
func precheck(ctx context.Context, op, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}

// Get implements storage.Getter.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := precheck(ctx, "get", key); err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	err := s.do(ctx, "get", key, func(int) error {
		var err error
		rc, err = s.inner.Get(ctx, key, offset, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rc, nil
}

// Put implements storage.Putter.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	if err := precheck(ctx, "put", key); err != nil {
		return err
	}
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("put %s: body position: %w", key, err)
	}
	return s.do(ctx, "put", key, func(n int) error {
		if err := rewind(r, start, n); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		return s.inner.Put(ctx, key, r, size)
	})
}

// Create implements storage.Creator, resolving ambiguous failures as the
// package documentation describes.
func (s *Store) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	if err := precheck(ctx, "create", key); err != nil {
		return err
	}
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("create %s: body position: %w", key, err)
	}
	ambiguous := false
	return s.do(ctx, "create", key, func(n int) error {
		if err := rewind(r, start, n); err != nil {
			return fmt.Errorf("create %s: %w", key, err)
		}
		err := s.inner.Create(ctx, key, r, size)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, storage.ErrAlreadyExists) && ambiguous:
			same, cerr := s.storedEquals(ctx, key, r, start, size)
			if errors.Is(cerr, storage.ErrNotFound) {
				// Deleted between our Create and our look: try again.
				return fmt.Errorf("create %s: object vanished while comparing it: %v", key, cerr)
			}
			if cerr != nil {
				return fmt.Errorf("create %s: compare with the stored object after an ambiguous failure: %w", key, cerr)
			}
			if same {
				s.log.LogAttrs(ctx, slog.LevelInfo, "create: an earlier attempt had succeeded",
					slog.String("key", key), slog.Int("attempt", n))
				return nil
			}
			return err
		case isRetriable(ctx, err):
			ambiguous = true
		}
		return err
	})
}

// storedEquals reports whether the object at key holds exactly the size
// bytes of r from start.
func (s *Store) storedEquals(ctx context.Context, key string, r io.ReadSeeker, start, size int64) (bool, error) {
	info, err := s.inner.Stat(ctx, key)
	if err != nil {
		return false, err
	}
	if info.Size != size {
		return false, nil
	}
	if _, err := r.Seek(start, io.SeekStart); err != nil {
		return false, permanent{fmt.Errorf("rewind body: %w", err)}
	}
	rc, err := s.inner.Get(ctx, key, 0, -1)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	const block = 64 << 10
	a, b := make([]byte, block), make([]byte, block)
	for left := size; left > 0; {
		n := int(min(left, block))
		if _, err := io.ReadFull(rc, a[:n]); err != nil {
			return false, fmt.Errorf("read stored object: %w", err)
		}
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return false, permanent{fmt.Errorf("read body again: %w", err)}
		}
		if !bytes.Equal(a[:n], b[:n]) {
			return false, nil
		}
		left -= int64(n)
	}
	return true, nil
}

// rewind puts the body back at start before every attempt but the first.
// A body that cannot seek cannot be resent, which no retry will fix.
func rewind(r io.Seeker, start int64, attempt int) error {
	if attempt == 1 {
		return nil
	}
	if _, err := r.Seek(start, io.SeekStart); err != nil {
		return permanent{fmt.Errorf("rewind body for attempt %d: %w", attempt, err)}
	}
	return nil
}

// Stat implements storage.Stater.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := precheck(ctx, "stat", key); err != nil {
		return storage.ObjectInfo{}, err
	}
	var info storage.ObjectInfo
	err := s.do(ctx, "stat", key, func(int) error {
		var err error
		info, err = s.inner.Stat(ctx, key)
		return err
	})
	return info, err
}

// List implements storage.Lister. A retried listing skips the keys fn has
// already seen (listings are in key order), and fn's own error ends the
// call at once.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	var last string
	seen := false
	return s.do(ctx, "list", prefix, func(int) error {
		var fnErr error
		err := s.inner.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			if seen && oi.Key <= last {
				return nil
			}
			if err := fn(oi); err != nil {
				fnErr = err
				return err
			}
			last, seen = oi.Key, true
			return nil
		})
		if fnErr != nil {
			return permanent{fnErr}
		}
		return err
	})
}

// Delete implements storage.Deleter.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := precheck(ctx, "delete", key); err != nil {
		return err
	}
	return s.do(ctx, "delete", key, func(int) error { return s.inner.Delete(ctx, key) })
}
