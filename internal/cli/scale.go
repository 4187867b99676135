package cli

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/client"
)

// newScaleCmd is `shoal scale N`.
func newScaleCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scale N",
		Short: "set the desired instance count",
		Args:  exactArgs(1),
	}
	af := addUpFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return usagef("scale: %q is not a count", args[0])
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		return runScale(cmd.Context(), env, c, n)
	}
	return cmd
}

func runScale(ctx context.Context, env *Env, c *client.Client, n int) error {
	st, err := c.Scale(ctx, n)
	if client.IsStatus(err, http.StatusBadRequest) {
		return &UsageError{Err: apiErr(err)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "group %s: desired %d (min %d, max %d), %d in service now\n", st.App, st.Desired, st.Min, st.Max, st.InService)
	return nil
}
