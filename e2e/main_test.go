package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	// runRoot is the run's directory. It is short on purpose: QEMU's unix
	// sockets live under the hosts' data directories below it.
	runRoot string
	// hangarBin and buildImageBin are built once per test binary.
	hangarBin, buildImageBin string
	// buildErr fails every test that needs the binaries.
	buildErr error
	// moduleRoot is the hangar module's directory.
	moduleRoot string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var err error
	// A long $TMPDIR would push QEMU's socket paths past 107 bytes.
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	if runRoot, err = os.MkdirTemp(base, "hge2e"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(runRoot)
	buildErr = buildBinaries()

	code := m.Run()

	if s := shared.stack; s != nil {
		s.close()
	}
	// Nothing this run started may outlive it.
	if left := leftovers(runRoot); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: processes left after the stack stopped (killing them):\n  %s\n", strings.Join(left, "\n  "))
		killLeftovers(runRoot)
		code = 1
	}
	printSummary()
	return code
}

// buildBinaries builds hangar and build-image into the run's directory.
func buildBinaries() error {
	start := time.Now()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside the hangar module")
	}
	moduleRoot = filepath.Dir(gomod)
	bin := filepath.Join(runRoot, "bin")
	cmd := exec.Command("go", "build", "-o", bin+"/", "./cmd/hangar", "./vmhost/guest/cmd/build-image")
	cmd.Dir = moduleRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, stderr.String())
	}
	hangarBin = filepath.Join(bin, "hangar")
	buildImageBin = filepath.Join(bin, "build-image")
	recordf("build hangar and build-image", "%v", time.Since(start).Round(time.Millisecond))
	return nil
}

// buildImage builds the default guest image (the one the Dockerfile
// builds too) into the run's directory; the hosts load it from there.
// The image cache in $HANGAR_CACHE makes later runs fast.
func buildImage(ctx context.Context, kernelDir string) (string, error) {
	dir := filepath.Join(runRoot, "image")
	cmd := exec.CommandContext(ctx, buildImageBin, "-out", dir, "-kernel-dir", kernelDir)
	cmd.Dir = moduleRoot // build-image compiles the guest agent from the module
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the guest image: %w\n%s", err, out.String())
	}
	return dir, nil
}

// The summary: per-test durations and the numbers the scenarios measured,
// printed by TestMain at the end (visible with -v, and whenever the
// package fails).
var summary struct {
	mu    sync.Mutex
	lines []string
}

func recordf(what, format string, args ...any) {
	summary.mu.Lock()
	defer summary.mu.Unlock()
	summary.lines = append(summary.lines, fmt.Sprintf("%-58s %s", what, fmt.Sprintf(format, args...)))
}

func printSummary() {
	summary.mu.Lock()
	defer summary.mu.Unlock()
	if len(summary.lines) == 0 {
		return
	}
	fmt.Println("e2e summary:")
	for _, l := range summary.lines {
		fmt.Println("  " + l)
	}
}

// timed records t's duration in the summary and logs it.
func timed(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() {
		d := time.Since(start).Round(time.Millisecond)
		result := "ok"
		switch {
		case t.Skipped():
			result = "skipped"
		case t.Failed():
			result = "FAILED"
		}
		t.Logf("%s took %v (%s)", t.Name(), d, result)
		recordf(t.Name(), "%v %s", d, result)
	})
}
