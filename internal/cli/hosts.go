package cli

import (
	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/api"
)

func (a *app) hostsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "hosts",
		Short: "Show the host daemons registered with the server",
	})
	addClientFlags(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List hosts with their state, capacity and cache",
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client(cmd)
			if err != nil {
				return err
			}
			rsp, err := cl.ListHostsWithResponse(cmd.Context())
			l, err := ok200[api.HostList]("list hosts", rsp, err)
			if err != nil {
				return err
			}
			return show(a, l, printHosts)
		}),
	})
	return cmd
}
