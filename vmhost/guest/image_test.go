package guest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangar-vm/hangar/internal/testenv"
)

// TestCPIOReadByCpio: GNU cpio lists and extracts what writeCPIO writes.
func TestCPIOReadByCpio(t *testing.T) {
	cpioBin := testenv.Tool(t, "cpio")
	entries := []cpioEntry{
		{Name: "etc/motd", Mode: 0o644, Data: []byte("hello\n")},
		{Name: "etc", Mode: fs.ModeDir | 0o755},
		{Name: "bin", Mode: fs.ModeDir | 0o755},
		{Name: "bin/sh", Mode: fs.ModeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "bin/odd", Mode: 0o755, Data: []byte("abc")}, // length not a multiple of 4
		{Name: "dev", Mode: fs.ModeDir | 0o755},
		{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, DevMajor: 5, DevMinor: 1},
	}
	var buf bytes.Buffer
	if err := writeCPIO(&buf, entries); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpioBin, "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v: %s", err, out)
	}
	for _, want := range []string{"bin/odd", "bin/sh -> busybox", "dev/console", "etc/motd", "5,   1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, out)
		}
	}
	dir := t.TempDir()
	cmd = exec.Command(cpioBin, "-id", "--quiet", "--no-absolute-filenames")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "console") {
		t.Fatalf("cpio -id: %v: %s", err, out) // mknod may be refused when unprivileged
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/motd")); err != nil || string(b) != "hello\n" {
		t.Fatalf("extracted etc/motd = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bin/odd")); err != nil || string(b) != "abc" {
		t.Fatalf("extracted bin/odd = %q, %v", b, err)
	}
}

func TestCPIORejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    []cpioEntry
	}{
		{"absolute", []cpioEntry{{Name: "/etc", Mode: fs.ModeDir}}},
		{"dotdot", []cpioEntry{{Name: "../x", Mode: 0o644}}},
		{"unclean", []cpioEntry{{Name: "a//b", Mode: 0o644}}},
		{"duplicate", []cpioEntry{{Name: "a", Mode: 0o644}, {Name: "a", Mode: 0o644}}},
		{"socket", []cpioEntry{{Name: "s", Mode: fs.ModeSocket}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := writeCPIO(io.Discard, tc.e); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestBuildReproducible: two builds from the same inputs into different
// caches give the same bytes and digest; the initramfs holds what /init
// needs; a damaged image is refused by Load.
func TestBuildReproducible(t *testing.T) {
	kernelDir := testenv.KernelDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	agentBin := filepath.Join(t.TempDir(), "hangar-agent")
	if err := BuildAgent(ctx, agentBin); err != nil {
		t.Fatal(err)
	}
	opts := BuildOptions{KernelDir: kernelDir, Agent: agentBin}
	opts.CacheDir = filepath.Join(t.TempDir(), "c1")
	a, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.CacheDir = filepath.Join(t.TempDir(), "c2")
	b, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || a.InitrdSHA256 != b.InitrdSHA256 || !strings.HasPrefix(a.Digest, "sha256:") {
		t.Fatalf("builds differ: %+v vs %+v", a, b)
	}
	if a.Digest != digestOf(a.KernelSHA256, a.InitrdSHA256, a.Cmdline) {
		t.Fatal("digest is not the manifest hash")
	}
	// Cached: a second Build returns the same directory.
	c, err := Build(ctx, opts)
	if err != nil || c.Dir != b.Dir {
		t.Fatalf("cached build: %+v, %v", c, err)
	}

	// Another agent binary gives another image.
	other := filepath.Join(t.TempDir(), "agent2")
	ab, _ := os.ReadFile(agentBin)
	os.WriteFile(other, append(ab, 0), 0o755)
	opts.Agent = other
	d, err := Build(ctx, opts)
	if err != nil || d.Digest == a.Digest {
		t.Fatalf("build with another agent: digest %s, %v", d.Digest, err)
	}

	// The initramfs content, as the kernel will see it.
	f, err := os.Open(a.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Tool(t, "cpio"), "-it", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.CombinedOutput()
	f.Close()
	if err != nil {
		t.Fatalf("cpio -it: %v: %s", err, out)
	}
	for _, want := range []string{"init\n", "bin/busybox\n", "sbin/hangar-agent\n", "etc/inittab\n", "dev/console\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("initramfs lacks %q", want)
		}
	}

	// Load verifies content against the manifest.
	dir := t.TempDir()
	for _, name := range []string{KernelFile, InitrdFile, ManifestFile} {
		data, _ := os.ReadFile(filepath.Join(a.Dir, name))
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("load of a copy: %v", err)
	}
	fh, _ := os.OpenFile(filepath.Join(dir, InitrdFile), os.O_WRONLY|os.O_APPEND, 0)
	fh.Write([]byte{0})
	fh.Close()
	if _, err := Load(dir); !errors.Is(err, ErrInvalidImage) {
		t.Fatalf("load of a damaged image: %v, want ErrInvalidImage", err)
	}
}

func TestBuildRejectsDynamicBinary(t *testing.T) {
	kernelDir := testenv.KernelDir(t)
	_, err := Build(context.Background(), BuildOptions{KernelDir: kernelDir, Busybox: "/bin/ls", Agent: "/bin/ls", CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("build with a dynamic busybox: %v", err)
	}
}
