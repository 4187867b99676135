package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/client"
)

// completeFirstArg returns a completion function for a verb's first
// argument that asks the admin API (found as the verb's flags say) for the
// candidates. It offers nothing, and no file names, when the API does not
// answer within a second: completion must never hang a shell.
func completeFirstArg(af *upFlags, list func(ctx context.Context, c *client.Client) ([]cobra.Completion, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := af.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		out, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// instanceNames lists the group's instances with their state.
func instanceNames(ctx context.Context, c *client.Client) ([]cobra.Completion, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []cobra.Completion
	for _, in := range st.Instances {
		out = append(out, cobra.CompletionWithDesc(in.ID, fmt.Sprintf("v%d %s", in.Release, in.State)))
	}
	return out, nil
}

// releaseNames lists the releases other than the current one, newest
// first, as vN with their status.
func releaseNames(ctx context.Context, c *client.Client) ([]cobra.Completion, error) {
	rels, err := c.Releases(ctx)
	if err != nil {
		return nil, err
	}
	var out []cobra.Completion
	for i := len(rels) - 1; i >= 0; i-- {
		if r := rels[i]; !r.Current {
			out = append(out, cobra.CompletionWithDesc(fmt.Sprintf("v%d", r.Version), string(r.Status)))
		}
	}
	return out, nil
}
