package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/client"
)

// newEventsCmd is `shoal events [-n N] [-f] [-o json]`.
func newEventsCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events [-n N] [-f]",
		Short: "show recent events with their reasons",
		Args:  noArgs,
	}
	af := addUpFlags(cmd.Flags())
	out := addOutputFlag(cmd.Flags())
	n := cmd.Flags().IntP("tail", "n", 50, "show the last `N` events")
	follow := cmd.Flags().BoolP("follow", "f", false, "keep printing new events")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		asJSON, err := out.asJSON()
		if err != nil {
			return err
		}
		if *n < 1 {
			return usagef("-n %d: want 1 or more", *n)
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		return runEvents(cmd.Context(), env, c, *n, *follow, asJSON)
	}
	return cmd
}

// runEvents prints the last n events (with asJSON, one JSON object each,
// the admin API's form), then with follow the new ones as they come.
func runEvents(ctx context.Context, env *Env, c *client.Client, n int, follow, asJSON bool) error {
	// Page through everything and keep the last n: the API lists oldest
	// first from a sequence number.
	var last []client.Event
	var after uint64
	for range 1000 {
		evs, err := c.Events(ctx, after, 500)
		if err != nil {
			return err
		}
		last = append(last, evs...)
		if len(last) > n {
			last = last[len(last)-n:]
		}
		if len(evs) < 500 {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	for _, e := range last {
		printEvent(env.Stdout, e, asJSON)
		after = e.Seq
	}
	if !follow {
		return nil
	}
	return c.FollowEvents(ctx, after, func(e client.Event) error {
		printEvent(env.Stdout, e, asJSON)
		return nil
	})
}

func printEvent(w io.Writer, e client.Event, asJSON bool) {
	if asJSON {
		printJSON(w, e)
		return
	}
	subject := e.Type
	if e.Instance != "" {
		subject = e.Instance
		if e.State != "" {
			subject += " -> " + e.State
		}
	} else if e.Release != 0 {
		subject = fmt.Sprintf("%s v%d", e.Type, e.Release)
	}
	fmt.Fprintf(w, "%s  %-5d %s: %s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Seq, subject, e.Reason)
}
