package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/api"
)

func (a *app) snapshotsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "snapshots",
		Aliases: []string{"snapshot", "s"},
		Short:   "Take, list, fork, restore and delete snapshots",
	})
	addClientFlags(cmd)
	cmd.AddCommand(a.snapshotsCreate(), a.snapshotsList(), a.snapshotsGet(), a.snapshotsFork(),
		a.snapshotsRestore(), a.snapshotsDelete())
	return cmd
}

func (a *app) snapshotsCreate() *cobra.Command {
	var (
		req  api.CreateSnapshotRequest
		kind string
		comp compressionFlags
		w    waitFlags
	)
	cmd := &cobra.Command{
		Use:   "create INSTANCE --name NAME",
		Short: "Take a named snapshot of an instance",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := validID("instance", id); err != nil {
				return err
			}
			req.Kind = api.SnapshotKind(kind)
			if !req.Kind.Valid() {
				return usageErrorf("--kind %q: want standby or stopped", kind)
			}
			c, err := comp.value(cmd)
			if err != nil {
				return err
			}
			req.Compression = c
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.CreateSnapshotWithResponse(cmd.Context(), id, req)
			s, err := ok201[api.Snapshot]("snapshot instance "+id, rsp, err)
			if err != nil {
				return err
			}
			if w.wait {
				if s, err = a.waitCentral(cmd.Context(), cl, w, s.Id); err != nil {
					return err
				}
			}
			return show(a, s, printSnapshot)
		}),
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "name of the snapshot (required)")
	_ = cmd.MarkFlagRequired("name")
	cmd.Flags().StringVar(&kind, "kind", string(api.SnapshotKindStandby), "standby (memory and devices) or stopped (configuration only)")
	comp.add(cmd, "compression of this snapshot (overrides the instance policy and the server default)")
	w.add(cmd, "the snapshot is central (uploaded)")
	return cmd
}

func (a *app) snapshotsList() *cobra.Command {
	var instance, state string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List snapshots, newest first",
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			p := api.ListSnapshotsParams{Instance: optional(instance)}
			if state != "" {
				s := api.SnapshotState(state)
				if !s.Valid() {
					return usageErrorf("--state %q: want local, uploading, central or error", state)
				}
				p.State = &s
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.ListSnapshotsWithResponse(cmd.Context(), &p)
			l, err := ok200[api.SnapshotList]("list snapshots", rsp, err)
			if err != nil {
				return err
			}
			return show(a, l, printSnapshots)
		}),
	}
	cmd.Flags().StringVar(&instance, "instance", "", "only snapshots of this instance id")
	cmd.Flags().StringVar(&state, "state", "", "only snapshots in this state (local, uploading, central, error)")
	return cmd
}

func (a *app) snapshotsGet() *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a snapshot",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			cl, err := a.clientFor(cmd, "snapshot", id)
			if err != nil {
				return err
			}
			var s *api.Snapshot
			if w.wait {
				s, err = a.waitCentral(cmd.Context(), cl, w, id)
			} else {
				s, err = getSnapshot(cmd.Context(), cl, id)
			}
			if err != nil {
				return err
			}
			return show(a, s, printSnapshot)
		}),
	}
	w.add(cmd, "the snapshot is central (uploaded)")
	return cmd
}

func (a *app) snapshotsFork() *cobra.Command {
	return a.forkCommand("snapshot", "Start a new instance from a snapshot", "the fork runs (download and resume)",
		func(ctx context.Context, cl *api.ClientWithResponses, id string, req api.ForkRequest) (*api.Instance, error) {
			rsp, err := cl.ForkSnapshotWithResponse(ctx, id, req)
			return ok201[api.Instance]("fork snapshot "+id, rsp, err)
		})
}

func (a *app) snapshotsRestore() *cobra.Command {
	return a.restoreCommand("snapshot", "Resume the instance a snapshot was taken from, from that snapshot", "host id to restore on",
		func(ctx context.Context, cl *api.ClientWithResponses, id string, req api.RestoreRequest) (*api.Instance, error) {
			rsp, err := cl.RestoreSnapshotWithResponse(ctx, id, req)
			return ok200[api.Instance]("restore snapshot "+id, rsp, err)
		})
}

func (a *app) snapshotsDelete() *cobra.Command {
	return a.deleteCommand("snapshot", "Delete a named snapshot",
		func(ctx context.Context, cl *api.ClientWithResponses, id string) error {
			rsp, err := cl.DeleteSnapshotWithResponse(ctx, id)
			return ok204("delete snapshot "+id, rsp, err)
		})
}
