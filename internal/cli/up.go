package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/daemon"
)

// Files under the data directory that belong to `shoal up` (package
// daemon owns them; the client verbs read them).
const (
	storeFile    = daemon.StoreFile
	adminURLFile = daemon.AdminURLFile
)

// runUp is `shoal up [-c shoal.yaml]`: it loads shoal.yaml, runs
// daemon.Up until ctx ends and prints where the app serves.
func runUp(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	file := fs.String("c", config.AppFileName, "the app's configuration `file`")
	logs := logFlags(fs)
	verbose := fs.Bool("v", false, "log debug detail (the same as -log-level debug)")
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: shoal up [-c shoal.yaml] [-log-format text|json] [-log-level info] [-v]")
		fs.PrintDefaults()
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *verbose {
		logs.level = "debug"
	}
	log, err := logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	cfg, err := loadAppConfig(*file)
	if err != nil {
		return err
	}
	u, err := daemon.OpenUp(ctx, daemon.UpOptions{Config: cfg, Logger: log, Console: env.Stderr,
		OnReady: func(r daemon.Ready) { printReady(env.Stdout, r) }})
	if err != nil {
		return daemonError(err)
	}
	if err := u.Run(ctx); err != nil {
		return daemonError(err)
	}
	fmt.Fprintln(env.Stdout, "shoal up: stopped")
	return nil
}

// printReady prints where a started `shoal up` serves.
func printReady(w io.Writer, r daemon.Ready) {
	fmt.Fprintf(w, "shoal up: app %s release v%d serving on %s (admin %s)\n", r.App, r.Release, r.BalancerURL, r.AdminURL)
	fmt.Fprintf(w, "shoal up: dashboard %s/ui/\n", r.AdminURL)
	for _, note := range r.Notes { // the app folder differs from the resumed release
		fmt.Fprintf(w, "shoal up: %s\n", note)
	}
}

// logOptions are the logging flags `shoal up` and `shoal lb` share.
type logOptions struct{ format, level string }

// logFlags defines -log-format and -log-level on fs.
func logFlags(fs *flag.FlagSet) *logOptions {
	o := &logOptions{}
	fs.StringVar(&o.format, "log-format", daemon.LogFormatText, "log format on stderr: text or json")
	fs.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn or error")
	return o
}

// logger builds the daemon's logger; a bad flag value is a usage error.
func (o *logOptions) logger(w io.Writer) (*slog.Logger, error) {
	log, err := daemon.NewLogger(w, o.format, o.level)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	return log, nil
}

// parseFlags parses args. After -h or --help, which print the usage, it
// reports help: the command then ends with success (exit 0). Other
// problems are usage errors.
func parseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return true, nil
	}
	if err != nil {
		return false, &UsageError{Err: err}
	}
	return false, nil
}

// loadAppConfig loads shoal.yaml; any problem with it is a usage error
// (exit 2), reported with file:line:column.
func loadAppConfig(path string) (*config.App, error) {
	cfg, err := config.Load(path)
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			return nil, &UsageError{Err: fmt.Errorf("invalid configuration:\n%w", err)}
		}
		return nil, &UsageError{Err: err}
	}
	return cfg, nil
}

// daemonError turns a configuration the daemon rejects into a usage error
// (exit 2); other errors are failures (exit 1).
func daemonError(err error) error {
	var ce *daemon.ConfigError
	if errors.As(err, &ce) {
		return &UsageError{Err: err}
	}
	return err
}
