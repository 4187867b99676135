package cli

import (
	"context"
	"fmt"

	"flag"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/daemon"
)

// runAgent is "shoal agent": it runs the host agent of a fleet from
// agent.yaml (daemon.Agent) until SIGTERM or SIGINT, which leave the
// instances running.
func runAgent(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("c", "/etc/shoal/agent.yaml", "agent configuration `file`")
	logs := logFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: shoal agent [-c /etc/shoal/agent.yaml] [-log-format text|json] [-log-level info]")
		fs.PrintDefaults()
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("shoal agent takes no arguments, got %q", fs.Arg(0))
	}
	log, err := logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	file, err := config.LoadAgent(*cfgPath)
	if err != nil {
		return &UsageError{Err: err}
	}
	d, err := daemon.OpenAgent(ctx, file, log)
	if err != nil {
		return daemonError(err)
	}
	return daemonError(d.Run(ctx))
}
