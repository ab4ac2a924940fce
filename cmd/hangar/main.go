// Command hangar is the one hangar binary: daemons and the CLI client. The
// command tree lives in internal/cli; this file only connects it to the
// process (arguments, signals, exit code).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hangar-vm/hangar/internal/cli"
	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// A lazy restore's FUSE server is this binary re-executed
	// (vmhost/manager/lazychild.go).
	lazyfs.RunChildIfRequested()
	// SIGINT and SIGTERM cancel the context: daemons shut down cleanly and
	// a --wait stops waiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Options{Version: version})
	stop()
	os.Exit(code)
}
