package cli

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/storage/snapshot"
	"github.com/hangar-vm/hangar/storage/storeconfig"
)

// storeFileConfig is the configuration of `hangar store`: the store
// section every hangar process shares (storage/storeconfig, opened by
// storeconfig.Open, the one place the store wrappers are stacked), so the
// same file section and the same HANGAR_STORE_... variables serve the
// server, the hosts and this command.
type storeFileConfig struct {
	Store storeconfig.Config `yaml:"store"`
}

func defaultStoreFileConfig() storeFileConfig { return storeFileConfig{} }

// Validate reports every problem at once.
func (c *storeFileConfig) Validate() error { return c.Store.Validate() }

var storeSchema = mustSchema(&storeFileConfig{})

// openRepo loads the store configuration and opens the snapshot repository
// over it: an S3 store wrapped in retries, or a local directory.
func (a *app) openRepo(cmd *cobra.Command, file string) (*snapshot.Repo, func(), error) {
	cfg := defaultStoreFileConfig()
	if err := storeSchema.Load(&cfg, config.Sources{File: file, LookupEnv: a.o.LookupEnv, Flags: cmd.Flags()}); err != nil {
		return nil, nil, err
	}
	log := slog.New(slog.NewTextHandler(a.o.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := storeconfig.Open(cmd.Context(), cfg.Store, noop.NewMeterProvider().Meter("hangar-cli"), log)
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() {
		if c, ok := st.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
	repo, err := snapshot.New(st, snapshot.Config{Logger: log})
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return repo, closeFn, nil
}

func (a *app) storeCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "store",
		Short: "Maintain the snapshot store directly: garbage collection and verification",
		Long: `Maintain the snapshot store directly (not through the server).

The store is configured like the server's store section: --config FILE
(a YAML file with a store: mapping), HANGAR_STORE_... variables, or the
--store.... flags, with flags over env over file.`,
	})
	var file string
	cmd.PersistentFlags().StringVar(&file, "config", "", "YAML file with a store: section")
	def := defaultStoreFileConfig()
	if err := storeSchema.AddFlags(cmd.PersistentFlags(), &def); err != nil {
		panic(err)
	}
	cmd.AddCommand(a.storeGC(&file), a.storeVerify(&file))
	return cmd
}

// gcDoc is the --json document of `hangar store gc`.
type gcDoc struct {
	DryRun     bool  `json:"dry_run"`
	Snapshots  int   `json:"snapshots"`
	Referenced int   `json:"referenced_chunks"`
	Chunks     int   `json:"chunks"`
	Deleted    int   `json:"deleted_chunks"`
	BytesFreed int64 `json:"bytes_freed"`
	KeptYoung  int   `json:"kept_young_chunks"`
	Missing    int   `json:"missing_chunks"`
	Foreign    int   `json:"foreign_keys"`
}

func (a *app) storeGC(file *string) *cobra.Command {
	var opts snapshot.GCOptions
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete chunks that no committed snapshot references (older than the grace period)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if opts.Grace < 0 {
				return usageErrorf("--grace %v is negative", opts.Grace)
			}
			if opts.Grace == 0 && cmd.Flags().Changed("grace") {
				opts.Grace = -1 // snapshot.GCOptions: negative means no grace
			}
			repo, closeFn, err := a.openRepo(cmd, *file)
			if err != nil {
				return err
			}
			defer closeFn()
			st, err := repo.GC(cmd.Context(), opts)
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			doc := gcDoc{DryRun: opts.DryRun, Snapshots: st.Snapshots, Referenced: st.Referenced, Chunks: st.Chunks,
				Deleted: st.Deleted, BytesFreed: st.BytesFreed, KeptYoung: st.KeptYoung, Missing: st.Missing, Foreign: st.Foreign}
			if a.json {
				return a.printJSON(doc)
			}
			verb := "deleted"
			if opts.DryRun {
				verb = "would delete"
			}
			fmt.Fprintf(a.o.Stdout, "%d snapshots reference %d chunks; %d chunks stored\n", st.Snapshots, st.Referenced, st.Chunks)
			fmt.Fprintf(a.o.Stdout, "%s %d unreferenced chunks (%s); kept %d younger than the grace period\n", verb, st.Deleted, humanize.IBytes(uint64(max(st.BytesFreed, 0))), st.KeptYoung)
			if st.Missing > 0 {
				fmt.Fprintf(a.o.Stdout, "%d referenced chunks are missing: run hangar store verify\n", st.Missing)
			}
			return nil
		}),
	}
	cmd.Flags().DurationVar(&opts.Grace, "grace", snapshot.DefaultGrace, "keep unreferenced chunks younger than this (0: none)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would be deleted without deleting")
	cmd.Flags().IntVar(&opts.Workers, "workers", 8, "deletes at once")
	return cmd
}

func (a *app) storeVerify(file *string) *cobra.Command {
	var opts snapshot.VerifyOptions
	cmd := &cobra.Command{
		Use:   "verify [SNAPSHOT...]",
		Short: "Read every chunk the snapshots reference and check it against its id",
		Long: `Read every chunk the snapshots (all, or those named) reference, decode it
and check it against its id. Exit code 7 when a chunk is missing or
corrupt or a manifest does not parse; the report names every snapshot,
file and chunk index affected.`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			for _, id := range args {
				if err := validID("snapshot", id); err != nil {
					return err
				}
			}
			opts.Snapshots = args
			repo, closeFn, err := a.openRepo(cmd, *file)
			if err != nil {
				return err
			}
			defer closeFn()
			start := time.Now()
			rep, err := repo.Verify(cmd.Context(), opts)
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if a.json {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				printVerify(a, &rep, time.Since(start))
			}
			if !rep.OK() {
				return fmt.Errorf("%w: %d missing chunks, %d corrupt chunks, %d bad manifests", ErrDamaged, len(rep.Missing), len(rep.Corrupt), len(rep.Manifests))
			}
			return nil
		}),
	}
	cmd.Flags().IntVar(&opts.Workers, "workers", 8, "chunks read and decoded at once")
	return cmd
}

func printVerify(a *app, rep *snapshot.VerifyReport, took time.Duration) {
	w := a.o.Stdout
	fmt.Fprintf(w, "checked %d snapshots, %d chunks, %s in %s\n", rep.Snapshots, rep.Chunks, humanize.IBytes(uint64(max(rep.Bytes, 0))), took.Round(time.Millisecond))
	for _, m := range rep.Manifests {
		fmt.Fprintf(w, "bad manifest: snapshot %s: %s\n", m.Snapshot, m.Err)
	}
	for _, group := range []struct {
		what string
		ps   []snapshot.ChunkProblem
	}{{"missing", rep.Missing}, {"corrupt", rep.Corrupt}} {
		for _, p := range group.ps {
			var refs []string
			for _, r := range p.Refs {
				refs = append(refs, fmt.Sprintf("%s/%s#%d", r.Snapshot, r.File, r.Index))
			}
			fmt.Fprintf(w, "%s chunk %s (%s): used by %s\n", group.what, p.ID, p.Err, strings.Join(refs, ", "))
		}
	}
	if rep.OK() {
		fmt.Fprintln(w, "no problems found")
	}
}
