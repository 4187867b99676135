package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/client"
)

// newServersCmd is `shoal servers` (a Raft cluster's members) and its add
// and remove.
func newServersCmd(env *Env) *cobra.Command {
	cmd := readCmd("servers", "list the servers of a shoal server cluster: address, role, term, last contact, applied index", func(ctx context.Context, c *client.Client, asJSON bool) error {
		servers, err := c.Servers(ctx)
		if err != nil {
			return apiErr(err)
		}
		if asJSON {
			return printJSON(env.Stdout, servers)
		}
		printServers(env.Stdout, servers, time.Now())
		return nil
	})
	add := &cobra.Command{Use: "add ID ADDRESS", Short: "add a server to the cluster by its cluster.id and raft address (cluster.advertise)", Args: exactArgs(2)}
	addFlags := addUpFlags(add.Flags())
	add.RunE = func(sub *cobra.Command, args []string) error {
		c, err := addFlags.client()
		if err != nil {
			return err
		}
		servers, err := c.AddServer(sub.Context(), args[0], args[1])
		if err != nil {
			return apiErr(err)
		}
		printServers(env.Stdout, servers, time.Now())
		return nil
	}
	remove := &cobra.Command{Use: "remove ID", Short: "remove a server from the cluster", Args: exactArgs(1)}
	removeFlags := addUpFlags(remove.Flags())
	remove.RunE = func(sub *cobra.Command, args []string) error {
		c, err := removeFlags.client()
		if err != nil {
			return err
		}
		if err := c.RemoveServer(sub.Context(), args[0]); err != nil {
			return apiErr(err)
		}
		fmt.Fprintf(env.Stdout, "removed %s\n", args[0])
		return nil
	}
	cmd.AddCommand(add, remove)
	return cmd
}

// printServers writes servers as a table.
func printServers(w io.Writer, servers []client.ServerStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tTERM\tLAST CONTACT\tAPPLIED")
	for _, s := range servers {
		role, contact := s.Role, "-"
		if role == "" {
			role = "unreachable" // why: s.Error, in -o json
		}
		if !s.LastContact.IsZero() {
			contact = now.Sub(s.LastContact).Round(time.Millisecond).String() + " ago"
		}
		if !s.Voter {
			role += " (non-voter)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\n", s.ID, s.Address, role, s.Term, contact, s.AppliedIndex)
	}
	tw.Flush()
}
