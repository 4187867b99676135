package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// The daemon verbs parse their own flags (runUp, runLB, runAgent, with the flag
// package: one dash or two): their cobra commands hand over the raw
// arguments, and answer -h, -help and --help with the command's help on
// stdout followed by the daemon's own usage, which its flag set writes to
// stderr; the exit is 0. `shoal help up` prints both to stdout.

func newUpCmd(env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "up [-c shoal.yaml] [flags]",
		Short: "build and run the app of ./shoal.yaml on this machine behind the balancer",
		Long: "Build the app of shoal.yaml (once per source change), run its instances on this machine\n" +
			"behind the load balancer, with the admin API and the dashboard. Ctrl-C or SIGTERM drains and stops.",
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			if wantsHelp(args) {
				c.Root().HelpFunc()(c, args) // cobra's part only
				return runUp(c.Context(), env, []string{"-h"})
			}
			return runUp(c.Context(), env, args)
		},
	}
	c.SetHelpFunc(daemonHelp(c, runUp))
	return c
}

func newLBCmd(env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "lb [-c lb.yaml] [flags] | lb COMMAND",
		Short: "run a load balancer from a static file (lb.yaml); 'shoal lb status' shows it",
		Long: "Without a command, run a load balancer and its admin API from lb.yaml (ctrl-C or SIGTERM\n" +
			"drains then exits 0, SIGHUP reloads). With a command, talk to a running one.\n\n" +
			"Started while a balancer runs from the same lb.yaml, it takes over that one's listening\n" +
			"sockets and the old one drains and exits: an upgrade with no gap. SIGUSR2 makes a running\n" +
			"balancer start its binary (the file now on disk) again to the same end.",
		DisableFlagParsing: true,
		// Any word that is not one of the commands below is the daemon's
		// (its flags' values); runLB rejects what it does not know.
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if wantsHelp(args) {
				c.Root().HelpFunc()(c, args) // cobra's part only
				return runLB(c.Context(), env, []string{"-h"})
			}
			return runLB(c.Context(), env, args)
		},
	}
	c.AddCommand(lbClientCmds(env)...)
	c.SetHelpFunc(daemonHelp(c, runLB))
	return c
}

func newAgentCmd(env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "agent [-c /etc/shoal/agent.yaml] [flags]",
		Short: "run the host agent of a fleet: joins the server, then runs the instances it places here",
		Long: "Run the host agent from agent.yaml: join the fleet with the token of join_token_file at the\n" +
			"first start, adopt the instances of the previous run, serve the server over mutual TLS.\n" +
			"Ctrl-C or SIGTERM stops the agent and leaves its instances running.",
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			if wantsHelp(args) {
				c.Root().HelpFunc()(c, args) // cobra's part only
				return runAgent(c.Context(), env, []string{"-h"})
			}
			return runAgent(c.Context(), env, args)
		},
	}
	c.SetHelpFunc(daemonHelp(c, runAgent))
	return c
}

// daemonHelp returns the help function of the daemon command d: cobra's
// help, then the flags that run parses, printed by run itself. Sub-commands
// inherit the function and get cobra's help only.
func daemonHelp(d *cobra.Command, run func(context.Context, *Env, []string) error) func(*cobra.Command, []string) {
	return func(c *cobra.Command, args []string) {
		d.Root().HelpFunc()(c, args)
		if c != d {
			return
		}
		out := c.OutOrStdout()
		fmt.Fprintf(out, "\nFlags of %s (one dash or two):\n", c.CommandPath())
		ctx := c.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		// With -h the flag set prints its defaults and returns at once.
		run(ctx, &Env{Stdout: out, Stderr: out}, []string{"-h"})
	}
}
