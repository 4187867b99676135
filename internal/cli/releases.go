package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/client"
)

// newReleasesCmd is `shoal releases [-o json]`.
func newReleasesCmd(env *Env) *cobra.Command {
	return readCmd("releases", "list releases", func(ctx context.Context, c *client.Client, asJSON bool) error {
		return runReleases(ctx, env, c, asJSON)
	})
}

func runReleases(ctx context.Context, env *Env, c *client.Client, asJSON bool) error {
	rels, err := c.Releases(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(env.Stdout, rels)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tSTATUS\tCHANGE\tCREATED\tARTIFACT\tCOMMAND")
	for _, r := range rels {
		mark := ""
		if r.Current {
			mark = " *"
		}
		fmt.Fprintf(tw, "v%d%s\t%s\t%s\t%s\t%s\t%s\n", r.Version, mark, r.Status, r.Change,
			r.CreatedAt.Local().Format("2006-01-02 15:04:05"), shortDigest(r.Digest), r.Command)
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
