// Package cli implements the shoal subcommands on spf13/cobra: it parses
// arguments, calls the daemons or the admin API client, and prints. It
// holds no business logic.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/buildinfo"
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

// command is a subcommand run from its raw arguments: the table of the
// "shoal lb" client verbs that runLB dispatches to (lbctl.go).
type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// Version, when set at build time with -ldflags "-X ...cli.Version=...",
// overrides the module version that `shoal version` and the
// shoal_build_info metric report (buildinfo.Version does the same).
var Version string

// exitCodes is the part of `shoal --help` that documents the exit status.
const exitCodes = `Exit status: 0 success, 1 failure (the command ran and did not succeed),
2 usage or configuration error (unknown verb or flag, bad argument, invalid shoal.yaml or lb.yaml).

Environment: SHOAL_ADMIN_URL and SHOAL_TOKEN (the admin token itself) point the
client verbs at an admin API without a shoal.yaml or token file, for CI;
--admin and --token-file win over them.
`

// newRoot builds the command tree. Each verb lives in its own file.
func newRoot(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "shoal",
		Short: "run a web app on plain Linux servers, behind its own load balancer",
		Long: "Shoal builds an app, runs its instances on this machine behind a load balancer\n" +
			"(shoal up), rolls out releases (shoal deploy), and runs a standalone balancer (shoal lb).\n\n" +
			exitCodes,
		Version:       buildInfo().String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// Suggest verbs within two edits of a mistyped one.
		SuggestionsMinimumDistance: 2,
		// An argument that names no verb is a usage error (exit 2);
		// without any, the usage goes to stderr and the exit is 2 too.
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
			}
			return &UsageError{Err: errors.New(msg)}
		},
		RunE: func(c *cobra.Command, _ []string) error {
			c.SetOut(env.Stderr)
			c.Usage()
			return &UsageError{Err: errUsageShown}
		},
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetVersionTemplate("shoal {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &UsageError{Err: fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.SetHelpCommand(newHelpCmd())
	root.AddCommand(
		newUpCmd(env),
		newLBCmd(env),
		newAgentCmd(env),
		newServerCmd(env),
		newJoinTokenCmd(env),
		newHostsCmd(env),
		newServersCmd(env),
		newAppsCmd(env),
		newInitCmd(env),
		newImportCmd(env),
		newStatusCmd(env),
		newScaleCmd(env),
		newAutoscaleCmd(env),
		newEventsCmd(env),
		newReleasesCmd(env),
		newDeployCmd(env),
		newRollbackCmd(env),
		newEnvCmd(env),
		newMaintenanceCmd(env),
		newLogsCmd(env),
		newVersionCmd(env),
		newBackupCmd(env),
		newRestoreCmd(env),
		newSetupCmd(env),
	)
	return root
}

// newHelpCmd is `shoal help [VERB...]`: cobra's, except that a topic that
// names no command is a usage error (exit 2), not the root's help.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usagef("unknown help topic %q (shoal --help lists the commands)", strings.Join(args, " "))
			}
			return cmd.Help()
		},
	}
}

// errUsageShown is returned after the usage was printed: Run then only
// sets the exit status.
var errUsageShown = errors.New("usage shown")

// buildInfo is buildinfo.Read with cli.Version as an override.
func buildInfo() buildinfo.Info {
	in := buildinfo.Read()
	if Version != "" {
		in.Version = Version
	}
	return in
}

func newVersionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, VCS commit and Go version of this binary",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(env.Stdout, "shoal", buildInfo())
			return nil
		},
	}
}

// Run executes one shoal command line and returns the process exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &Env{Stdout: stdout, Stderr: stderr}
	path, err := execute(ctx, env, args)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp): // a daemon's flag set printed its help
		return ExitOK
	case !errors.Is(err, errUsageShown):
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitFailure
}

// execute runs args through the command tree and returns the path of the
// command that ran ("shoal lb add") with its error.
func execute(ctx context.Context, env *Env, args []string) (string, error) {
	root := newRoot(env)
	if c, _, err := root.Find(args); err == nil {
		args = oneDashLongFlags(c, args)
	}
	root.SetArgs(args)
	c, err := root.ExecuteContextC(ctx)
	if c == nil {
		c = root
	}
	return c.CommandPath(), err
}

// oneDashLongFlags rewrites "-name" and "-name=value" to "--name..." when
// name is a long flag of c: before cobra, shoal parsed its flags with the
// flag package, which takes one dash or two, and the scripts written then
// (shoal releases -json, shoal lb drain -wait ...) keep working. Shorthands
// (-c, -n 5, -f) and everything after "--" are left alone.
func oneDashLongFlags(c *cobra.Command, args []string) []string {
	if c.DisableFlagParsing {
		return args
	}
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) < 2 {
			continue
		}
		if name == "help" || c.Flags().Lookup(name) != nil || c.InheritedFlags().Lookup(name) != nil {
			out[i] = "-" + a
		}
	}
	return out
}

// wantsHelp reports whether raw arguments (of a verb that parses its own
// flags) ask for help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// Argument checks that return usage errors (exit 2).

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (usage: %s)", args[0], c.UseLine())
	}
	return nil
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("unexpected argument %q (usage: %s)", args[n], c.UseLine())
		}
		return nil
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %d argument(s), got %d (usage: %s)", n, len(args), c.UseLine())
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("want at least %d argument(s) (usage: %s)", n, c.UseLine())
		}
		return nil
	}
}
