package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// newMaintenanceCmd is `shoal maintenance on|off [--retry-after 30s]`: the
// balancer answers every proxied request with a 503 page and Retry-After.
func newMaintenanceCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:       "maintenance on|off [--retry-after 30s]",
		Short:     "make the balancer answer 503 with Retry-After, or serve again",
		Args:      exactArgs(1),
		ValidArgs: []string{"on", "off"},
	}
	af := addUpFlags(cmd.Flags())
	retry := cmd.Flags().Duration("retry-after", 30*time.Second, "Retry-After sent with the 503 (0: none)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if (args[0] != "on" && args[0] != "off") || *retry < 0 {
			return usagef("usage: shoal maintenance on|off [--retry-after 30s]")
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		on := args[0] == "on"
		if err := c.Maintenance(cmd.Context(), on, *retry); err != nil {
			return apiErr(err)
		}
		if on {
			fmt.Fprintf(env.Stdout, "maintenance on: the balancer answers 503 (Retry-After %s)\n", *retry)
		} else {
			fmt.Fprintln(env.Stdout, "maintenance off: the balancer serves the app again")
		}
		return nil
	}
	return cmd
}
