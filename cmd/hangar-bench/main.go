// Command hangar-bench measures hangar's data pipelines beside the tools
// operators use today, on the same input, and prints one table per run.
//
//	go run ./cmd/hangar-bench chunker [-size 1GiB] [-zero 0.6] [-input FILE]
//
// Each subcommand lives in its own file and registers itself in commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"

	"github.com/hangar-vm/hangar/storage/snapshot/lazyfs"
)

// command is one subcommand: run parses its own flags from args.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{
	"chunker":   {"chunker throughput and size beside zstd and lz4 CLIs on one memory-like file", runChunker},
	"upload":    {"upload, 1%-changed re-upload and download through MinIO beside zstd -1 + one-object PUT/GET + zstd -d", runUpload},
	"lazyserve": {"internal: the FUSE server child of vm -lazy-kill", runLazyServe},
	"vm":        {"a real guest's standby, upload, cold and warm restore on two managers beside zstd -1 + one object + zstd -d", runVM},
}

func main() {
	lazyfs.RunChildIfRequested() // the manager arm's lazy servers
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "help" || os.Args[1] == "--help" {
		usage()
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "hangar-bench: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "hangar-bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: hangar-bench <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nrun 'hangar-bench <command> -h' for its flags")
}

// byteSize is a flag value that accepts 1073741824, 1GiB, 512MiB, 64KiB.
type byteSize int64

func (s *byteSize) String() string { return formatSize(int64(*s)) }

func (s *byteSize) Set(v string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if t, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = t, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive size such as 1GiB, 256MiB or 1048576")
	}
	*s = byteSize(n * mult)
	return nil
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return strconv.FormatInt(n, 10)
}
