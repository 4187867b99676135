// Package cli implements the shoal subcommands: it parses arguments, calls
// the daemons or the admin API client, and prints. It holds no business
// logic.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Exit statuses. Only main calls os.Exit.
const (
	ExitOK      = 0
	ExitFailure = 1 // runtime error
	ExitUsage   = 2 // usage or configuration error
)

// UsageError marks an error as the caller's fault (bad flags, bad config):
// Run exits with ExitUsage for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// usagef returns a *UsageError.
func usagef(format string, a ...any) error {
	return &UsageError{Err: fmt.Errorf(format, a...)}
}

// Env is what every subcommand gets.
type Env struct {
	Stdout, Stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// commands is the table of subcommands. Each lives in its own file.
func commands() map[string]command {
	return map[string]command{
		"lb":          {"run a load balancer from a static file (lb.yaml); 'shoal lb status' shows it", runLB},
		"up":          {"build and run the app of ./shoal.yaml on this machine behind the balancer", runUp},
		"init":        {"write a commented starter shoal.yaml for the app in this folder", runInit},
		"status":      {"show the group, its release and its instances", runStatus},
		"scale":       {"set the desired instance count: shoal scale N", runScale},
		"autoscale":   {"show auto scaling, or pause or resume it: shoal autoscale [status|pause|resume]", runAutoscale},
		"events":      {"show recent events with their reasons", runEvents},
		"releases":    {"list releases", runReleases},
		"deploy":      {"roll the group to a new release of ./shoal.yaml's app: shoal deploy [--config-only] [--wait] [--abort]", runDeploy},
		"rollback":    {"roll the group back to an earlier release, without a build: shoal rollback [vN]", runRollback},
		"env":         {"env overrides, each change a config-only release: shoal env list | set [--secret] K=V | unset K", runEnv},
		"maintenance": {"make the balancer answer 503 with Retry-After: shoal maintenance on|off", runMaintenance},
		"logs":        {"show an instance's log: shoal logs [-f] [instance]", runLogs},
		"version":     {"print the version", runVersion},
		"backup":      {"write a verified copy of the store: shoal backup [-o FILE]", runBackup},
		"restore":     {"replace the store with a backup, while shoal up is stopped: shoal restore FILE", runRestore},
	}
}

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

func runVersion(_ context.Context, env *Env, _ []string) error {
	fmt.Fprintln(env.Stdout, "shoal", Version)
	return nil
}

// Run executes one shoal command line and returns the process exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &Env{Stdout: stdout, Stderr: stderr}
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "shoal: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return ExitUsage
	}
	err := c.run(ctx, env, args[1:])
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "shoal %s: %v\n", args[0], err)
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitFailure
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: shoal <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
}
