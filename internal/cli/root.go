package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Options are the process's outside world; tests replace them.
type Options struct {
	Stdout, Stderr io.Writer
	// LookupEnv reads environment variables; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// IsTerminal reports whether w is a terminal; progress bars are drawn
	// only on one. nil checks for an *os.File that is a terminal.
	IsTerminal func(w io.Writer) bool
	// PollInterval is how often --wait polls the server; 0 means 1s.
	PollInterval time.Duration
	// Version is printed by --version and sent nowhere else.
	Version string
}

func (o Options) withDefaults() Options {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.IsTerminal == nil {
		o.IsTerminal = func(w io.Writer) bool {
			f, ok := w.(*os.File)
			return ok && term.IsTerminal(int(f.Fd()))
		}
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return o
}

// app is the state the commands share: the options and the global flags.
type app struct {
	o    Options
	json bool
}

// runError marks an error returned by a command's run function, as opposed
// to one cobra returns while parsing (always a usage error).
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// run adapts a command body to cobra, marking its errors as run errors.
func run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return &runError{err}
		}
		return nil
	}
}

// NewCommand returns the hangar command tree.
func NewCommand(o Options) *cobra.Command {
	a := &app{o: o.withDefaults()}
	return a.root()
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "hangar",
		Short: "hangar parks virtual machines in object storage and flies them out from any host",
		Long: `hangar parks virtual machines in object storage and flies them out from any host.

Exit codes: 0 ok, 1 error, 2 usage or invalid request, 3 not found,
4 conflict or invalid state, 5 unavailable (no capacity, host unavailable,
server unreachable), 6 unauthorized, 7 store verify found damage.`,
		Version:       a.o.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(a.o.Stdout)
	root.SetErr(a.o.Stderr)
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print one JSON document on stdout (the API's object) instead of a table; errors as JSON on stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })
	for _, c := range a.daemonCommands() {
		root.AddCommand(c)
	}
	root.AddCommand(a.instancesCommand(), a.snapshotsCommand(), a.hostsCommand(), a.storeCommand())
	return root
}

// group makes a command that only holds subcommands: alone it prints its
// help; with an unknown subcommand it is a usage error (cobra would print
// the help and succeed, which a script would take for success).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	return cmd
}

// Run executes the command line args (without the program name) and
// returns the exit code; errors are printed to o.Stderr.
func Run(ctx context.Context, args []string, o Options) int {
	a := &app{o: o.withDefaults()}
	root := a.root()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if !a.json {
		// cobra stops before parsing flags when the command is unknown;
		// a script that asked for JSON still gets its error as JSON.
		a.json = jsonRequested(args)
	}
	var re *runError
	if errors.As(err, &re) {
		err = re.err
	} else if !errors.Is(err, ErrUsage) {
		// cobra's own errors (unknown command, wrong number of arguments,
		// missing required flag) are usage errors.
		err = usageErrorf("%v", err)
	}
	printError(a.o.Stderr, err, a.json)
	code := ExitCode(err)
	if code == ExitUsage && re == nil && !a.json && cmd != nil {
		fmt.Fprintf(a.o.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// jsonRequested reports whether args hold --json before any "--".
func jsonRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "--json=true":
			return true
		}
	}
	return false
}
