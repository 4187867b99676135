package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/shoal-dev/shoal/internal/client"
)

// runEnv is `shoal env list | set [--secret] KEY=VALUE... | unset KEY...`.
// set and unset make a config-only release (no build) and roll it out.
func runEnv(ctx context.Context, env *Env, args []string) error {
	const usage = "usage: shoal env list | set [--secret] KEY=VALUE... | unset KEY..."
	if len(args) == 0 {
		return usagef(usage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("env "+verb, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	af := addUpFlags(fs)
	secret := fs.Bool("secret", false, "set: the values are secrets, redacted in every output")
	rest, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return &UsageError{Err: err}
	}
	var set []client.EnvVar
	var unset []string
	switch verb {
	case "list":
		if len(rest) > 0 {
			return usagef(usage)
		}
	case "set":
		if len(rest) == 0 {
			return usagef(usage)
		}
		for _, a := range rest {
			k, v, ok := strings.Cut(a, "=")
			if !ok || k == "" {
				return usagef("env set: %q is not KEY=VALUE", a)
			}
			set = append(set, client.EnvVar{Name: k, Value: v, Secret: *secret})
		}
	case "unset":
		if len(rest) == 0 {
			return usagef(usage)
		}
		unset = rest
	default:
		return usagef(usage)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	if verb == "list" {
		vs, err := c.Env(ctx)
		if err != nil {
			return apiErr(err)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVALUE")
		for _, v := range vs {
			fmt.Fprintf(tw, "%s\t%s\n", v.Name, v.Value)
		}
		return tw.Flush()
	}
	pr := newProgressPrinter(env.Stdout)
	res, err := c.SetEnv(ctx, set, unset, pr.line)
	return pr.finish("env "+verb, res, err)
}
