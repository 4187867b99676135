package cli

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// runMaintenance is `shoal maintenance on|off [--retry-after 30s]`: the
// balancer answers every proxied request with a 503 page and Retry-After.
func runMaintenance(ctx context.Context, env *Env, args []string) error {
	const usage = "usage: shoal maintenance on|off [--retry-after 30s]"
	if len(args) == 0 || (args[0] != "on" && args[0] != "off") {
		return usagef(usage)
	}
	fs := flag.NewFlagSet("maintenance", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	af := addUpFlags(fs)
	retry := fs.Duration("retry-after", 30*time.Second, "Retry-After sent with the 503 (0: none)")
	if err := fs.Parse(args[1:]); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() > 0 || *retry < 0 {
		return usagef(usage)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	on := args[0] == "on"
	if err := c.Maintenance(ctx, on, *retry); err != nil {
		return apiErr(err)
	}
	if on {
		fmt.Fprintf(env.Stdout, "maintenance on: the balancer answers 503 (Retry-After %s)\n", *retry)
	} else {
		fmt.Fprintln(env.Stdout, "maintenance off: the balancer serves the app again")
	}
	return nil
}
