package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/daemon"
)

func newServerCmd(env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "server [-c /etc/shoal/server.yaml] [flags]",
		Short: "run the control plane of a fleet: apps, their balancer, and the agents' server",
		Long: "Run shoal server from server.yaml: the admin API that shoal deploy and the other verbs call\n" +
			"(an app is created by its first deploy), the fleet port that agents join with a token\n" +
			"(shoal join-token) and talk to, and the balancer that routes each app's hosts to its\n" +
			"instances on the agents. Ctrl-C or SIGTERM stops serving.",
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			if wantsHelp(args) {
				c.Root().HelpFunc()(c, args) // cobra's part only
				return runServer(c.Context(), env, []string{"-h"})
			}
			return runServer(c.Context(), env, args)
		},
	}
	c.SetHelpFunc(daemonHelp(c, runServer))
	return c
}

// serverConfigFile is where `shoal server` reads server.yaml by default.
const serverConfigFile = "/etc/shoal/server.yaml"

// runServer is "shoal server": it runs daemon.Server from server.yaml until
// SIGTERM or SIGINT and prints one ready line.
func runServer(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("c", serverConfigFile, "server configuration `file`")
	logs := logFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: shoal server [-c /etc/shoal/server.yaml] [-log-format text|json] [-log-level info]")
		fs.PrintDefaults()
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("shoal server takes no arguments, got %q", fs.Arg(0))
	}
	log, err := logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	file, err := config.LoadServer(*cfgPath)
	if err != nil {
		return &UsageError{Err: err}
	}
	s, err := daemon.OpenServer(ctx, daemon.ServerOptions{Config: file, Logger: log,
		OnReady: func(r daemon.ServerReady) { printServerReady(env.Stdout, r) }})
	if err != nil {
		return daemonError(err)
	}
	if err := s.Run(ctx); err != nil {
		return daemonError(err)
	}
	fmt.Fprintln(env.Stdout, "shoal server: stopped")
	return nil
}

// printServerReady prints the one line that says where a started server
// serves, with the CA pin that clients of an https admin API check.
func printServerReady(w io.Writer, r daemon.ServerReady) {
	fmt.Fprintf(w, "shoal server ready: admin %s fleet %s balancer %s ca-pin %s", r.AdminURL, r.FleetURL, r.BalancerURL, r.CAPin)
	if r.BalancerTLSURL != "" {
		fmt.Fprintf(w, " tls %s", r.BalancerTLSURL)
	}
	fmt.Fprintln(w)
}
