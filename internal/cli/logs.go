package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/shoal-dev/shoal/internal/api"
)

// runLogs is `shoal logs [-f] [-n N] [instance]`. Without an instance it
// shows the oldest instance in service (or the first listed).
func runLogs(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	af := addUpFlags(fs)
	follow := fs.Bool("f", false, "keep printing new output")
	n := fs.Int("n", 100, "show the last `N` lines (0: all)")
	if err := fs.Parse(args); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() > 1 || *n < 0 {
		return usagef("usage: shoal logs [-f] [-n N] [instance]")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	id := fs.Arg(0)
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
	return c.Logs(ctx, id, *n, *follow, env.Stdout)
}
