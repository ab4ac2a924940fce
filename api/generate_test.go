package api_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// generateDirs are the packages whose code comes from a spec; each has a
// generate.go holding its //go:generate lines.
var generateDirs = []string{".", "host"}

// TestGeneratedUpToDate reruns every //go:generate line into a temporary
// file and fails when the committed output differs, so the Go code cannot
// drift from the specs. It runs the same pinned tool as `go generate`.
func TestGeneratedUpToDate(t *testing.T) {
	goBin := goBinary(t)
	for _, dir := range generateDirs {
		lines := generateLines(t, filepath.Join(dir, "generate.go"))
		if len(lines) == 0 {
			t.Fatalf("%s/generate.go has no //go:generate lines", dir)
		}
		var produced []string
		for _, args := range lines {
			if len(args) < 3 || args[0] != "go" || args[1] != "tool" || args[2] != "oapi-codegen" {
				t.Fatalf("%s: unexpected generate line %q (want go tool oapi-codegen ...)", dir, args)
			}
			i := slices.Index(args, "-o")
			if i < 0 || i+1 >= len(args) {
				t.Fatalf("%s: generate line %q has no -o", dir, args)
			}
			out := args[i+1]
			produced = append(produced, out)
			tmp := filepath.Join(t.TempDir(), out)
			run := slices.Clone(args)
			run[i+1] = tmp
			cmd := exec.Command(goBin, run[1:]...)
			cmd.Dir = dir
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %s: %v\n%s", dir, strings.Join(args, " "), err, b)
			}
			want, err := os.ReadFile(tmp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, out))
			if err != nil {
				t.Fatalf("%s/%s: %v (run go generate ./api/...)", dir, out, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s is out of date with its spec: run `go generate ./api/...` and commit the result (%s)",
					dir, out, firstDiff(got, want))
			}
		}
		// A *.gen.go that no line produces is a leftover nobody regenerates.
		gens, _ := filepath.Glob(filepath.Join(dir, "*.gen.go"))
		for _, g := range gens {
			if !slices.Contains(produced, filepath.Base(g)) {
				t.Errorf("%s is not produced by any //go:generate line; delete it", g)
			}
		}
	}
}

// generateLines returns the arguments of each //go:generate line of a file.
func generateLines(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "//go:generate "); ok {
			out = append(out, strings.Fields(rest))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func goBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go binary on PATH nor in GOROOT: %v", err)
	}
	return p
}

// firstDiff names the first line where two files differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("first difference at line %d: committed %q, generated %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("committed has %d lines, generated %d", len(g), len(w))
}
