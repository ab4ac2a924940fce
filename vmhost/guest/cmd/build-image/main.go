// Command build-image builds hangar's default guest image (kernel +
// initramfs with busybox and the guest agent) into the image cache and,
// with -out, copies it into a directory. It prints the image's digest.
//
//	go run ./vmhost/guest/cmd/build-image [-out DIR] [-kernel-dir DIR] [-busybox PATH] [-agent PATH]
//
// Run it from the hangar module (it compiles cmd/hangar-agent) after
// scripts/deps.sh has fetched the kernel.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest"
)

func main() {
	var opts guest.BuildOptions
	out := flag.String("out", "", "copy the image into this directory (default: leave it in the cache only)")
	flag.StringVar(&opts.KernelDir, "kernel-dir", "", "unpacked kernel (default $HANGAR_CACHE/kernel)")
	flag.StringVar(&opts.Busybox, "busybox", "", "static busybox (default /bin/busybox)")
	flag.StringVar(&opts.Agent, "agent", "", "prebuilt static hangar-agent (default: go build "+guest.AgentPackage+")")
	flag.StringVar(&opts.Cmdline, "cmdline", "", "kernel command line (default "+fmt.Sprintf("%q", guest.DefaultCmdline)+")")
	flag.StringVar(&opts.CacheDir, "cache-dir", "", "image cache (default $HANGAR_CACHE/image)")
	flag.Parse()
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	im, err := guest.Build(ctx, opts)
	if err == nil && *out != "" {
		im, err = copyImage(im, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s\n", im.Digest, im.Dir)
}

func copyImage(im guest.Image, dir string) (guest.Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return im, err
	}
	for _, name := range []string{guest.KernelFile, guest.InitrdFile, guest.ManifestFile} {
		b, err := os.ReadFile(filepath.Join(im.Dir, name))
		if err != nil {
			return im, err
		}
		if err := vmhost.WriteFileAtomic(filepath.Join(dir, name), b); err != nil {
			return im, err
		}
	}
	return guest.Load(dir)
}
