package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
)

// runReleases is `shoal releases [-json]`.
func runReleases(ctx context.Context, env *Env, args []string) error {
	c, asJSON, err := readCommand(env, "releases", args)
	if err != nil {
		return err
	}
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
