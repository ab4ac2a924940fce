package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hangar-vm/hangar/storage"
)

var _ storage.Store = (*Store)(nil)

// Op names a Store method.
type Op string

// The operations faults can be attached to.
const (
	OpGet    Op = "get"
	OpPut    Op = "put"
	OpCreate Op = "create"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
)

// Ops lists every operation.
var Ops = []Op{OpGet, OpPut, OpCreate, OpStat, OpList, OpDelete}

var (
	// ErrInjected is wrapped by every error this package makes up.
	ErrInjected = errors.New("injected fault")
	// ErrOutage is returned by every call while the outage switch is on.
	ErrOutage = fmt.Errorf("store unavailable: %w", ErrInjected)
)

// Fault is one injected misbehaviour.
type Fault struct {
	// Skip lets this many calls pass untouched before the fault applies.
	Skip int
	// Times is how many calls the fault applies to: 0 means once, a
	// negative number means every call from then on.
	Times int
	// Delay is waited before the call (cut short by the caller's context).
	Delay time.Duration
	// Err is returned by the call. Nil means the call only waits Delay and
	// then goes through.
	Err error
	// After performs the call on the wrapped store first and returns Err
	// anyway: the write happened but the caller cannot know it.
	After bool
}

// Store is a fault-injecting wrapper. It is safe for concurrent use,
// including changing faults while calls are running.
type Store struct {
	inner storage.Store

	mu     sync.Mutex
	faults map[Op][]*Fault
	calls  map[Op]int
	outage bool
	rate   float64
	rng    *rand.Rand
}

// New wraps inner; until faults are added it passes every call through.
func New(inner storage.Store) *Store {
	return &Store{inner: inner, faults: map[Op][]*Fault{}, calls: map[Op]int{}}
}

// AddFault queues f for op. Faults of one op apply one after the other.
func (s *Store) AddFault(op Op, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[op] = append(s.faults[op], &f)
}

// FailNth makes the nth call of op from now on (1 = the next one) fail
// with err, or with ErrInjected if err is nil.
func (s *Store) FailNth(op Op, n int, err error) {
	if err == nil {
		err = fmt.Errorf("%s call %d: %w", op, n, ErrInjected)
	}
	s.AddFault(op, Fault{Skip: n - 1, Err: err})
}

// SetOutage switches the outage on (every call fails with ErrOutage
// without reaching the wrapped store) or off.
func (s *Store) SetOutage(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = down
}

// SetRandomFaults makes each call fail with probability rate with a
// transient error wrapping ErrInjected; half of those failures happen after
// the call took effect. Queued faults and the outage switch come first.
// The sequence is reproducible for a seed (given the same call order).
func (s *Store) SetRandomFaults(rate float64, seed uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rate = rate
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Calls returns how many calls of op reached this wrapper.
func (s *Store) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Pending returns how many queued faults of op have not been used up.
func (s *Store) Pending(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults[op])
}

// plan is what happens to one call.
type plan struct {
	delay time.Duration
	err   error
	after bool
}

func (s *Store) next(op Op) plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	if s.outage {
		return plan{err: fmt.Errorf("%s: %w", op, ErrOutage)}
	}
	if q := s.faults[op]; len(q) > 0 {
		f := q[0]
		if f.Skip > 0 {
			f.Skip--
			return plan{}
		}
		if f.Times >= 0 {
			if f.Times <= 1 {
				s.faults[op] = q[1:]
			} else {
				f.Times--
			}
		}
		return plan{delay: f.Delay, err: f.Err, after: f.After}
	}
	if s.rate > 0 && s.rng.Float64() < s.rate {
		after := s.rng.IntN(2) == 0
		return plan{err: fmt.Errorf("random %s fault (after=%v): %w", op, after, ErrInjected), after: after}
	}
	return plan{}
}

// before waits the plan's delay and returns the error to fail with before
// the call, if any.
func (p plan) before(ctx context.Context) error {
	if p.delay > 0 {
		t := time.NewTimer(p.delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	if !p.after {
		return p.err
	}
	return nil
}

// Get implements storage.Getter.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	p := s.next(OpGet)
	if err := p.before(ctx); err != nil {
		return nil, err
	}
	rc, err := s.inner.Get(ctx, key, offset, length)
	if err == nil && p.err != nil {
		rc.Close()
		return nil, p.err
	}
	return rc, err
}

// Put implements storage.Putter.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	p := s.next(OpPut)
	if err := p.before(ctx); err != nil {
		return err
	}
	if err := s.inner.Put(ctx, key, r, size); err != nil {
		return err
	}
	return p.err
}

// Create implements storage.Creator.
func (s *Store) Create(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	p := s.next(OpCreate)
	if err := p.before(ctx); err != nil {
		return err
	}
	if err := s.inner.Create(ctx, key, r, size); err != nil {
		return err
	}
	return p.err
}

// Stat implements storage.Stater.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	p := s.next(OpStat)
	if err := p.before(ctx); err != nil {
		return storage.ObjectInfo{}, err
	}
	oi, err := s.inner.Stat(ctx, key)
	if err == nil && p.err != nil {
		return storage.ObjectInfo{}, p.err
	}
	return oi, err
}

// List implements storage.Lister. With an After fault the whole listing
// reaches fn before the error is returned.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	p := s.next(OpList)
	if err := p.before(ctx); err != nil {
		return err
	}
	if err := s.inner.List(ctx, prefix, fn); err != nil {
		return err
	}
	return p.err
}

// Delete implements storage.Deleter.
func (s *Store) Delete(ctx context.Context, key string) error {
	p := s.next(OpDelete)
	if err := p.before(ctx); err != nil {
		return err
	}
	if err := s.inner.Delete(ctx, key); err != nil {
		return err
	}
	return p.err
}
