package cli

import (
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

func (a *app) showSnapshot(s *api.Snapshot) error {
	if a.json {
		return a.printJSON(s)
	}
	return printSnapshot(a.o.Stdout, s)
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
			return a.showSnapshot(s)
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
			var p api.ListSnapshotsParams
			if instance != "" {
				p.Instance = &instance
			}
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
			if a.json {
				return a.printJSON(l)
			}
			return printSnapshots(a.o.Stdout, l.Items)
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
			if err := validID("snapshot", id); err != nil {
				return err
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			var s *api.Snapshot
			if w.wait {
				s, err = a.waitCentral(cmd.Context(), cl, w, id)
			} else {
				rsp, gerr := cl.GetSnapshotWithResponse(cmd.Context(), id)
				s, err = ok200[api.Snapshot]("get snapshot "+id, rsp, gerr)
			}
			if err != nil {
				return err
			}
			return a.showSnapshot(s)
		}),
	}
	w.add(cmd, "the snapshot is central (uploaded)")
	return cmd
}

func (a *app) snapshotsFork() *cobra.Command {
	var (
		req  api.ForkRequest
		host string
		w    waitFlags
	)
	cmd := &cobra.Command{
		Use:   "fork ID --name NAME",
		Short: "Start a new instance from a snapshot",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := validID("snapshot", id); err != nil {
				return err
			}
			if cmd.Flags().Changed("host") {
				req.Host = &host
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.ForkSnapshotWithResponse(cmd.Context(), id, req)
			i, err := ok201[api.Instance]("fork snapshot "+id, rsp, err)
			if err != nil {
				return err
			}
			if w.wait {
				if i, err = a.waitInstance(cmd.Context(), cl, w, "forking "+id, i.Id); err != nil {
					return err
				}
			}
			return a.showInstance(i)
		}),
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "name of the new instance (required)")
	_ = cmd.MarkFlagRequired("name")
	cmd.Flags().StringVar(&host, "host", "", "host id to start the fork on")
	w.add(cmd, "the fork runs (download and resume)")
	return cmd
}

func (a *app) snapshotsRestore() *cobra.Command {
	var (
		host string
		w    waitFlags
	)
	cmd := &cobra.Command{
		Use:   "restore ID",
		Short: "Resume the instance a snapshot was taken from, from that snapshot",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := validID("snapshot", id); err != nil {
				return err
			}
			var req api.RestoreRequest
			if cmd.Flags().Changed("host") {
				req.Host = &host
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.RestoreSnapshotWithResponse(cmd.Context(), id, req)
			i, err := ok200[api.Instance]("restore snapshot "+id, rsp, err)
			if err != nil {
				return err
			}
			if w.wait {
				if i, err = a.waitInstance(cmd.Context(), cl, w, "restoring "+id, i.Id); err != nil {
					return err
				}
			}
			return a.showInstance(i)
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "host id to restore on")
	w.add(cmd, "the instance runs again (download and resume)")
	return cmd
}

func (a *app) snapshotsDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Delete a named snapshot",
		Args:    cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := validID("snapshot", id); err != nil {
				return err
			}
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.DeleteSnapshotWithResponse(cmd.Context(), id)
			if err := ok204("delete snapshot "+id, rsp, err); err != nil {
				return err
			}
			return a.showDeleted("snapshot", id)
		}),
	}
}
