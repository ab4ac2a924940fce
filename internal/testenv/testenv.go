// Package testenv finds the real components that hangar's tests run against
// (the MinIO server binary, QEMU, the guest kernel) where scripts/deps.sh put
// them, and fails the test loudly when one is missing.
//
// A test may skip instead only when the operator opted out explicitly with
// HANGAR_SKIP_<COMPONENT>=1 (HANGAR_SKIP_MINIO, HANGAR_SKIP_QEMU); CI never
// sets these.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CacheDir is where scripts/deps.sh caches downloads: $HANGAR_CACHE or
// ~/.cache/hangar.
func CacheDir() string {
	if d := os.Getenv("HANGAR_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "hangar-cache")
	}
	return filepath.Join(home, ".cache", "hangar")
}

// MinIOBinary returns the MinIO server binary: $HANGAR_MINIO, the cached
// build, or minio on PATH.
func MinIOBinary(t testing.TB) string {
	t.Helper()
	return find(t, "MINIO", "HANGAR_MINIO", filepath.Join(CacheDir(), "bin", "minio"), "minio")
}

// QEMUBinary returns qemu-system-x86_64.
func QEMUBinary(t testing.TB) string {
	t.Helper()
	return find(t, "QEMU", "HANGAR_QEMU", "", "qemu-system-x86_64")
}

// KernelDir returns the unpacked guest kernel: a directory holding vmlinuz,
// modules/ and release.
func KernelDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(CacheDir(), "kernel")
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz")); err != nil {
		missing(t, "QEMU", "guest kernel "+dir)
	}
	return dir
}

// Tool returns a command-line tool from PATH (zstd, lz4, ...), failing the
// test when it is missing: the README's test command installs them.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: run scripts/deps.sh (the README's test command does)", name)
	}
	return p
}

func find(t testing.TB, component, envVar, cached, onPath string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	if cached != "" {
		if st, err := os.Stat(cached); err == nil && !st.IsDir() {
			return cached
		}
	}
	if p, err := exec.LookPath(onPath); err == nil {
		return p
	}
	missing(t, component, onPath)
	return ""
}

func missing(t testing.TB, component, what string) {
	t.Helper()
	if v := os.Getenv("HANGAR_SKIP_" + component); v != "" && !strings.EqualFold(v, "0") {
		t.Skipf("%s not available and HANGAR_SKIP_%s is set", what, component)
	}
	t.Fatalf("%s not found: run scripts/deps.sh (the README's test command does), or set HANGAR_SKIP_%s=1 to skip knowingly", what, component)
}

// ChildEnv is the environment for a hangar process a test starts: the
// test's own, minus the HANGAR_ settings of whoever runs the tests (they
// would leak into the processes' configuration), keeping HANGAR_CACHE,
// which finds the image parts.
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HANGAR_") && !strings.HasPrefix(kv, "HANGAR_CACHE=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
