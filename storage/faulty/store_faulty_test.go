package faulty_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/faulty"
	"github.com/hangar-vm/hangar/storage/mem"
	"github.com/hangar-vm/hangar/storage/storetest"
)

// Without faults the wrapper is a transparent store.
func TestConformanceWithoutFaults(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return faulty.New(mem.New()) })
}

func put(s storage.Store, key, v string) error {
	return s.Put(context.Background(), key, strings.NewReader(v), int64(len(v)))
}

func TestFailNth(t *testing.T) {
	s := faulty.New(mem.New())
	s.FailNth(faulty.OpPut, 3, nil)
	for i := 1; i <= 5; i++ {
		err := put(s, fmt.Sprintf("k%d", i), "v")
		if (i == 3) != (err != nil) {
			t.Fatalf("put %d: err = %v", i, err)
		}
		if i == 3 && !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("put 3 error %v does not wrap ErrInjected", err)
		}
	}
	// The failed put did not reach the store.
	if _, err := s.Stat(context.Background(), "k3"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("k3 stored despite the fault: %v", err)
	}
	if s.Calls(faulty.OpPut) != 5 || s.Pending(faulty.OpPut) != 0 {
		t.Fatalf("calls %d pending %d", s.Calls(faulty.OpPut), s.Pending(faulty.OpPut))
	}
}

func TestTimesAndOrder(t *testing.T) {
	s := faulty.New(mem.New())
	errA, errB := errors.New("a"), errors.New("b")
	s.AddFault(faulty.OpStat, faulty.Fault{Times: 2, Err: errA})
	s.AddFault(faulty.OpStat, faulty.Fault{Skip: 1, Err: errB})
	want := []error{errA, errA, storage.ErrNotFound, errB, storage.ErrNotFound}
	for i, w := range want {
		if _, err := s.Stat(context.Background(), "missing"); !errors.Is(err, w) {
			t.Fatalf("stat %d = %v, want %v", i, err, w)
		}
	}
}

func TestForever(t *testing.T) {
	s := faulty.New(mem.New())
	s.AddFault(faulty.OpDelete, faulty.Fault{Times: -1, Err: faulty.ErrInjected})
	for range 10 {
		if err := s.Delete(context.Background(), "k"); !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("delete = %v", err)
		}
	}
	if s.Pending(faulty.OpDelete) != 1 {
		t.Fatal("a Times<0 fault was used up")
	}
}

func TestAfterTakesEffect(t *testing.T) {
	inner := mem.New()
	s := faulty.New(inner)
	s.AddFault(faulty.OpCreate, faulty.Fault{After: true, Err: faulty.ErrInjected})
	err := s.Create(context.Background(), "manifest", strings.NewReader("m"), 1)
	if !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("create = %v", err)
	}
	if _, err := inner.Stat(context.Background(), "manifest"); err != nil {
		t.Fatalf("an After fault must let the write happen: %v", err)
	}
	// An After fault on Get closes the reader and hands out none.
	s.AddFault(faulty.OpGet, faulty.Fault{After: true, Err: faulty.ErrInjected})
	if rc, err := s.Get(context.Background(), "manifest", 0, -1); rc != nil || !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("get = %v, %v", rc, err)
	}
}

func TestDelayHonoursContext(t *testing.T) {
	s := faulty.New(mem.New())
	s.AddFault(faulty.OpGet, faulty.Fault{Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Get(ctx, "k", 0, -1)
		done <- err
	}()
	// Wait until the call is inside the delay, then cancel it.
	for s.Calls(faulty.OpGet) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("slow get after cancel = %v", err)
	}
	// A delay without error lets the call through.
	s.AddFault(faulty.OpPut, faulty.Fault{Delay: time.Millisecond})
	if err := put(s, "k", "v"); err != nil {
		t.Fatal(err)
	}
}

func TestOutage(t *testing.T) {
	inner := mem.New()
	s := faulty.New(inner)
	if err := put(s, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.SetOutage(true)
	ctx := context.Background()
	if err := put(s, "k2", "v"); !errors.Is(err, faulty.ErrOutage) {
		t.Fatalf("put during outage = %v", err)
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, faulty.ErrOutage) {
		t.Fatalf("stat during outage = %v", err)
	}
	if err := s.List(ctx, "", func(storage.ObjectInfo) error { return nil }); !errors.Is(err, faulty.ErrOutage) {
		t.Fatalf("list during outage = %v", err)
	}
	if _, err := inner.Stat(ctx, "k2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a write during the outage reached the store: %v", err)
	}
	s.SetOutage(false)
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("stat after outage: %v", err)
	}
}

func TestRandomReproducible(t *testing.T) {
	pattern := func() string {
		s := faulty.New(mem.New())
		s.SetRandomFaults(0.3, 42)
		var b strings.Builder
		for range 200 {
			if _, err := s.Stat(context.Background(), "k"); errors.Is(err, faulty.ErrInjected) {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b := pattern(), pattern()
	if a != b {
		t.Fatal("same seed, different fault pattern")
	}
	n := strings.Count(a, "x")
	if n < 30 || n > 90 {
		t.Fatalf("%d of 200 calls failed at rate 0.3", n)
	}
}

// TestConcurrentReconfiguration is for the race detector: faults change
// while calls run.
func TestConcurrentReconfiguration(t *testing.T) {
	s := faulty.New(mem.New())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_ = put(s, fmt.Sprintf("w%d/%d", w, i), "v")
				_, _ = s.Stat(context.Background(), "w0/0")
			}
		}()
	}
	for i := range 100 {
		s.SetOutage(i%2 == 0)
		s.FailNth(faulty.OpPut, 2, nil)
		s.SetRandomFaults(0.1, uint64(i))
	}
	wg.Wait()
	if got := s.Calls(faulty.OpPut); got != 800 {
		t.Fatalf("counted %d puts, want 800", got)
	}
}
