package vmtest

import (
	"os"
	"testing"
)

// ShortTemp is a temporary directory with a short path, removed when the
// test ends: unix socket paths are limited to 107 bytes, VM sockets live
// under it, and t.TempDir() embeds the test's name.
func ShortTemp(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
