package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/faulty"
	"github.com/hangar-vm/hangar/storage/mem"
	"github.com/hangar-vm/hangar/storage/retry"
	"github.com/hangar-vm/hangar/storage/storetest"
)

// fastConfig retries quickly: tests must not sleep.
func fastConfig() retry.Config {
	c := retry.DefaultConfig()
	c.InitialBackoff = time.Microsecond
	c.MaxBackoff = time.Millisecond
	return c
}

func newRetry(t *testing.T, inner storage.Store, cfg retry.Config) *retry.Store {
	t.Helper()
	s, err := retry.New(inner, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformanceOverFaults: with a fifth of all calls failing (half of
// them after the call took effect), the retrying store still behaves as a
// correct store.
func TestConformanceOverFaults(t *testing.T) {
	var seed uint64
	var retries sync.Map
	storetest.Run(t, func(t *testing.T) storage.Store {
		f := faulty.New(mem.New())
		seed++
		f.SetRandomFaults(0.2, seed)
		cfg := fastConfig()
		cfg.MaxAttempts = 40 // 0.2^40: the suite never runs out of budget
		cfg.OnRetry = func(op string, _ int, _ error) { retries.Store(op, true) }
		return newRetry(t, f, cfg)
	})
	// Make sure faults were in fact injected and retried for every method.
	for _, op := range []string{"get", "put", "create", "stat", "list", "delete"} {
		if _, ok := retries.Load(op); !ok {
			t.Errorf("no %s was retried during the suite", op)
		}
	}
}

func put(ctx context.Context, s storage.Store, key, v string) error {
	return s.Put(ctx, key, strings.NewReader(v), int64(len(v)))
}

func TestRetriesTransientErrors(t *testing.T) {
	f := faulty.New(mem.New())
	f.AddFault(faulty.OpPut, faulty.Fault{Times: 3, Err: faulty.ErrInjected})
	var logBuf bytes.Buffer
	var hooked []int
	cfg := fastConfig()
	cfg.MaxAttempts = 5
	cfg.OnRetry = func(op string, attempt int, err error) {
		if op != "put" || !errors.Is(err, faulty.ErrInjected) {
			t.Errorf("OnRetry(%q, %d, %v)", op, attempt, err)
		}
		hooked = append(hooked, attempt)
	}
	s, err := retry.New(f, cfg, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := put(context.Background(), s, "k", "v"); err != nil {
		t.Fatalf("put after 3 transient failures with 5 attempts: %v", err)
	}
	if got := f.Calls(faulty.OpPut); got != 4 {
		t.Fatalf("%d attempts, want 4", got)
	}
	if fmt.Sprint(hooked) != "[1 2 3]" {
		t.Fatalf("OnRetry saw attempts %v, want [1 2 3]", hooked)
	}
	if n := strings.Count(logBuf.String(), "retrying"); n != 3 {
		t.Fatalf("logged %d retries, want 3:\n%s", n, logBuf.String())
	}
	if !strings.Contains(logBuf.String(), "component=store.retry") {
		t.Fatalf("log lines lack the component:\n%s", logBuf.String())
	}
}

func TestBudgetAttempts(t *testing.T) {
	f := faulty.New(mem.New())
	f.AddFault(faulty.OpStat, faulty.Fault{Times: -1, Err: faulty.ErrInjected})
	cfg := fastConfig()
	cfg.MaxAttempts = 4
	s := newRetry(t, f, cfg)
	_, err := s.Stat(context.Background(), "k")
	if !errors.Is(err, faulty.ErrInjected) || !strings.Contains(err.Error(), "giving up after 4 attempts") {
		t.Fatalf("stat = %v", err)
	}
	if got := f.Calls(faulty.OpStat); got != 4 {
		t.Fatalf("%d attempts, want 4", got)
	}
}

func TestBudgetElapsed(t *testing.T) {
	f := faulty.New(mem.New())
	f.AddFault(faulty.OpStat, faulty.Fault{Times: -1, Err: faulty.ErrInjected})
	cfg := retry.DefaultConfig()
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	cfg.Jitter = 0
	cfg.MaxElapsed = time.Minute // the first wait alone would exceed it
	s := newRetry(t, f, cfg)
	_, err := s.Stat(context.Background(), "k")
	if !errors.Is(err, faulty.ErrInjected) || !strings.Contains(err.Error(), "giving up after 1 attempts") {
		t.Fatalf("stat = %v", err)
	}
	if got := f.Calls(faulty.OpStat); got != 1 {
		t.Fatalf("%d attempts, want 1", got)
	}
}

func TestNeverRetriesSentinels(t *testing.T) {
	for _, sentinel := range []error{storage.ErrNotFound, storage.ErrAlreadyExists, storage.ErrCorrupt, storage.ErrInvalidKey, storage.ErrInvalidRange, context.Canceled} {
		f := faulty.New(mem.New())
		f.AddFault(faulty.OpGet, faulty.Fault{Times: -1, Err: fmt.Errorf("backend says: %w", sentinel)})
		s := newRetry(t, f, fastConfig())
		_, err := s.Get(context.Background(), "k", 0, -1)
		if !errors.Is(err, sentinel) {
			t.Errorf("get = %v, want %v", err, sentinel)
		}
		if got := f.Calls(faulty.OpGet); got != 1 {
			t.Errorf("%v was tried %d times, want once", sentinel, got)
		}
	}
	// Real sentinels from a real store, too.
	f := faulty.New(mem.New())
	s := newRetry(t, f, fastConfig())
	if _, err := s.Stat(context.Background(), "missing"); !errors.Is(err, storage.ErrNotFound) || f.Calls(faulty.OpStat) != 1 {
		t.Fatalf("stat of a missing key = %v after %d calls", err, f.Calls(faulty.OpStat))
	}
	if err := s.Delete(context.Background(), "../x"); !errors.Is(err, storage.ErrInvalidKey) || f.Calls(faulty.OpDelete) != 0 {
		t.Fatalf("invalid key = %v after %d calls", err, f.Calls(faulty.OpDelete))
	}
}

// A per-attempt timeout (DeadlineExceeded while the caller's context is
// alive) is transient.
func TestRetriesAttemptTimeout(t *testing.T) {
	f := faulty.New(mem.New())
	f.AddFault(faulty.OpDelete, faulty.Fault{Err: fmt.Errorf("request: %w", context.DeadlineExceeded)})
	s := newRetry(t, f, fastConfig())
	if err := s.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if got := f.Calls(faulty.OpDelete); got != 2 {
		t.Fatalf("%d attempts, want 2", got)
	}
}

func TestStopsOnCancel(t *testing.T) {
	f := faulty.New(mem.New())
	f.AddFault(faulty.OpPut, faulty.Fault{Times: -1, Err: faulty.ErrInjected})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := retry.DefaultConfig()
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	cfg.MaxElapsed = 10 * time.Hour
	// Cancel while the wrapper is about to wait an hour for its retry.
	cfg.OnRetry = func(string, int, error) { cancel() }
	s := newRetry(t, f, cfg)
	err := put(ctx, s, "k", "v")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("put = %v, want both the cancellation and the last error", err)
	}
	if got := f.Calls(faulty.OpPut); got != 1 {
		t.Fatalf("%d attempts, want 1", got)
	}
}

// TestRewindsBody: the first attempt consumes the whole body and then
// fails; the retry must resend it from where it started (not from 0).
func TestRewindsBody(t *testing.T) {
	inner := mem.New()
	f := faulty.New(inner)
	f.AddFault(faulty.OpPut, faulty.Fault{After: true, Err: faulty.ErrInjected})
	f.AddFault(faulty.OpCreate, faulty.Fault{Err: faulty.ErrInjected})
	s := newRetry(t, f, fastConfig())
	r := strings.NewReader("--payload")
	r.Seek(2, 0)
	if err := s.Put(context.Background(), "k", r, 7); err != nil {
		t.Fatal(err)
	}
	if f.Calls(faulty.OpPut) != 2 {
		t.Fatalf("%d put attempts, want 2", f.Calls(faulty.OpPut))
	}
	rc, err := inner.Get(context.Background(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(rc)
	if b.String() != "payload" {
		t.Fatalf("stored %q, want payload", b.String())
	}
}

// cantSeek fails every Seek but the position query.
type cantSeek struct{ *strings.Reader }

func (c cantSeek) Seek(off int64, whence int) (int64, error) {
	if off == 0 && whence == 1 {
		return c.Reader.Seek(off, whence)
	}
	return 0, errors.New("pipe")
}

func TestUnrewindableBodyIsNotRetried(t *testing.T) {
	f := faulty.New(mem.New())
	f.AddFault(faulty.OpPut, faulty.Fault{After: true, Err: faulty.ErrInjected})
	s := newRetry(t, f, fastConfig())
	err := s.Put(context.Background(), "k", cantSeek{strings.NewReader("v")}, 1)
	if err == nil || !strings.Contains(err.Error(), "rewind") || f.Calls(faulty.OpPut) != 1 {
		t.Fatalf("put = %v after %d attempts", err, f.Calls(faulty.OpPut))
	}
}

func TestAmbiguousCreate(t *testing.T) {
	ctx := context.Background()
	create := func(s storage.Store, key, v string) error {
		return s.Create(ctx, key, strings.NewReader(v), int64(len(v)))
	}

	// The first attempt took effect but its answer was lost: the retry
	// meets ErrAlreadyExists, finds its own bytes and reports success.
	f := faulty.New(mem.New())
	f.AddFault(faulty.OpCreate, faulty.Fault{After: true, Err: faulty.ErrInjected})
	s := newRetry(t, f, fastConfig())
	if err := create(s, "manifest", "mine"); err != nil {
		t.Fatalf("create after a lost answer: %v", err)
	}
	if f.Calls(faulty.OpCreate) != 2 {
		t.Fatalf("%d create attempts, want 2", f.Calls(faulty.OpCreate))
	}

	// An ambiguous failure, and someone else's object is there: the
	// comparison fails, ErrAlreadyExists stands.
	f = faulty.New(mem.New())
	s = newRetry(t, f, fastConfig())
	if err := create(s, "manifest", "theirs"); err != nil {
		t.Fatal(err)
	}
	f.AddFault(faulty.OpCreate, faulty.Fault{Err: faulty.ErrInjected})
	if err := create(s, "manifest", "mine!!"); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("create over someone else's object of the same size = %v", err)
	}
	if err := create(s, "manifest", "mine, longer"); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("create over someone else's object = %v", err)
	}

	// No ambiguity: ErrAlreadyExists on the first attempt is returned even
	// for identical bytes, and nothing is compared.
	f = faulty.New(mem.New())
	s = newRetry(t, f, fastConfig())
	if err := create(s, "manifest", "same"); err != nil {
		t.Fatal(err)
	}
	gets := f.Calls(faulty.OpGet)
	if err := create(s, "manifest", "same"); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("plain second create = %v", err)
	}
	if f.Calls(faulty.OpGet) != gets || f.Calls(faulty.OpCreate) != 2 {
		t.Fatalf("an unambiguous ErrAlreadyExists was compared or retried")
	}

	// The comparison itself fails transiently: the Create is retried and
	// the comparison made again.
	f = faulty.New(mem.New())
	f.AddFault(faulty.OpCreate, faulty.Fault{After: true, Err: faulty.ErrInjected})
	f.AddFault(faulty.OpGet, faulty.Fault{Err: faulty.ErrInjected})
	s = newRetry(t, f, fastConfig())
	if err := create(s, "manifest", "mine"); err != nil {
		t.Fatalf("create with a failing comparison: %v", err)
	}
	if f.Calls(faulty.OpCreate) != 3 {
		t.Fatalf("%d create attempts, want 3", f.Calls(faulty.OpCreate))
	}
}

func TestListResumesWithoutDuplicates(t *testing.T) {
	inner := mem.New()
	for i := range 10 {
		if err := put(context.Background(), inner, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	f := faulty.New(inner)
	// The first listing reaches fn completely and then fails; the second
	// fails before anything; the third works.
	f.AddFault(faulty.OpList, faulty.Fault{After: true, Err: faulty.ErrInjected})
	f.AddFault(faulty.OpList, faulty.Fault{Err: faulty.ErrInjected})
	s := newRetry(t, f, fastConfig())
	var keys []string
	if err := s.List(context.Background(), "", func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[k0 k1 k2 k3 k4 k5 k6 k7 k8 k9]" || f.Calls(faulty.OpList) != 3 {
		t.Fatalf("fn saw %v in %d listings", keys, f.Calls(faulty.OpList))
	}

	// fn's own error is never retried.
	errStop := errors.New("stop")
	err := s.List(context.Background(), "", func(storage.ObjectInfo) error { return errStop })
	if err != errStop || f.Calls(faulty.OpList) != 4 {
		t.Fatalf("list = %v after %d listings", err, f.Calls(faulty.OpList))
	}
}

// TestOutageRecovers: the store goes away for a few attempts and comes
// back; the call succeeds within its budget.
func TestOutageRecovers(t *testing.T) {
	f := faulty.New(mem.New())
	f.SetOutage(true)
	cfg := fastConfig()
	cfg.OnRetry = func(_ string, attempt int, _ error) {
		if attempt == 3 {
			f.SetOutage(false)
		}
	}
	s := newRetry(t, f, cfg)
	if err := put(context.Background(), s, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if f.Calls(faulty.OpPut) != 4 {
		t.Fatalf("%d attempts, want 4", f.Calls(faulty.OpPut))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := retry.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	err := retry.Config{Jitter: 2, InitialBackoff: time.Second, MaxBackoff: time.Millisecond}.Validate()
	if err == nil {
		t.Fatal("zero config accepted")
	}
	for _, field := range []string{"max_attempts", "max_elapsed", "max_backoff", "multiplier", "jitter"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate did not report %s: %v", field, err)
		}
	}
	if _, err := retry.New(mem.New(), retry.Config{}, nil); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}
