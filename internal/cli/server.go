package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

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
	var join []string
	fs.Func("join", "join the cluster whose server has this admin `URL` at the first start (repeat for several; server.yaml's cluster.join)", func(u string) error {
		join = append(join, strings.TrimSuffix(u, "/"))
		return nil
	})
	joinToken := fs.String("join-token-file", "", "`file` holding the cluster's admin token, for --join (cluster.join_token_file)")
	caPin := fs.String("ca-pin", "", "the cluster's CA `pin` (sha256:...), for an https --join URL (cluster.join_ca_pin)")
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: shoal server [-c /etc/shoal/server.yaml] [--join URL --join-token-file FILE [--ca-pin sha256:...]] [-log-format text|json] [-log-level info]")
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
	if err := setJoin(file, join, *joinToken, *caPin); err != nil {
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

// setJoin applies --join, --join-token-file and --ca-pin over server.yaml's
// cluster section (a flag given replaces its key) and checks the result.
func setJoin(file *config.ServerFile, join []string, tokenFile, pin string) error {
	if len(join) == 0 && tokenFile == "" && pin == "" {
		return nil
	}
	c := file.Cluster
	if c == nil {
		return fmt.Errorf("--join: %s has no cluster section: set cluster.id and cluster.listen for this server", file.File)
	}
	if len(join) > 0 {
		c.Join = join
	}
	if tokenFile != "" {
		abs, err := filepath.Abs(tokenFile)
		if err != nil {
			return fmt.Errorf("--join-token-file: %w", err)
		}
		c.JoinTokenFile = abs
	}
	if pin != "" {
		c.JoinCAPin = pin
	}
	var msgs []string
	for _, p := range c.CheckJoin() {
		p.File = file.File + " with the command line's --join flags"
		msgs = append(msgs, p.String())
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "\n"))
	}
	return nil
}
