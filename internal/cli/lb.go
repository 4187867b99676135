package cli

import (
	"context"
	"fmt"
	"net"
	"strings"

	"flag"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/daemon"
)

// runLB is "shoal lb": with a subcommand it talks to a running balancer
// (see lbctl.go); otherwise it runs one from lb.yaml (daemon.LB).
func runLB(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		if sub, ok := lbSubcommands()[args[0]]; ok {
			return sub.run(ctx, env, args[1:])
		}
	}
	fs := flag.NewFlagSet("lb", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("c", "lb.yaml", "balancer configuration `file`")
	logs := logFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: shoal lb [-c lb.yaml] [-log-format text|json] [-log-level info]")
		fmt.Fprintln(env.Stderr, "       shoal lb <status|add|remove|drain|undrain|weight|reload|maintenance|check> ... (shoal lb <cmd> -h)")
		fs.PrintDefaults()
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unknown lb command %q", fs.Arg(0))
	}
	log, err := logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	file, err := config.LoadLB(*cfgPath)
	if err != nil {
		return &UsageError{Err: err}
	}
	d, err := daemon.OpenLB(daemon.LBOptions{Path: *cfgPath, File: file, Logger: log, Context: ctx})
	if err != nil {
		return daemonError(err)
	}
	return daemonError(d.Run(ctx))
}

// adminURL turns an admin listen address into a base URL. A Unix socket
// ("unix:/path") is kept as is: package client dials it.
func adminURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return "http://" + addr
}
