package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/client"
)

// newEnvCmd is `shoal env list | set [--secret] KEY=VALUE... | unset KEY...`.
// set and unset make a config-only release (no build) and roll it out.
func newEnvCmd(env *Env) *cobra.Command {
	const usage = "usage: shoal env list | set [--secret] KEY=VALUE... | unset KEY..."
	cmd := &cobra.Command{
		Use:   "env list | set [--secret] KEY=VALUE... | unset KEY...",
		Short: "env overrides, each change a config-only release",
		// Without a known command: a usage error (exit 2), as before.
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown env command %q; %s", args[0], usage)
			}
			return usagef(usage)
		},
	}

	list := &cobra.Command{Use: "list", Short: "list the env overrides (secrets redacted)", Args: noArgs}
	listFlags := addUpFlags(list.Flags())
	out := addOutputFlag(list.Flags())
	list.RunE = func(c *cobra.Command, _ []string) error {
		asJSON, err := out.asJSON()
		if err != nil {
			return err
		}
		cl, err := listFlags.client()
		if err != nil {
			return err
		}
		vs, err := cl.Env(c.Context())
		if err != nil {
			return apiErr(err)
		}
		if asJSON {
			if vs == nil {
				vs = []client.EnvVar{} // [], not null
			}
			return printJSON(env.Stdout, vs)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVALUE")
		for _, v := range vs {
			fmt.Fprintf(tw, "%s\t%s\n", v.Name, v.Value)
		}
		return tw.Flush()
	}

	set := &cobra.Command{Use: "set [--secret] KEY=VALUE...", Short: "set env overrides and roll out a config-only release", Args: minArgs(1)}
	setFlags := addUpFlags(set.Flags())
	secret := set.Flags().Bool("secret", false, "the values are secrets, redacted in every output")
	set.RunE = func(c *cobra.Command, args []string) error {
		var vars []client.EnvVar
		for _, a := range args {
			k, v, ok := strings.Cut(a, "=")
			if !ok || k == "" {
				return usagef("env set: %q is not KEY=VALUE", a)
			}
			vars = append(vars, client.EnvVar{Name: k, Value: v, Secret: *secret})
		}
		cl, err := setFlags.client()
		if err != nil {
			return err
		}
		pr := newProgressPrinter(env.Stdout)
		res, err := cl.SetEnv(c.Context(), vars, nil, pr.line)
		return pr.finish("env set", res, err)
	}

	unset := &cobra.Command{Use: "unset KEY...", Short: "remove env overrides and roll out a config-only release", Args: minArgs(1)}
	unsetFlags := addUpFlags(unset.Flags())
	unset.RunE = func(c *cobra.Command, args []string) error {
		cl, err := unsetFlags.client()
		if err != nil {
			return err
		}
		pr := newProgressPrinter(env.Stdout)
		res, err := cl.SetEnv(c.Context(), nil, args, pr.line)
		return pr.finish("env unset", res, err)
	}
	cmd.AddCommand(list, set, unset)
	return cmd
}
