package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
)

// The server-wide verbs of `shoal server`: join tokens, the fleet's hosts
// and the apps. They find the admin API as the other client verbs do
// (--admin, $SHOAL_ADMIN_URL, --token-file, $SHOAL_TOKEN, --ca-pin).

// newJoinTokenCmd is `shoal join-token [--ttl 1h] [--role agent]`.
func newJoinTokenCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join-token",
		Short: "make a one-time token with which a host joins the fleet of a shoal server",
		Long: `Ask the shoal server for a one-time join token and print it, alone on one line.
Give it to the host (shoal setup writes it, or agent.yaml's join_token_file); the
token is spent by the join and stops working after --ttl, used or not. It carries
the pin of the server's CA, so the joining host checks it reaches this server.`,
		Args: noArgs,
	}
	af := addUpFlags(cmd.Flags())
	ttl := cmd.Flags().String("ttl", "1h", "how long the token works (at most 168h)")
	role := cmd.Flags().String("role", string(api.RoleAgent), "the role of the joining node: agent or lb")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if d, err := time.ParseDuration(*ttl); err != nil || d <= 0 {
			return usagef("--ttl %q: want a duration such as 1h", *ttl)
		}
		if r := api.NodeRole(*role); !r.Valid() {
			return usagef("--role %q: want %s or %s", *role, api.RoleAgent, api.RoleLB)
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		tok, err := c.JoinToken(cmd.Context(), api.NodeRole(*role), *ttl)
		if err != nil {
			return apiErr(err)
		}
		fmt.Fprintln(env.Stdout, tok.Token)
		return nil
	}
	return cmd
}

// newHostsCmd is `shoal hosts` and its drain, undrain and events.
func newHostsCmd(env *Env) *cobra.Command {
	cmd := readCmd("hosts", "list the hosts of a shoal server's fleet: state, capacity and use, instances", func(ctx context.Context, c *client.Client, asJSON bool) error {
		hosts, err := c.Hosts(ctx)
		if err != nil {
			return apiErr(err)
		}
		if asJSON {
			return printJSON(env.Stdout, hosts)
		}
		printHosts(env.Stdout, hosts, time.Now())
		return nil
	})
	drain := func(use, short string, call func(*client.Client, context.Context, string) (client.HostStatus, error)) *cobra.Command {
		sub := &cobra.Command{Use: use + " HOST", Short: short, Args: exactArgs(1)}
		af := addUpFlags(sub.Flags())
		sub.RunE = func(sub *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			h, err := call(c, sub.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			printHosts(env.Stdout, []client.HostStatus{h}, time.Now())
			return nil
		}
		return sub
	}
	events := &cobra.Command{Use: "events", Short: "show the fleet's events: hosts joined, lost, back, draining", Args: noArgs}
	af := addUpFlags(events.Flags())
	out := addOutputFlag(events.Flags())
	after := events.Flags().Uint64("after", 0, "show events after this sequence number")
	limit := events.Flags().Int("limit", 100, "show at most this many events")
	events.RunE = func(cmd *cobra.Command, _ []string) error {
		asJSON, err := out.asJSON()
		if err != nil {
			return err
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		evs, err := c.HostEvents(cmd.Context(), *after, *limit)
		if err != nil {
			return apiErr(err)
		}
		for _, e := range evs {
			printEvent(env.Stdout, e, asJSON)
		}
		return nil
	}
	cmd.AddCommand(
		drain("drain", "place no new instance on a host", (*client.Client).DrainHost),
		drain("undrain", "let placement choose a drained host again", (*client.Client).UndrainHost),
		events,
	)
	return cmd
}

// newAppsCmd is `shoal apps`.
func newAppsCmd(env *Env) *cobra.Command {
	return readCmd("apps", "list the apps of a shoal server: release, instances, routes", func(ctx context.Context, c *client.Client, asJSON bool) error {
		apps, err := c.Apps(ctx)
		if err != nil {
			return apiErr(err)
		}
		if asJSON {
			return printJSON(env.Stdout, apps)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "APP\tRELEASE\tIN SERVICE\tHOSTS\tPATH")
		for _, a := range apps {
			rel := "-"
			if a.Release > 0 {
				rel = fmt.Sprintf("v%d", a.Release)
			}
			if a.Deploying {
				rel += " (deploying)"
			}
			hosts := "* (catch-all)"
			if len(a.Hosts) > 0 {
				hosts = strings.Join(a.Hosts, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", a.Name, rel, a.InService, a.Desired, hosts, a.Path)
		}
		tw.Flush()
		return nil
	})
}
