package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/devenv"
	"github.com/hangar-vm/hangar/storage/s3"
	"github.com/hangar-vm/hangar/vmhost/qemu"
)

// devLogFile is where `hangar dev` writes every component's logs (JSON)
// under its directory; the terminal gets the warnings and errors.
const devLogFile = "hangar-dev.log"

func (a *app) devCommand() *cobra.Command {
	var (
		cfg       devenv.Config
		logLevel  string
		secretKey string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole hangar on this machine: server, host daemons and store in one process",
		Long: `Run a whole hangar cluster in one process until Ctrl-C: the server, N host
daemons (each with its own data directory, chunk cache and API port, so a
restore "on another host" downloads from the store like a real one) and
the central store: a local directory, or an S3 bucket (MinIO, AWS) with
--s3-endpoint. It builds the guest image on the first start (cached), then
prints the API's URL and a user token to point the CLI at.

Everything lives under --dir: the tokens (kept across restarts), the
server's catalog cache, the fs store, the hosts' data directories and the
log file (JSON; the terminal only gets warnings and errors).

The accelerator is kvm by default; use --accel tcg where /dev/kvm is
missing or hangs guests (nested virtualization), at emulation speed.

Ctrl-C: running VMs are stopped (their memory is lost; the next start
shows them in state Error, to be deleted); instances on standby stay
parked in the store and the hosts' directories, and the next hangar dev
on the same --dir brings them back, with any unfinished upload resumed.

S3 credentials come from --s3-access-key and the AWS_SECRET_ACCESS_KEY
variable (or --s3-secret-key), else from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageErrorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			if secretKey != "" {
				cfg.S3.SecretKey = s3.Secret(secretKey)
			} else if v, ok := a.o.LookupEnv("AWS_SECRET_ACCESS_KEY"); ok && cfg.S3.AccessKey != "" {
				cfg.S3.SecretKey = s3.Secret(v)
			}
			cfg = cfg.WithDefaults()
			if err := cfg.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
				return fmt.Errorf("dev dir: %w", err)
			}
			logPath := filepath.Join(cfg.Dir, devLogFile)
			lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return fmt.Errorf("log file: %w", err)
			}
			defer lf.Close()
			cfg.Logger = slog.New(slog.NewMultiHandler(
				slog.NewJSONHandler(lf, &slog.HandlerOptions{Level: level}),
				slog.NewJSONHandler(a.o.Stderr, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)}),
			))
			cfg.Version = a.o.Version
			out := a.o.Stdout
			fmt.Fprintf(out, "hangar dev: starting in %s (logs: %s)\n", cfg.Dir, logPath)
			cfg.OnReady = func(info devenv.Info) { printDevReady(out, info, logPath) }
			cfg.OnStop = func(s devenv.Stopping) { printDevStopping(out, s) }
			if err := devenv.Run(cmd.Context(), cfg); err != nil {
				return fmt.Errorf("dev: %w (logs: %s)", err, logPath)
			}
			fmt.Fprintln(out, "hangar dev: stopped")
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", devenv.DefaultDir(), "directory for the tokens, catalog cache, fs store, host data and logs")
	f.IntVar(&cfg.Hosts, "hosts", devenv.DefaultHosts, "number of host daemons (1-16)")
	f.StringVar(&cfg.Listen, "listen", devenv.DefaultListen, "server address (port 0: any free port)")
	f.IntVar(&cfg.HostPort, "host-port", devenv.DefaultHostPort, "first host's API port on 127.0.0.1; host N gets this+N-1 (0: any free ports)")
	f.StringVar(&cfg.Accel, "accel", qemu.AccelKVM, "QEMU accelerator: kvm, or tcg (software emulation) where /dev/kvm is missing or hangs guests")
	f.BoolVar(&cfg.LazyRestore, "lazy-restore", false, "hosts resume guests restored from the store before their memory is all fetched (restore.lazy; needs root and /dev/fuse)")
	f.Int64Var(&cfg.HostMemoryMiB, "host-memory", 0, "guest memory in MiB each host offers (0: the machine's memory less 1 GiB)")
	f.StringVar(&cfg.ImageDir, "image-dir", "", "a built guest image (default: build the default image, cached)")
	f.StringVar(&cfg.S3.Endpoint, "s3-endpoint", "", "S3 endpoint host:port (MinIO, AWS) to use as the store instead of <dir>/store")
	f.StringVar(&cfg.S3.Bucket, "s3-bucket", devenv.DefaultBucket, "bucket (created if missing)")
	f.StringVar(&cfg.S3.Prefix, "s3-prefix", "", "key prefix inside the bucket")
	f.StringVar(&cfg.S3.Region, "s3-region", "", "region (default $AWS_REGION, then us-east-1)")
	f.StringVar(&cfg.S3.AccessKey, "s3-access-key", "", "access key (default $AWS_ACCESS_KEY_ID)")
	f.StringVar(&secretKey, "s3-secret-key", "", "secret key (prefer $AWS_SECRET_ACCESS_KEY: flags show in ps)")
	f.BoolVar(&cfg.S3.UseTLS, "s3-tls", false, "use https for the S3 endpoint")
	f.StringVar(&logLevel, "log-level", "info", "level of the log file: debug, info, warn or error")
	return cmd
}

func printDevReady(w io.Writer, info devenv.Info, logPath string) {
	fmt.Fprintf(w, "hangar dev: ready — %d hosts, store %s, accel %s\n\n", len(info.Hosts), info.Store, info.Accel)
	fmt.Fprintf(w, "  server  %s\n", info.URL)
	for _, h := range info.Hosts {
		fmt.Fprintf(w, "  %-7s %s  (data %s)\n", h.ID, h.Address, h.DataDir)
	}
	fmt.Fprintf(w, "  image   %s\n  logs    %s\n\n", info.ImageDigest, logPath)
	fmt.Fprintf(w, "Point the CLI at it (in another terminal):\n\n  export HANGAR_SERVER=%s HANGAR_TOKEN=%s\n\n", info.URL, info.UserToken.Reveal())
	fmt.Fprintf(w, "Ctrl-C stops everything: running VMs are stopped, standby VMs stay parked.\n")
}

func printDevStopping(w io.Writer, s devenv.Stopping) {
	if s.Err != nil {
		fmt.Fprintf(w, "\nhangar dev: stopping (could not list instances: %v)\n", s.Err)
		return
	}
	fmt.Fprintf(w, "\nhangar dev: stopping — %d running VM(s) stopped%s, %d standby instance(s) stay parked%s\n",
		len(s.Running), instanceNames(s.Running), len(s.Parked), instanceNames(s.Parked))
}

func instanceNames(l []api.Instance) string {
	if len(l) == 0 {
		return ""
	}
	names := make([]string, len(l))
	for i, in := range l {
		names[i] = in.Name
	}
	return " (" + strings.Join(names, ", ") + ")"
}
