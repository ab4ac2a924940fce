package guest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hangar-vm/hangar/vmhost"
)

// Files in an image directory.
const (
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
	ManifestFile = "image.json"
)

// DefaultCmdline is the kernel command line of the default image: console
// on the first serial port, quiet (serial output is slow under emulation),
// reboot at once on panic (QEMU runs with -no-reboot, so a panic ends the
// process and the driver sees it), and trust the CPU's RDRAND so that the
// agent's getrandom does not wait for entropy in a device-less guest.
// no_timer_check skips the boot-time check that the IO-APIC delivers timer
// interrupts: under software emulation on a loaded host the check can time
// out and the kernel panics ("IO-APIC + timer doesn't work!", seen in CI);
// virtual machines are routinely booted with it.
const DefaultCmdline = "console=ttyS0 quiet panic=-1 random.trust_cpu=on no_timer_check"

// AgentPackage is the guest agent's main package.
const AgentPackage = "github.com/hangar-vm/hangar/cmd/hangar-agent"

// builderVersion changes whenever the initramfs layout changes, so that
// cached images built by an older builder are not reused.
const builderVersion = "hangar-image-builder-1"

// ErrInvalidImage: an image directory is missing a file, or a file does not
// match the digest recorded for it.
var ErrInvalidImage = errors.New("invalid guest image")

// Image is a built guest image: a kernel and an initramfs, identified by a
// content digest.
type Image struct {
	Dir     string `json:"-"`
	Kernel  string `json:"-"` // Dir/vmlinuz
	Initrd  string `json:"-"` // Dir/initrd.img
	Cmdline string `json:"cmdline"`
	// Digest is "sha256:<hex>" over the manifest of kernel, initramfs and
	// command line (see digestOf). Snapshots record it; a restore with
	// another image is refused.
	Digest        string `json:"digest"`
	KernelSHA256  string `json:"kernel_sha256"`
	InitrdSHA256  string `json:"initrd_sha256"`
	KernelRelease string `json:"kernel_release,omitempty"`
}

// Boot is what vmhost.Config needs to boot the image.
func (im Image) Boot() vmhost.Boot {
	return vmhost.Boot{Kernel: im.Kernel, Initrd: im.Initrd, Cmdline: im.Cmdline, ImageDigest: im.Digest}
}

// digestOf is the image identity: SHA-256 over a small text manifest, so
// the digest can be recomputed from the three parts by anyone.
func digestOf(kernelSHA, initrdSHA, cmdline string) string {
	h := sha256.New()
	fmt.Fprintf(h, "hangar-image-v1\nkernel sha256:%s\ninitrd sha256:%s\ncmdline %s\n", kernelSHA, initrdSHA, cmdline)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Load opens the image in dir and verifies its files against its manifest.
func Load(dir string) (Image, error) {
	var im Image
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return im, fmt.Errorf("%w: %s: %w", ErrInvalidImage, dir, err)
	}
	if err := json.Unmarshal(b, &im); err != nil {
		return im, fmt.Errorf("%w: %s: %w", ErrInvalidImage, filepath.Join(dir, ManifestFile), err)
	}
	im.Dir = dir
	im.Kernel = filepath.Join(dir, KernelFile)
	im.Initrd = filepath.Join(dir, InitrdFile)
	ks, err := fileSHA256(im.Kernel)
	if err != nil {
		return im, fmt.Errorf("%w: %w", ErrInvalidImage, err)
	}
	is, err := fileSHA256(im.Initrd)
	if err != nil {
		return im, fmt.Errorf("%w: %w", ErrInvalidImage, err)
	}
	if ks != im.KernelSHA256 || is != im.InitrdSHA256 || digestOf(ks, is, im.Cmdline) != im.Digest {
		return im, fmt.Errorf("%w: %s: files do not match digest %s", ErrInvalidImage, dir, im.Digest)
	}
	return im, nil
}

// BuildOptions say where the image's parts come from. Zero values take the
// defaults from WithDefaults.
type BuildOptions struct {
	// KernelDir holds vmlinuz and release, as scripts/deps.sh unpacks them;
	// default $HANGAR_CACHE/kernel.
	KernelDir string
	// Busybox is a statically linked busybox; default /bin/busybox.
	Busybox string
	// Agent is a statically linked hangar-agent. Empty: Build compiles
	// AgentPackage with the go tool (CGO_ENABLED=0, -trimpath, no build
	// id, so the binary is reproducible), which needs the hangar module
	// as the working directory.
	Agent string
	// Cmdline is the kernel command line; default DefaultCmdline.
	Cmdline string
	// CacheDir holds built images, <CacheDir>/<digest hex>, and the index
	// from input digests to them; default $HANGAR_CACHE/image.
	CacheDir string
	Logger   *slog.Logger
}

// CacheRoot is $HANGAR_CACHE, or ~/.cache/hangar.
func CacheRoot() string {
	if d := os.Getenv("HANGAR_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "hangar-cache")
	}
	return filepath.Join(home, ".cache", "hangar")
}

// WithDefaults fills in empty options.
func (o BuildOptions) WithDefaults() BuildOptions {
	if o.KernelDir == "" {
		o.KernelDir = filepath.Join(CacheRoot(), "kernel")
	}
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if o.Cmdline == "" {
		o.Cmdline = DefaultCmdline
	}
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(CacheRoot(), "image")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Build returns the image for opts from the cache, building it first if
// no image was built from the same inputs (kernel, busybox, agent binary,
// command line, builder version). The same inputs always give the same
// digest.
func Build(ctx context.Context, opts BuildOptions) (Image, error) {
	opts = opts.WithDefaults()
	log := opts.Logger.With("component", "guest-image")
	kernel, err := os.ReadFile(filepath.Join(opts.KernelDir, "vmlinuz"))
	if err != nil {
		return Image{}, fmt.Errorf("build image: kernel (run scripts/deps.sh): %w", err)
	}
	release, _ := os.ReadFile(filepath.Join(opts.KernelDir, "release"))
	busybox, err := readStatic(opts.Busybox)
	if err != nil {
		return Image{}, fmt.Errorf("build image: busybox: %w", err)
	}
	agentPath := opts.Agent
	if agentPath == "" {
		tmp, err := os.MkdirTemp("", "hangar-agent-build-")
		if err != nil {
			return Image{}, fmt.Errorf("build image: %w", err)
		}
		defer os.RemoveAll(tmp)
		agentPath = filepath.Join(tmp, "hangar-agent")
		if err := BuildAgent(ctx, agentPath); err != nil {
			return Image{}, fmt.Errorf("build image: %w", err)
		}
	}
	agentBin, err := readStatic(agentPath)
	if err != nil {
		return Image{}, fmt.Errorf("build image: agent: %w", err)
	}

	files := initramfsEntries(busybox, agentBin)
	inputs := sha256.New()
	fmt.Fprintf(inputs, "%s\n%s\n", builderVersion, opts.Cmdline)
	inputs.Write(kernel)
	for _, e := range files {
		fmt.Fprintf(inputs, "%s %o %d\n", e.Name, e.Mode, len(e.Data))
		inputs.Write(e.Data)
	}
	key := hex.EncodeToString(inputs.Sum(nil))
	indexPath := filepath.Join(opts.CacheDir, "inputs", key)
	if b, err := os.ReadFile(indexPath); err == nil {
		if im, err := Load(filepath.Join(opts.CacheDir, strings.TrimSpace(string(b)))); err == nil {
			log.Debug("image from cache", "digest", im.Digest, "dir", im.Dir)
			return im, nil
		}
	}

	var initrd bytes.Buffer
	zw, err := gzip.NewWriterLevel(&initrd, gzip.BestSpeed)
	if err != nil {
		return Image{}, fmt.Errorf("build image: %w", err)
	}
	if err := writeCPIO(zw, files); err != nil {
		return Image{}, fmt.Errorf("build image: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Image{}, fmt.Errorf("build image: %w", err)
	}
	ks, is := sha256.Sum256(kernel), sha256.Sum256(initrd.Bytes())
	im := Image{
		Cmdline:       opts.Cmdline,
		KernelSHA256:  hex.EncodeToString(ks[:]),
		InitrdSHA256:  hex.EncodeToString(is[:]),
		KernelRelease: strings.TrimSpace(string(release)),
	}
	im.Digest = digestOf(im.KernelSHA256, im.InitrdSHA256, im.Cmdline)
	final := filepath.Join(opts.CacheDir, strings.TrimPrefix(im.Digest, "sha256:"))
	if _, err := Load(final); err != nil {
		if err := writeImageDir(opts.CacheDir, final, kernel, initrd.Bytes(), im); err != nil {
			return Image{}, fmt.Errorf("build image: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(indexPath), 0o755); err != nil {
		return Image{}, fmt.Errorf("build image: %w", err)
	}
	if err := vmhost.WriteFileAtomic(indexPath, []byte(filepath.Base(final)+"\n")); err != nil {
		return Image{}, fmt.Errorf("build image: %w", err)
	}
	log.Info("image built", "digest", im.Digest, "dir", final, "initrd_bytes", initrd.Len())
	return Load(final)
}

// writeImageDir writes the image into a temporary directory and renames it
// into place, so a half-written image is never visible under its digest.
func writeImageDir(cacheDir, final string, kernel, initrd []byte, im Image) error {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	manifest, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{KernelFile: kernel, InitrdFile: initrd, ManifestFile: append(manifest, '\n')} {
		if err := vmhost.WriteFileAtomic(filepath.Join(tmp, name), data); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	os.RemoveAll(final) // a damaged leftover; Load refused it
	if err := os.Rename(tmp, final); err != nil {
		if _, lerr := Load(final); lerr == nil {
			return nil // a concurrent build put the same image there
		}
		return err
	}
	return vmhost.SyncDir(cacheDir)
}

// BuildAgent compiles the guest agent, statically and reproducibly, to out.
func BuildAgent(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, AgentPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (run from the hangar module, or pass a prebuilt agent): %w: %s", AgentPackage, err, bytes.TrimSpace(b))
	}
	return nil
}

// readStatic reads an executable and checks that it is a statically linked
// x86-64 ELF: the initramfs has no dynamic loader or libc.
func readStatic(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: built for %v, the guest is x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%s: dynamically linked; the initramfs needs a static binary", path)
		}
	}
	return b, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// initScript mounts the kernel filesystems and the RAM-backed /run and
// /tmp, then hands over to busybox init, which reaps orphans and keeps the
// agent running (inittab).
const initScript = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mkdir -p /dev/pts /dev/shm
/bin/busybox mount -t devpts devpts /dev/pts
/bin/busybox mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
/bin/busybox mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
/bin/busybox --install -s
hostname hangar
echo "hangar-init: up after $(cut -d' ' -f1 /proc/uptime)s"
exec /bin/busybox init
`

const inittab = `::respawn:/sbin/hangar-agent -port /dev/ttyS1
::shutdown:/bin/umount -a -r
`

// initramfsEntries is the initramfs content.
func initramfsEntries(busybox, agentBin []byte) []cpioEntry {
	dir := func(name string, perm fs.FileMode) cpioEntry { return cpioEntry{Name: name, Mode: fs.ModeDir | perm} }
	file := func(name string, perm fs.FileMode, data []byte) cpioEntry {
		return cpioEntry{Name: name, Mode: perm, Data: data}
	}
	return []cpioEntry{
		dir("bin", 0o755), dir("sbin", 0o755), dir("usr", 0o755), dir("usr/bin", 0o755), dir("usr/sbin", 0o755),
		dir("etc", 0o755), dir("proc", 0o555), dir("sys", 0o555), dir("dev", 0o755), dir("run", 0o755),
		dir("tmp", 0o777|fs.ModeSticky), dir("root", 0o700), dir("var", 0o755),
		// The kernel opens /dev/console for init before devtmpfs is mounted.
		{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, DevMajor: 5, DevMinor: 1},
		file("bin/busybox", 0o755, busybox),
		{Name: "bin/sh", Mode: fs.ModeSymlink | 0o777, Data: []byte("busybox")},
		file("sbin/hangar-agent", 0o755, agentBin),
		file("init", 0o755, []byte(initScript)),
		file("etc/inittab", 0o644, []byte(inittab)),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")),
		file("etc/group", 0o644, []byte("root:x:0:\n")),
		file("etc/hostname", 0o644, []byte("hangar\n")),
	}
}
