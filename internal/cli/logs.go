package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
)

// newLogsCmd is `shoal logs [-f] [-n N] [instance]`. Without an instance
// it shows the oldest instance in service (or the first listed).
func newLogsCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs [-f] [-n N] [instance]",
		Short: "show an instance's log",
		Args:  maxArgs(1),
	}
	af := addUpFlags(cmd.Flags())
	follow := cmd.Flags().BoolP("follow", "f", false, "keep printing new output")
	n := cmd.Flags().IntP("tail", "n", 100, "show the last `N` lines (0: all)")
	cmd.ValidArgsFunction = completeFirstArg(af, instanceNames)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *n < 0 {
			return usagef("-n %d: want 0 (all) or more", *n)
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		id := ""
		if len(args) == 1 {
			id = args[0]
		}
		return runLogs(cmd.Context(), env, c, id, *n, *follow)
	}
	return cmd
}

func runLogs(ctx context.Context, env *Env, c *client.Client, id string, n int, follow bool) error {
	if id == "" {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.State == api.InService {
				id = in.ID
				break
			}
		}
		if id == "" && len(st.Instances) > 0 {
			id = st.Instances[0].ID
		}
		if id == "" {
			return fmt.Errorf("no instance to show")
		}
		fmt.Fprintf(env.Stderr, "==> %s <==\n", id)
	}
	return c.Logs(ctx, id, n, follow, env.Stdout)
}
