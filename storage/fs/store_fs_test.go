package fs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/storage"
	"github.com/hangar-vm/hangar/storage/fs"
	"github.com/hangar-vm/hangar/storage/storetest"
)

func open(t *testing.T, dir string) *fs.Store {
	t.Helper()
	s, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		dir := t.TempDir()
		s := open(t, dir)
		// Whatever the suite did, no temporary file may survive it.
		t.Cleanup(func() {
			if tmp := tempFiles(t, dir); len(tmp) > 0 {
				t.Errorf("temporary files left behind: %q", tmp)
			}
		})
		return s
	})
}

// tempFiles returns every file under dir whose name is not a valid key
// segment: temporary files, or anything else the store should not create.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, de iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && storage.ValidateKey(de.Name()) != nil {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenCreatesRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := open(t, dir)
	if err := s.Put(context.Background(), "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "k")); err != nil || string(b) != "v" {
		t.Fatalf("object file = %q, %v", b, err)
	}
	if _, err := fs.Open(""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
}

// failingReader yields some bytes, then an error, like a disk that fails.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func (f *failingReader) Seek(int64, int) (int64, error) { return 0, nil }

func TestNoTempFilesAfterFailures(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	if err := s.Put(ctx, "a/b", &failingReader{n: 1000}, 5000); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	if err := s.Create(ctx, "a/c", &failingReader{n: 10}, 5000); err == nil {
		t.Fatal("Create with a failing reader succeeded")
	}
	if err := s.Put(ctx, "a/d", strings.NewReader("short"), 10); err == nil {
		t.Fatal("Put with a short reader succeeded")
	}
	if err := s.Put(ctx, "a/e", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "a/e", strings.NewReader("y"), 1); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("Create over existing = %v", err)
	}
	// A parent that is an object: a clear error, nothing left.
	if err := s.Put(ctx, "a/e/f", strings.NewReader("z"), 1); err == nil {
		t.Fatal("Put below an object succeeded")
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Fatalf("temporary files left after failed writes: %q", tmp)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "a"))
	if len(entries) != 1 || entries[0].Name() != "e" {
		t.Fatalf("directory a holds %v, want only e", entries)
	}
}

// TestCrashedWriterLeftovers plants what a writer killed mid-write leaves
// (a temporary file next to the key, and one in a directory of its own) and
// checks that the store ignores it and RemoveStaleTemp cleans it up.
func TestCrashedWriterLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	if err := s.Put(ctx, "snap/manifest.json", strings.NewReader("{}"), 2); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "chunks", "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	stale := []string{
		filepath.Join(dir, "snap", "~tmp-0123456789abcdef"),
		filepath.Join(dir, "chunks", "ab", "~tmp-fedcba9876543210"),
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range stale {
		if err := os.WriteFile(p, []byte("half a manifest"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	fresh := filepath.Join(dir, "snap", "~tmp-1111111111111111")
	if err := os.WriteFile(fresh, []byte("in flight"), 0o644); err != nil {
		t.Fatal(err)
	}

	var keys []string
	if err := s.List(ctx, "", func(oi storage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"snap/manifest.json"}) {
		t.Fatalf("List = %q, want only the committed object", keys)
	}
	if _, err := s.Stat(ctx, "chunks/ab"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat of a directory with only a temp file = %v", err)
	}
	// A new write next to the leftovers works and is not confused by them.
	if err := s.Create(ctx, "snap/other", strings.NewReader("ok"), 2); err != nil {
		t.Fatal(err)
	}

	n, err := s.RemoveStaleTemp(ctx, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(stale) {
		t.Fatalf("RemoveStaleTemp removed %d files, want %d", n, len(stale))
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !errors.Is(err, iofs.ErrNotExist) {
			t.Errorf("stale %s still there: %v", p, err)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("RemoveStaleTemp removed a fresh temporary file (a write in progress): %v", err)
	}
}

// TestNoEscape plants symlinks that point out of the root: os.Root refuses
// to follow them, so no key reaches a file outside.
func TestNoEscape(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("do not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := open(t, dir)
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "file")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"link/secret", "file"} {
		if rc, err := s.Get(ctx, key, 0, -1); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			t.Errorf("Get(%q) read %q from outside the root", key, b)
		}
	}
	// Put onto the name of a symlink replaces the link (rename does not
	// follow it); through a linked directory it is refused.
	if err := s.Put(ctx, "file", strings.NewReader("overwritten"), 11); err != nil {
		t.Errorf("Put(file) over a symlink: %v", err)
	}
	if err := s.Put(ctx, "link/secret", strings.NewReader("overwritten"), 11); err == nil {
		t.Error("Put(link/secret) succeeded through a symlink out of the root")
	}
	if err := s.Put(ctx, "link/new", strings.NewReader("x"), 1); err == nil {
		t.Error("Put(link/new) succeeded through a symlink out of the root")
	}
	if b, _ := os.ReadFile(secret); string(b) != "do not read" {
		t.Fatalf("file outside the root changed: %q", b)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Fatalf("outside directory now holds %d entries", len(entries))
	}
}

// TestCreateRaceTwoStores races Creates through two Store values on one
// root, as two host daemons sharing a directory would.
func TestCreateRaceTwoStores(t *testing.T) {
	dir := t.TempDir()
	stores := []*fs.Store{open(t, dir), open(t, dir)}
	const rounds, writers = 20, 8
	for round := range rounds {
		key := fmt.Sprintf("snapshots/s%d/manifest.json", round)
		errs := make([]error, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
				<-start
				errs[i] = stores[i%2].Create(context.Background(), key, bytes.NewReader(body), int64(len(body)))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both won", round, winner, i)
				}
				winner = i
			} else if !errors.Is(err, storage.ErrAlreadyExists) {
				t.Fatalf("round %d: writer %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody won", round)
		}
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + winner)}, 1000+winner)) {
			t.Fatalf("round %d: stored %d bytes (%v), want writer %d's", round, len(got), err, winner)
		}
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Fatalf("temporary files left: %q", tmp)
	}
}

const helperEnv = "HANGAR_FS_CREATE_HELPER"

// TestCreateRaceProcesses races Creates from separate processes (this test
// binary re-executed) on one root: link(2) decides across processes.
func TestCreateRaceProcesses(t *testing.T) {
	if v := os.Getenv(helperEnv); v != "" {
		createHelper(t, v)
		return
	}
	dir := t.TempDir()
	const procs = 3
	cmds := make([]*exec.Cmd, procs)
	outs := make([]bytes.Buffer, procs)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCreateRaceProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d", helperEnv, dir, i))
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
		}
	}
	// Each helper printed "won <key>" lines; every key has exactly one
	// winner and holds that winner's bytes.
	winners := map[string]int{}
	for i := range procs {
		for _, line := range strings.Split(outs[i].String(), "\n") {
			key, ok := strings.CutPrefix(line, "won ")
			if !ok {
				continue
			}
			if w, dup := winners[key]; dup {
				t.Fatalf("%s won by helpers %d and %d", key, w, i)
			}
			winners[key] = i
		}
	}
	if len(winners) != helperKeys {
		t.Fatalf("%d keys have a winner, want %d", len(winners), helperKeys)
	}
	for key, w := range winners {
		got, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil || string(got) != helperBody(w) {
			t.Fatalf("%s holds %q (%v), want helper %d's body", key, got, err, w)
		}
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Fatalf("temporary files left: %q", tmp)
	}
}

const helperKeys = 200

func helperBody(i int) string { return strings.Repeat("helper-"+strconv.Itoa(i)+";", 100) }

func createHelper(t *testing.T, arg string) {
	dir, idx, _ := strings.Cut(arg, "|")
	i, _ := strconv.Atoi(idx)
	s := open(t, dir)
	body := helperBody(i)
	for k := range helperKeys {
		key := fmt.Sprintf("k%03d", k)
		err := s.Create(context.Background(), key, strings.NewReader(body), int64(len(body)))
		switch {
		case err == nil:
			fmt.Printf("won %s\n", key)
		case errors.Is(err, storage.ErrAlreadyExists):
		default:
			t.Fatalf("Create(%s): %v", key, err)
		}
	}
}
