package cli

import "github.com/spf13/cobra"

// daemonCommands returns the daemons' commands whose packages exist.
func (a *app) daemonCommands() []*cobra.Command { return nil }
