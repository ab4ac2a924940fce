package manager

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/compression"
	"github.com/hangar-vm/hangar/internal/memtest"
)

func TestConfigValidate(t *testing.T) {
	long := "/" + strings.Repeat("x", MaxDataDirLen)
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{"defaults", Config{DataDir: "/var/lib/hangar"}, nil},
		{"everything wrong", Config{
			DataDir:            "relative",
			CompressionDefault: &compression.Policy{Algorithm: "gzip"},
			UploadConcurrency:  -1,
			UploadRetry:        Backoff{Initial: time.Minute, Max: time.Second, Multiplier: 0.5, MaxAttempts: -2},
			BootTimeout:        -time.Second,
		}, []string{"not absolute", "gzip", "upload concurrency", "initial 1m0s and max 1s", "multiplier", "max attempts", "boot timeout"}},
		{"data dir too long", Config{DataDir: long}, []string{"unix socket paths"}},
		{"no data dir", Config{}, []string{"data dir is required"}},
		{"bad accel", Config{DataDir: "/d", QEMU: qemuSettings("xen")}, []string{"accel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "i-123", "0abc", strings.Repeat("a", 63), newID("i"), newID("s")} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "A", "a/b", "..", "a b", "a_b", strings.Repeat("a", 64), "é"} {
		if err := ValidateID(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestTransitions(t *testing.T) {
	legal := map[[2]State]bool{
		{StateCreating, StateRunning}: true, {StateCreating, StateError}: true,
		{StateRunning, StateStandby}: true, {StateRunning, StateStopped}: true, {StateRunning, StateError}: true, {StateRunning, StateDeleted}: true,
		{StateStandby, StateRunning}: true, {StateStandby, StateError}: true, {StateStandby, StateDeleted}: true,
		{StateStopped, StateRunning}: true, {StateStopped, StateError}: true, {StateStopped, StateDeleted}: true,
		{StateError, StateDeleted}: true,
	}
	all := []State{StateCreating, StateRunning, StateStandby, StateStopped, StateError, StateDeleted}
	for _, from := range all {
		for _, to := range all {
			if got := CanTransition(from, to); got != legal[[2]State{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Second, Multiplier: 2}
	for _, tt := range []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{{1, 0, time.Second}, {2, 0, 2 * time.Second}, {4, 0, 8 * time.Second}, {5, 0, 10 * time.Second}, {50, 0, 10 * time.Second}, {1, 1, 750 * time.Millisecond}} {
		if got := b.delay(tt.attempt, tt.jitter); got != tt.want {
			t.Errorf("delay(%d, %v) = %v, want %v", tt.attempt, tt.jitter, got, tt.want)
		}
	}
}

func TestParseSetting(t *testing.T) {
	for _, s := range []compression.Setting{{Algorithm: compression.Zstd, Level: 3}, {Algorithm: compression.LZ4}, {Algorithm: compression.None}} {
		if got := parseSetting(s.String()); got != s {
			t.Errorf("parseSetting(%q) = %v", s.String(), got)
		}
	}
	if got := parseSetting("garbage"); got.Algorithm != compression.None {
		t.Errorf("parseSetting(garbage) = %v", got)
	}
}

// TestCopySparse: the copy has the same bytes and no more allocated
// blocks than the source (holes stay holes).
func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	const size = 64 << 20
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// Data at a few places, holes between, and a tail hole.
	buf := make([]byte, 3<<20)
	memtest.Fill(buf, 7, 0.3)
	for _, off := range []int64{0, 10 << 20, 33<<20 + 4096} {
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	method, err := copySparse(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("copy differs from the source")
	}
	var sa, sb unix.Stat_t
	unix.Stat(src, &sa)
	unix.Stat(dst, &sb)
	if sb.Blocks > sa.Blocks {
		t.Fatalf("copy (%s) allocates %d blocks, source %d: holes were filled", method, sb.Blocks, sa.Blocks)
	}
	t.Logf("method %s, %d of %d MiB allocated", method, sb.Blocks*512>>20, size>>20)
	if _, err := copySparse(src, dst); !errors.Is(err, os.ErrExist) {
		t.Fatalf("copy onto an existing file: %v, want ErrExist", err)
	}
}

func BenchmarkCopySparse(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	buf := make([]byte, 256<<20)
	memtest.Fill(buf, 1, 0.5)
	if err := os.WriteFile(src, buf, 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		dst := filepath.Join(dir, "dst")
		if _, err := copySparse(src, dst); err != nil {
			b.Fatal(err)
		}
		os.Remove(dst)
	}
}
