package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/api"
)

// The commands that instances and snapshots both have: restore, fork and
// delete. They differ in what the ID argument names (kind), their help texts
// and the one API call, which the caller passes in.

// restoreCommand builds `restore ID`: restore asks the server, and --wait
// follows the instance that answers until it runs.
func (a *app) restoreCommand(kind, short, hostHelp string,
	restore func(ctx context.Context, cl *api.ClientWithResponses, id string, req api.RestoreRequest) (*api.Instance, error)) *cobra.Command {
	var (
		host string
		w    waitFlags
	)
	cmd := &cobra.Command{
		Use:   "restore ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: a.startRunE(kind, "restoring", &w, func(cmd *cobra.Command, cl *api.ClientWithResponses, id string) (*api.Instance, error) {
			return restore(cmd.Context(), cl, id, api.RestoreRequest{Host: given(cmd, "host", &host)})
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", hostHelp)
	w.add(cmd, "the instance runs again (download and resume)")
	return cmd
}

// forkCommand builds `fork ID --name NAME`: fork asks the server, and
// --wait (waitHelp says until what) follows the new instance until it runs.
func (a *app) forkCommand(kind, short, waitHelp string,
	fork func(ctx context.Context, cl *api.ClientWithResponses, id string, req api.ForkRequest) (*api.Instance, error)) *cobra.Command {
	var (
		req  api.ForkRequest
		host string
		w    waitFlags
	)
	cmd := &cobra.Command{
		Use:   "fork ID --name NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: a.startRunE(kind, "forking", &w, func(cmd *cobra.Command, cl *api.ClientWithResponses, id string) (*api.Instance, error) {
			req.Host = given(cmd, "host", &host)
			return fork(cmd.Context(), cl, id, req)
		}),
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "name of the new instance (required)")
	_ = cmd.MarkFlagRequired("name")
	cmd.Flags().StringVar(&host, "host", "", "host id to start the fork on")
	w.add(cmd, waitHelp)
	return cmd
}

// startRunE runs restore and fork: start asks the server to start an
// instance from the ID argument, a kind's id. With --wait the command then
// waits for that instance to run (verb names the wait); it shows the instance.
func (a *app) startRunE(kind, verb string, w *waitFlags,
	start func(cmd *cobra.Command, cl *api.ClientWithResponses, id string) (*api.Instance, error)) func(*cobra.Command, []string) error {
	return run(func(cmd *cobra.Command, args []string) error {
		id := args[0]
		cl, err := a.clientFor(cmd, kind, id)
		if err != nil {
			return err
		}
		i, err := start(cmd, cl, id)
		if err != nil {
			return err
		}
		if w.wait {
			if i, err = a.waitInstance(cmd.Context(), cl, *w, verb+" "+id, i.Id); err != nil {
				return err
			}
		}
		return show(a, i, printInstance)
	})
}

// deleted is the --json document of a delete (the API answers 204 with no
// body).
type deleted struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// deleteCommand builds `delete ID`; del asks the server.
func (a *app) deleteCommand(kind, short string, del func(ctx context.Context, cl *api.ClientWithResponses, id string) error) *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   short,
		Args:    cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			cl, err := a.clientFor(cmd, kind, id)
			if err != nil {
				return err
			}
			if err := del(cmd.Context(), cl, id); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(deleted{ID: id, Deleted: true})
			}
			_, err = fmt.Fprintf(a.o.Stdout, "deleted %s %s\n", kind, id)
			return err
		}),
	}
}
