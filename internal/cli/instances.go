package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/api"
)

// compressionFlags build an api.Compression from --compression,
// --compression-level and --no-compression.
type compressionFlags struct {
	algorithm string
	level     int
	off       bool
}

func (f *compressionFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&f.algorithm, "compression", "", what+": zstd, lz4 or none")
	cmd.Flags().IntVar(&f.level, "compression-level", 0, "level of --compression: zstd 1-19, lz4 0-9")
	cmd.Flags().BoolVar(&f.off, "no-compression", false, what+": store chunks uncompressed (enabled: false)")
}

// value is nil when no compression flag was given, so the next level of
// precedence applies.
func (f *compressionFlags) value(cmd *cobra.Command) (*api.Compression, error) {
	fl := cmd.Flags()
	if !fl.Changed("compression") && !fl.Changed("compression-level") && !fl.Changed("no-compression") {
		return nil, nil
	}
	if f.off && (fl.Changed("compression") || fl.Changed("compression-level")) {
		return nil, usageErrorf("--no-compression excludes --compression and --compression-level")
	}
	var c api.Compression
	if fl.Changed("no-compression") {
		enabled := !f.off
		c.Enabled = &enabled
	}
	if fl.Changed("compression") {
		alg := f.algorithm
		c.Algorithm = &alg
	}
	if fl.Changed("compression-level") {
		level := f.level
		c.Level = &level
	}
	return &c, nil
}

// given is v when the flag name was given on cmd, else nil: an optional
// request field the server defaults.
func given(cmd *cobra.Command, name string, v *string) *string {
	if cmd.Flags().Changed(name) {
		return v
	}
	return nil
}

// optional is a filter parameter: nil when s is empty.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *app) instancesCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "instances",
		Aliases: []string{"instance", "i"},
		Short:   "Create, list, stand by, restore, fork and delete instances (VMs)",
	})
	addClientFlags(cmd)
	cmd.AddCommand(a.instancesCreate(), a.instancesList(), a.instancesGet(), a.instancesStandby(),
		a.instancesRestore(), a.instancesFork(), a.instancesDelete())
	return cmd
}

func (a *app) instancesCreate() *cobra.Command {
	var (
		req  api.CreateInstanceRequest
		host string
		comp compressionFlags
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create and boot an instance",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			req.Host = given(cmd, "host", &host)
			c, err := comp.value(cmd)
			if err != nil {
				return err
			}
			if c != nil {
				req.SnapshotPolicy = &api.SnapshotPolicy{Compression: c}
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.CreateInstanceWithResponse(cmd.Context(), req)
			i, err := ok201[api.Instance]("create instance "+req.Name, rsp, err)
			if err != nil {
				return err
			}
			return show(a, i, printInstance)
		}),
	}
	cmd.Flags().StringVar(&req.Image, "image", "default", "guest image")
	cmd.Flags().Int32Var(&req.MemoryMib, "memory", 256, "guest memory in MiB (64-1048576)")
	cmd.Flags().Int32Var(&req.Vcpus, "vcpus", 1, "virtual CPUs (1-256)")
	cmd.Flags().StringVar(&host, "host", "", "host id to place the instance on (default: the server chooses)")
	comp.add(cmd, "the instance's snapshot compression policy")
	return cmd
}

func (a *app) instancesList() *cobra.Command {
	var name, host, state string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List instances, newest first",
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			p := api.ListInstancesParams{Name: optional(name), Host: optional(host)}
			if state != "" {
				s := api.InstanceState(state)
				if !s.Valid() {
					return usageErrorf("--state %q: want Creating, Running, Standby, Stopped, Deleted or Error", state)
				}
				p.State = &s
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.ListInstancesWithResponse(cmd.Context(), &p)
			l, err := ok200[api.InstanceList]("list instances", rsp, err)
			if err != nil {
				return err
			}
			return show(a, l, printInstances)
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "only the instance with this name")
	cmd.Flags().StringVar(&host, "host", "", "only instances on this host")
	cmd.Flags().StringVar(&state, "state", "", "only instances in this state (Running, Standby ...)")
	return cmd
}

func (a *app) instancesGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show an instance",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			cl, err := a.clientFor(cmd, "instance", id)
			if err != nil {
				return err
			}
			i, err := getInstance(cmd.Context(), cl, id)
			if err != nil {
				return err
			}
			return show(a, i, printInstance)
		}),
	}
}

func (a *app) instancesStandby() *cobra.Command {
	var (
		comp compressionFlags
		w    waitFlags
	)
	cmd := &cobra.Command{
		Use:   "standby ID",
		Short: "Pause an instance and save it; the upload to the store runs afterwards",
		Long: `Pause an instance and save its memory and device state on its host. The
command returns once the snapshot is locally durable (storage "local");
the upload to the store runs afterwards. With --wait it blocks until the
snapshot is central (committed in the store, restorable on any host),
showing the upload's progress.`,
		Args: cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := validID("instance", id); err != nil {
				return err
			}
			c, err := comp.value(cmd)
			if err != nil {
				return err
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.StandbyInstanceWithResponse(cmd.Context(), id, api.StandbyRequest{Compression: c})
			i, err := ok200[api.Instance]("standby instance "+id, rsp, err)
			if err != nil {
				return err
			}
			if w.wait {
				if i, err = a.waitStandbyCentral(cmd, cl, w, i); err != nil {
					return err
				}
			}
			return show(a, i, printInstance)
		}),
	}
	comp.add(cmd, "compression of this snapshot (overrides the instance policy and the server default)")
	w.add(cmd, "the snapshot is central (uploaded)")
	return cmd
}

// waitStandbyCentral waits for the standby snapshot of i to be central and
// returns the instance as it is then.
func (a *app) waitStandbyCentral(cmd *cobra.Command, cl *api.ClientWithResponses, w waitFlags, i *api.Instance) (*api.Instance, error) {
	ctx := cmd.Context()
	get := func(ctx context.Context) (*api.Instance, error) { return getInstance(ctx, cl, i.Id) }
	if i.SnapshotId != nil && *i.SnapshotId != "" {
		if _, err := a.waitCentral(ctx, cl, w, *i.SnapshotId); err != nil {
			return nil, err
		}
		return get(ctx)
	}
	// No snapshot id in the answer: follow the instance's storage instead.
	return pollGet(a, ctx, w, "uploading "+i.Id, get, func(got *api.Instance) (bool, *api.Progress, string, error) {
		var p *api.Progress
		if got.Job != nil {
			p = got.Job.Progress
		}
		st := storageOf(got.Storage)
		if got.Storage != nil && *got.Storage == api.SnapshotStateError {
			return false, nil, st, fmt.Errorf("instance %s: standby upload failed: %s", i.Id, str(got.Error))
		}
		return got.Storage != nil && *got.Storage == api.SnapshotStateCentral, p, "storage " + st, nil
	})
}

func (a *app) instancesRestore() *cobra.Command {
	return a.restoreCommand("instance", "Resume a standby instance, on its host or any other",
		"host id to restore on (default: the server prefers the host holding the files)",
		func(ctx context.Context, cl *api.ClientWithResponses, id string, req api.RestoreRequest) (*api.Instance, error) {
			rsp, err := cl.RestoreInstanceWithResponse(ctx, id, req)
			return ok200[api.Instance]("restore instance "+id, rsp, err)
		})
}

func (a *app) instancesFork() *cobra.Command {
	return a.forkCommand("instance", "Start a new instance from a standby instance's memory", "the fork runs",
		func(ctx context.Context, cl *api.ClientWithResponses, id string, req api.ForkRequest) (*api.Instance, error) {
			rsp, err := cl.ForkInstanceWithResponse(ctx, id, req)
			return ok201[api.Instance]("fork instance "+id, rsp, err)
		})
}

func (a *app) instancesDelete() *cobra.Command {
	return a.deleteCommand("instance", "Delete an instance and its standby snapshot",
		func(ctx context.Context, cl *api.ClientWithResponses, id string) error {
			rsp, err := cl.DeleteInstanceWithResponse(ctx, id)
			return ok204("delete instance "+id, rsp, err)
		})
}
