package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/vmhost/daemon"
)

var hostSchema = mustSchema(&daemon.Config{})

func (a *app) hostCommand() *cobra.Command {
	var d daemonFlags
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Run a host daemon: VMs under QEMU, standby, upload, restore and fork",
		Long: `Run a host daemon until SIGINT or SIGTERM: it runs VMs under QEMU, puts
them on standby, uploads their memory to the central store and restores or
forks them from it, serves the host API to the server and registers with it
(server_url) and heartbeats.

Every configuration key can be set in the --config YAML file, by the
HANGAR_<KEY> environment variable (dots become underscores, upper case)
or by the --<key> flag, with flags over env over file over defaults.
Logs are JSON on stderr.

On exit the VMs still running are stopped (their QEMU processes are
killed; a restarted daemon shows them in state Error). Instances on
standby stay parked on local disk and in the store, and upload jobs that
did not finish resume when the daemon starts again.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			level, err := d.resolve(cmd, a.o.LookupEnv)
			if err != nil {
				return err
			}
			cfg := daemon.Config{}.WithDefaults()
			if err := hostSchema.Load(&cfg, config.Sources{File: d.file, LookupEnv: a.o.LookupEnv, Flags: cmd.Flags()}); err != nil {
				return fmt.Errorf("host config: %w", err)
			}
			cfg = cfg.WithDefaults() // fills the store kind's own defaults
			if d.printConfig {
				return hostSchema.Print(a.o.Stdout, &cfg)
			}
			log := slog.New(slog.NewJSONHandler(a.o.Stderr, &slog.HandlerOptions{Level: level}))
			log.Info("starting hangar host", "version", a.o.Version, "config_file", d.file, "host_id", cfg.HostID,
				"listen", cfg.Listen, "server_url", cfg.ServerURL, "data_dir", cfg.DataDir, "store", cfg.Store.Kind, "accel", cfg.QEMU.Accel)
			dm, err := daemon.New(cfg, log)
			if err != nil {
				return err
			}
			if err := dm.Run(cmd.Context()); err != nil && !errors.Is(err, cmd.Context().Err()) {
				return fmt.Errorf("host: %w", err)
			}
			log.Info("hangar host stopped")
			return nil
		}),
	}
	d.add(cmd, "host daemon")
	def := daemon.Config{}.WithDefaults()
	if err := hostSchema.AddFlags(cmd.Flags(), &def); err != nil {
		panic(err)
	}
	return cmd
}
