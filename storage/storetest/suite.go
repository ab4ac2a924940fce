package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage"
)

// Run runs the whole conformance suite against the stores newStore makes.
// Every subtest gets its own fresh, empty store.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"GetRange", testGetRange},
		{"NotFound", testNotFound},
		{"PutOverwrites", testPutOverwrites},
		{"PutOverwriteIsAtomic", testPutOverwriteIsAtomic},
		{"Create", testCreate},
		{"CreateRace", testCreateRace},
		{"Stat", testStat},
		{"List", testList},
		{"ListMany", testListMany},
		{"ListStopsOnError", testListStopsOnError},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"CancelledContext", testCancelledContext},
		{"CancelDuringPut", testCancelDuringPut},
		{"ShortReader", testShortReader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if keys := listKeys(t, s, ""); len(keys) != 0 {
				t.Fatalf("newStore returned a store that is not empty: %d keys, first %q", len(keys), keys[0])
			}
			tc.fn(t, s)
		})
	}
}

// randBytes returns n deterministic pseudo-random bytes for seed.
func randBytes(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func put(t *testing.T, s storage.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func getRange(s storage.Store, key string, off, length int64) ([]byte, error) {
	rc, err := s.Get(context.Background(), key, off, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return b, err
}

func get(t *testing.T, s storage.Store, key string) []byte {
	t.Helper()
	b, err := getRange(s, key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}

func wantContent(t *testing.T, s storage.Store, key string, want []byte) {
	t.Helper()
	got := get(t, s, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes (%.16x...), want %d bytes (%.16x...)", key, len(got), got, len(want), want)
	}
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info.Size != int64(len(want)) {
		t.Fatalf("Stat(%q).Size = %d, want %d", key, info.Size, len(want))
	}
}

func wantAbsent(t *testing.T, s storage.Store, key string) {
	t.Helper()
	if info, err := s.Stat(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%q) = %+v, %v; want ErrNotFound", key, info, err)
	}
	rc, err := s.Get(context.Background(), key, 0, -1)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = %v; want ErrNotFound from Get itself", key, err)
	}
}

func listInfos(t *testing.T, s storage.Store, prefix string) []storage.ObjectInfo {
	t.Helper()
	var infos []storage.ObjectInfo
	err := s.List(context.Background(), prefix, func(oi storage.ObjectInfo) error {
		infos = append(infos, oi)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return infos
}

func listKeys(t *testing.T, s storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for _, oi := range listInfos(t, s, prefix) {
		keys = append(keys, oi.Key)
	}
	return keys
}

func testRoundTrip(t *testing.T, s storage.Store) {
	sizes := []int{0, 1, 4095, 1 << 20, 12<<20 + 7}
	for i, n := range sizes {
		key := fmt.Sprintf("round/trip-%d", n)
		data := randBytes(uint64(i), n)
		put(t, s, key, data)
		wantContent(t, s, key, data)
	}
	// Every byte class a key may hold, and a segment starting with a dot.
	key := "Up_and.down-09/.dot/x"
	put(t, s, key, []byte("odd key"))
	wantContent(t, s, key, []byte("odd key"))

	// Put reads from the reader's current position, not from its start.
	r := bytes.NewReader([]byte("skip-kept"))
	if _, err := r.Seek(5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), "round/seeked", r, 4); err != nil {
		t.Fatalf("Put from offset 5: %v", err)
	}
	wantContent(t, s, "round/seeked", []byte("kept"))
}

func testGetRange(t *testing.T, s storage.Store) {
	data := randBytes(7, 1000)
	put(t, s, "range/obj", data)
	put(t, s, "range/empty", nil)
	ok := []struct {
		key         string
		off, length int64
		want        []byte
	}{
		{"range/obj", 0, -1, data},
		{"range/obj", 0, 1000, data},
		{"range/obj", 0, 1, data[:1]},
		{"range/obj", 10, 20, data[10:30]},
		{"range/obj", 10, -1, data[10:]},
		{"range/obj", 999, 1, data[999:]},
		{"range/obj", 999, -1, data[999:]},
		{"range/obj", 500, 0, nil},
		{"range/obj", 0, 0, nil},
		{"range/obj", 1000, 0, nil},
		{"range/obj", 1000, -1, nil},
		{"range/empty", 0, -1, nil},
		{"range/empty", 0, 0, nil},
	}
	for _, tc := range ok {
		got, err := getRange(s, tc.key, tc.off, tc.length)
		if err != nil {
			t.Errorf("Get(%q, %d, %d): %v", tc.key, tc.off, tc.length, err)
			continue
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("Get(%q, %d, %d) = %d bytes, want %d bytes", tc.key, tc.off, tc.length, len(got), len(tc.want))
		}
	}
	bad := []struct {
		key         string
		off, length int64
	}{
		{"range/obj", 1001, -1},
		{"range/obj", 1001, 0},
		{"range/obj", 990, 20},
		{"range/obj", 0, 1001},
		{"range/obj", 2000, 10},
		{"range/obj", -1, 5},
		{"range/empty", 0, 1},
		{"range/empty", 1, -1},
	}
	for _, tc := range bad {
		got, err := getRange(s, tc.key, tc.off, tc.length)
		if err == nil {
			t.Errorf("Get(%q, %d, %d) = %d bytes, nil error; want an error for a range past the end", tc.key, tc.off, tc.length, len(got))
		} else if errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q, %d, %d) = %v; a bad range of an existing object is not ErrNotFound", tc.key, tc.off, tc.length, err)
		} else if !errors.Is(err, storage.ErrInvalidRange) {
			t.Errorf("Get(%q, %d, %d) = %v; want an error wrapping ErrInvalidRange", tc.key, tc.off, tc.length, err)
		}
	}
}

func testNotFound(t *testing.T, s storage.Store) {
	wantAbsent(t, s, "missing")
	wantAbsent(t, s, "missing/deeper/still")
	rc, err := s.Get(context.Background(), "missing", 10, 5)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ranged Get of a missing key = %v, want ErrNotFound", err)
	}
	// A directory-like prefix of a stored key is not an object.
	put(t, s, "dir/sub/obj", []byte("x"))
	wantAbsent(t, s, "dir")
	wantAbsent(t, s, "dir/sub")
	wantAbsent(t, s, "dir/sub/obj/below")
	wantAbsent(t, s, "dir/su")
}

func testPutOverwrites(t *testing.T, s storage.Store) {
	long, short := randBytes(1, 5000), randBytes(2, 10)
	put(t, s, "over/key", long)
	put(t, s, "over/key", short)
	wantContent(t, s, "over/key", short)
	put(t, s, "over/key", long)
	wantContent(t, s, "over/key", long)
	put(t, s, "over/key", nil)
	wantContent(t, s, "over/key", nil)
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"over/key"}) {
		t.Fatalf("after overwrites List = %q, want exactly [over/key]", keys)
	}
}

// testPutOverwriteIsAtomic reads a key while it is being overwritten: every
// read sees one whole version, never a mix or a truncated object.
func testPutOverwriteIsAtomic(t *testing.T, s storage.Store) {
	a, b := randBytes(3, 256<<10), randBytes(4, 100<<10)
	put(t, s, "atomic/key", a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		for i := range 20 {
			v := a
			if i%2 == 0 {
				v = b
			}
			if err := s.Put(context.Background(), "atomic/key", bytes.NewReader(v), int64(len(v))); err != nil {
				writeErr = err
				return
			}
		}
	}()
	reads := 0
	for ctx.Err() == nil || reads == 0 {
		got := get(t, s, "atomic/key")
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read %d during overwrites returned %d bytes matching neither version", reads, len(got))
		}
		reads++
	}
	wg.Wait()
	if writeErr != nil {
		t.Fatalf("Put during concurrent reads: %v", writeErr)
	}
	wantContent(t, s, "atomic/key", a)
}

func testCreate(t *testing.T, s storage.Store) {
	ctx := context.Background()
	first, second := []byte("first version"), []byte("second, longer version")
	if err := s.Create(ctx, "create/key", bytes.NewReader(first), int64(len(first))); err != nil {
		t.Fatalf("Create on an absent key: %v", err)
	}
	wantContent(t, s, "create/key", first)
	err := s.Create(ctx, "create/key", bytes.NewReader(second), int64(len(second)))
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("Create on a present key = %v, want ErrAlreadyExists", err)
	}
	wantContent(t, s, "create/key", first)
	// Same bytes again: still ErrAlreadyExists (Create is not idempotent by itself).
	err = s.Create(ctx, "create/key", bytes.NewReader(first), int64(len(first)))
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("second Create with identical bytes = %v, want ErrAlreadyExists", err)
	}
	// A key written by Put is present for Create too.
	put(t, s, "create/put", first)
	err = s.Create(ctx, "create/put", bytes.NewReader(second), int64(len(second)))
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("Create over a Put object = %v, want ErrAlreadyExists", err)
	}
	wantContent(t, s, "create/put", first)
	// After Delete the key is absent again.
	if err := s.Delete(ctx, "create/key"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Create(ctx, "create/key", bytes.NewReader(second), int64(len(second))); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	wantContent(t, s, "create/key", second)
	// Empty objects can be created too.
	if err := s.Create(ctx, "create/empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("Create of an empty object: %v", err)
	}
	wantContent(t, s, "create/empty", nil)
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"create/empty", "create/key", "create/put"}) {
		t.Fatalf("List after Creates = %q", keys)
	}
}

// testCreateRace: among concurrent Creates of one key exactly one wins and
// the stored bytes are the winner's.
func testCreateRace(t *testing.T, s storage.Store) {
	const n = 16
	for round := range 3 {
		key := fmt.Sprintf("race/commit-%d", round)
		bodies := make([][]byte, n)
		for i := range bodies {
			// Different content and different lengths, so a mix is detectable.
			bodies[i] = randBytes(uint64(100*round+i), 4096+i*977)
		}
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = s.Create(context.Background(), key, bytes.NewReader(bodies[i]), int64(len(bodies[i])))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: Creates %d and %d both succeeded", round, winner, i)
				}
				winner = i
			case errors.Is(err, storage.ErrAlreadyExists):
			default:
				t.Fatalf("round %d: Create %d: %v; want nil or ErrAlreadyExists", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no Create succeeded", round)
		}
		wantContent(t, s, key, bodies[winner])
	}
}

func testStat(t *testing.T, s storage.Store) {
	// Object stores keep modification times in whole seconds.
	before := time.Now().Add(-2 * time.Second)
	put(t, s, "stat/obj", randBytes(9, 1234))
	after := time.Now().Add(2 * time.Second)
	info, err := s.Stat(context.Background(), "stat/obj")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != "stat/obj" || info.Size != 1234 {
		t.Fatalf("Stat = %+v, want key stat/obj, size 1234", info)
	}
	if info.ModTime.Before(before) || info.ModTime.After(after) {
		t.Fatalf("Stat.ModTime = %v, want between %v and %v", info.ModTime, before, after)
	}
	put(t, s, "stat/empty", nil)
	if info, err := s.Stat(context.Background(), "stat/empty"); err != nil || info.Size != 0 || info.ModTime.IsZero() {
		t.Fatalf("Stat of an empty object = %+v, %v", info, err)
	}
}

func testList(t *testing.T, s storage.Store) {
	// No key is another key's directory (a local directory cannot hold a
	// file and a directory of one name), but the set mixes bytes that sort
	// before and after '/', so a naive directory walk gets the order wrong.
	keys := []string{
		"x-1", "x.y", "x/a", "x/b/c", "x/b/d", "x/b-e", "x/ba", "x0", "xa",
		"y/z/w", "z", ".h/x", "A/b", "x/b.f/g",
	}
	sizes := map[string]int64{}
	for i, k := range keys {
		data := randBytes(uint64(i), i*10)
		put(t, s, k, data)
		sizes[k] = int64(len(data))
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	prefixes := []string{"", "x", "x/", "x/b", "x/b/", "x/b/c", "x/b.", "y/z/", "y/z/w", "q", "x/b/c/", "z", "A", "a", ".h/"}
	for _, p := range prefixes {
		var want []string
		for _, k := range sorted {
			if strings.HasPrefix(k, p) {
				want = append(want, k)
			}
		}
		infos := listInfos(t, s, p)
		var got []string
		for _, oi := range infos {
			got = append(got, oi.Key)
			if oi.Size != sizes[oi.Key] {
				t.Errorf("List(%q): %q has size %d, want %d", p, oi.Key, oi.Size, sizes[oi.Key])
			}
			if oi.ModTime.IsZero() {
				t.Errorf("List(%q): %q has a zero ModTime", p, oi.Key)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(%q) =\n  %q\nwant\n  %q", p, got, want)
		}
	}
}

func testListMany(t *testing.T, s storage.Store) {
	// More than one S3 listing page (1000 keys).
	const n = 1500
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("many/k%04d", i)
	}
	// Write concurrently so that a remote store does not take minutes.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.Put(context.Background(), k, strings.NewReader(k), int64(len(k))); err != nil {
				errs <- fmt.Errorf("Put(%q): %w", k, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	put(t, s, "manz", []byte("after"))
	put(t, s, "man", []byte("before"))

	got := listKeys(t, s, "many/")
	if !slices.Equal(got, keys) {
		t.Fatalf("List(many/) returned %d keys, want %d in order (first %q, last %q)", len(got), n, first(got), last(got))
	}
	got = listKeys(t, s, "")
	want := append(append([]string{"man"}, keys...), "manz")
	if !slices.Equal(got, want) {
		t.Fatalf("List(\"\") returned %d keys, want %d in order", len(got), len(want))
	}
	got = listKeys(t, s, "many/k1")
	if !slices.Equal(got, keys[1000:]) {
		t.Fatalf("List(many/k1) returned %d keys, want %d (first %q, last %q)", len(got), n-1000, first(got), last(got))
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func testListStopsOnError(t *testing.T, s storage.Store) {
	for i := range 10 {
		put(t, s, fmt.Sprintf("stop/%02d", i), []byte{byte(i)})
	}
	errStop := errors.New("enough")
	var seen []string
	err := s.List(context.Background(), "stop/", func(oi storage.ObjectInfo) error {
		seen = append(seen, oi.Key)
		if len(seen) == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("List = %v, want fn's error", err)
	}
	if !slices.Equal(seen, []string{"stop/00", "stop/01", "stop/02"}) {
		t.Fatalf("fn saw %q, want the first three keys and no more", seen)
	}
}

func testDelete(t *testing.T, s storage.Store) {
	ctx := context.Background()
	put(t, s, "del/a", []byte("a"))
	put(t, s, "del/ab", []byte("ab"))
	put(t, s, "del/a-c/d", []byte("d"))
	if err := s.Delete(ctx, "del/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, s, "del/a")
	wantContent(t, s, "del/ab", []byte("ab"))
	wantContent(t, s, "del/a-c/d", []byte("d"))
	if err := s.Delete(ctx, "del/a"); err != nil {
		t.Fatalf("second Delete of the same key: %v", err)
	}
	if err := s.Delete(ctx, "del/never/was"); err != nil {
		t.Fatalf("Delete of a key that never existed: %v", err)
	}
	// A directory-like prefix is not an object: deleting it removes nothing.
	if err := s.Delete(ctx, "del/a-c"); err != nil {
		t.Fatalf("Delete of a prefix: %v", err)
	}
	wantContent(t, s, "del/a-c/d", []byte("d"))
	if err := s.Delete(ctx, "del/a-c/d"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"del/ab"}) {
		t.Fatalf("List after Deletes = %q, want [del/ab]", keys)
	}
	// A deleted key can be written again.
	put(t, s, "del/a-c/d", []byte("again"))
	wantContent(t, s, "del/a-c/d", []byte("again"))
}

// InvalidKeys lists keys that every method must refuse with ErrInvalidKey.
var InvalidKeys = []string{
	"", "../x", "..", ".", "/abs", "a//b", "a/./b", "a/../b", "a/..", "a/",
	"/", "é", "a/é", "a b", `a\b`, "a\x00b", "a\nb", "a:b", "a?b", "a%2fb",
	"~tmp", strings.Repeat("k", storage.MaxKeyLen+1),
}

// untouchable is a reader that fails the test when it is read or seeked.
type untouchable struct{ t *testing.T }

func (u untouchable) Read([]byte) (int, error) {
	u.t.Errorf("the body of a call with an invalid key was read")
	return 0, io.EOF
}

func (u untouchable) Seek(int64, int) (int64, error) {
	u.t.Errorf("the body of a call with an invalid key was seeked")
	return 0, nil
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	put(t, s, "x", []byte("keep"))
	put(t, s, "a/b", []byte("keep"))
	for _, key := range InvalidKeys {
		rc, err := s.Get(ctx, key, 0, -1)
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Put(ctx, key, untouchable{t}, 4); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Create(ctx, key, untouchable{t}, 4); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Create(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	for _, prefix := range []string{"/", "/abs", "../", "..", "a//", "a/../", "é", "a b/", "a//b"} {
		err := s.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			t.Errorf("List(%q) called fn with %q", prefix, oi.Key)
			return nil
		})
		if !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("List(%q) = %v, want ErrInvalidKey", prefix, err)
		}
	}
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"a/b", "x"}) {
		t.Fatalf("after calls with invalid keys List = %q, want [a/b x]", keys)
	}
	wantContent(t, s, "x", []byte("keep"))
	wantContent(t, s, "a/b", []byte("keep"))
}

func testCancelledContext(t *testing.T, s storage.Store) {
	put(t, s, "cancel/present", []byte("present"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(method string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want an error wrapping context.Canceled", method, err)
		}
	}
	rc, err := s.Get(ctx, "cancel/present", 0, -1)
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	check("Get", err)
	check("Put", s.Put(ctx, "cancel/new", strings.NewReader("new"), 3))
	check("Put over", s.Put(ctx, "cancel/present", strings.NewReader("new"), 3))
	check("Create", s.Create(ctx, "cancel/created", strings.NewReader("new"), 3))
	_, err = s.Stat(ctx, "cancel/present")
	check("Stat", err)
	calls := 0
	check("List", s.List(ctx, "", func(storage.ObjectInfo) error { calls++; return nil }))
	if calls != 0 {
		t.Errorf("List with a cancelled context called fn %d times", calls)
	}
	check("Delete", s.Delete(ctx, "cancel/present"))

	wantAbsent(t, s, "cancel/new")
	wantAbsent(t, s, "cancel/created")
	wantContent(t, s, "cancel/present", []byte("present"))
}

// cancellingReader cancels its context once it has handed out after bytes,
// then keeps producing data, as a slow disk would.
type cancellingReader struct {
	r      io.ReadSeeker
	after  int64
	read   int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.read >= c.after {
		c.cancel()
	}
	if len(p) > 32<<10 {
		p = p[:32<<10]
	}
	n, err := c.r.Read(p)
	c.read += int64(n)
	return n, err
}

func (c *cancellingReader) Seek(off int64, whence int) (int64, error) {
	return c.r.Seek(off, whence)
}

func testCancelDuringPut(t *testing.T, s storage.Store) {
	old := []byte("old version")
	put(t, s, "cancel/put", old)
	body := randBytes(11, 8<<20)
	for _, method := range []string{"Put", "Create"} {
		ctx, cancel := context.WithCancel(context.Background())
		r := &cancellingReader{r: bytes.NewReader(body), after: 64 << 10, cancel: cancel}
		var err error
		key := "cancel/put"
		if method == "Put" {
			err = s.Put(ctx, key, r, int64(len(body)))
		} else {
			key = "cancel/create"
			err = s.Create(ctx, key, r, int64(len(body)))
		}
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s cancelled while reading its body = %v, want an error wrapping context.Canceled", method, err)
		}
		if method == "Put" {
			wantContent(t, s, key, old)
		} else {
			wantAbsent(t, s, key)
		}
	}
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"cancel/put"}) {
		t.Fatalf("after cancelled writes List = %q, want [cancel/put]", keys)
	}
}

func testShortReader(t *testing.T, s storage.Store) {
	ctx := context.Background()
	data := randBytes(12, 100)
	if err := s.Put(ctx, "short/new", bytes.NewReader(data[:50]), 100); err == nil {
		t.Errorf("Put with a reader shorter than size succeeded")
	}
	wantAbsent(t, s, "short/new")

	put(t, s, "short/old", data)
	if err := s.Put(ctx, "short/old", bytes.NewReader([]byte("tiny")), 100); err == nil {
		t.Errorf("Put over an object with a short reader succeeded")
	}
	wantContent(t, s, "short/old", data)

	if err := s.Create(ctx, "short/created", bytes.NewReader(data[:50]), 100); err == nil {
		t.Errorf("Create with a reader shorter than size succeeded")
	} else if errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("Create with a short reader = %v, must not claim the key exists", err)
	}
	wantAbsent(t, s, "short/created")
	// The failed Create left nothing behind that blocks the next one.
	if err := s.Create(ctx, "short/created", bytes.NewReader(data), 100); err != nil {
		t.Fatalf("Create after a failed Create: %v", err)
	}
	wantContent(t, s, "short/created", data)
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"short/created", "short/old"}) {
		t.Fatalf("after short writes List = %q", keys)
	}
}
