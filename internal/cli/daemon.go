package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/server"
)

// daemonCommands returns the daemons' commands: `hangar server`,
// `hangar host` and `hangar dev`.
func (a *app) daemonCommands() []*cobra.Command {
	return []*cobra.Command{a.serverCommand(), a.hostCommand(), a.devCommand()}
}

// daemonFlags are the flags every daemon has besides its config keys.
type daemonFlags struct {
	file        string
	printConfig bool
	logLevel    string
}

func (d *daemonFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&d.file, "config", "", "YAML file with the "+what+" configuration (env HANGAR_CONFIG); flags and HANGAR_... variables override its keys")
	cmd.Flags().BoolVar(&d.printConfig, "print-config", false, "print the effective configuration (secrets redacted) as YAML and exit")
	cmd.Flags().StringVar(&d.logLevel, "log-level", "info", "debug, info, warn or error (env HANGAR_LOG_LEVEL)")
}

// resolve applies the env fallbacks of the daemon flags.
func (d *daemonFlags) resolve(cmd *cobra.Command, lookup func(string) (string, bool)) (slog.Level, error) {
	if !cmd.Flags().Changed("config") {
		if v, ok := lookup("HANGAR_CONFIG"); ok {
			d.file = v
		}
	}
	if !cmd.Flags().Changed("log-level") {
		if v, ok := lookup("HANGAR_LOG_LEVEL"); ok {
			d.logLevel = v
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(d.logLevel)); err != nil {
		return 0, usageErrorf("--log-level %q: want debug, info, warn or error", d.logLevel)
	}
	return level, nil
}

var serverSchema = mustSchema(&server.Config{})

func (a *app) serverCommand() *cobra.Command {
	var d daemonFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane: REST API, host registry, placement, snapshot catalog",
		Long: `Run the control plane until SIGINT or SIGTERM: the public REST API, the
host registry, placement and the snapshot catalog recovered from the store.

Every configuration key can be set in the --config YAML file, by the
HANGAR_<KEY> environment variable (dots become underscores, upper case)
or by the --<key> flag, with flags over env over file over defaults.
Logs are JSON on stderr.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			level, err := d.resolve(cmd, a.o.LookupEnv)
			if err != nil {
				return err
			}
			cfg := server.Config{}.WithDefaults()
			if err := serverSchema.Load(&cfg, config.Sources{File: d.file, LookupEnv: a.o.LookupEnv, Flags: cmd.Flags()}); err != nil {
				return fmt.Errorf("server config: %w", err)
			}
			cfg = cfg.WithDefaults() // fills the store kind's own defaults
			if d.printConfig {
				return serverSchema.Print(a.o.Stdout, &cfg)
			}
			log := slog.New(slog.NewJSONHandler(a.o.Stderr, &slog.HandlerOptions{Level: level}))
			log.Info("starting hangar server", "version", a.o.Version, "config_file", d.file, "listen", cfg.Listen, "store", cfg.Store.Kind)
			s, err := server.New(cfg, server.WithLogger(log), server.WithVersion(a.o.Version))
			if err != nil {
				return err
			}
			runErr := s.Run(cmd.Context())
			if errors.Is(runErr, cmd.Context().Err()) {
				runErr = nil
			}
			// Close stops the catalog sync and writes the catalog cache a
			// last time: what the server learned since the last periodic
			// write (names, tombstones of deleted instances) survives.
			if err := s.Close(); err != nil {
				runErr = errors.Join(runErr, fmt.Errorf("close server: %w", err))
			}
			if runErr != nil {
				return fmt.Errorf("server: %w", runErr)
			}
			log.Info("hangar server stopped")
			return nil
		}),
	}
	d.add(cmd, "server")
	def := server.Config{}.WithDefaults()
	if err := serverSchema.AddFlags(cmd.Flags(), &def); err != nil {
		panic(err)
	}
	return cmd
}
