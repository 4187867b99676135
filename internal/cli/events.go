package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/shoal-dev/shoal/internal/client"
)

// runEvents is `shoal events [-n N] [-f] [-json]`.
func runEvents(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	af := addUpFlags(fs)
	n := fs.Int("n", 50, "show the last `N` events")
	follow := fs.Bool("f", false, "keep printing new events")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if err := fs.Parse(args); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() > 0 || *n < 1 {
		return usagef("usage: shoal events [-n N] [-f] [-json]")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
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
		if len(last) > *n {
			last = last[len(last)-*n:]
		}
		if len(evs) < 500 {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	for _, e := range last {
		printEvent(env.Stdout, e, *asJSON)
		after = e.Seq
	}
	if !*follow {
		return nil
	}
	return c.FollowEvents(ctx, after, func(e client.Event) error {
		printEvent(env.Stdout, e, *asJSON)
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
