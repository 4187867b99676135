package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/client"
)

// newDeployCmd is `shoal deploy [--config-only] [--wait] [--abort]`.
func newDeployCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy [--config-only] [--wait] [--abort]",
		Short: "build ./shoal.yaml's app here, upload it and roll the group to it",
		Long: `Loads ./shoal.yaml (or -c), resolves its environment here (run.env_from_host
from this shell's environment, the secrets file, the settings), builds the
artifact here unless its source is unchanged, uploads it unless the daemon
holds it already, and sends the rest; the daemon rolls the group to the new
release. The daemon never reads this folder. --config-only sends no artifact:
the release reuses the current one's.`,
		Args: noArgs,
	}
	af := addUpFlags(cmd.Flags())
	configOnly := cmd.Flags().Bool("config-only", false, "make a release from the current artifact, without building")
	wait := cmd.Flags().Bool("wait", false, "wait for a deploy in progress to end instead of failing")
	abort := cmd.Flags().Bool("abort", false, "stop the deploy in progress and return to the previous release")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		c, err := af.client()
		if err != nil {
			return err
		}
		if *abort {
			if err := c.AbortDeploy(ctx); err != nil {
				return apiErr(err)
			}
			fmt.Fprintln(env.Stdout, "deploy aborted: returning to the previous release (see shoal status)")
			return nil
		}
		by := os.Getenv("USER")
		if h, err := os.Hostname(); err == nil && by != "" {
			by += "@" + h
		}
		// What the release is made from is read here, never by the
		// daemon (deploy_build.go): shoal.yaml, the environment, the
		// artifact.
		opts, err := prepareDeploy(ctx, c, af.file, *configOnly, by, env.Stdout)
		if err != nil {
			return err
		}
		opts.Wait, opts.By = *wait, by
		pr := newProgressPrinter(env.Stdout)
		res, err := c.Deploy(ctx, opts, pr.line)
		return pr.finish("deploy", res, err)
	}
	return cmd
}

// newRollbackCmd is `shoal rollback [vN]`.
func newRollbackCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollback [vN]",
		Short: "roll the group back to an earlier release (default: the previous), without a build",
		Args:  maxArgs(1),
	}
	af := addUpFlags(cmd.Flags())
	cmd.ValidArgsFunction = completeFirstArg(af, releaseNames)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		version := 0
		if len(args) == 1 {
			v, err := parseVersion(args[0])
			if err != nil {
				return &UsageError{Err: err}
			}
			version = v
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		pr := newProgressPrinter(env.Stdout)
		res, err := c.Rollback(cmd.Context(), version, pr.line)
		return pr.finish("rollback", res, err)
	}
	return cmd
}

// parseVersion accepts "v3" or "3".
func parseVersion(s string) (int, error) {
	var v int
	if _, err := fmt.Sscanf(strings.TrimPrefix(s, "v"), "%d", &v); err != nil || v <= 0 || fmt.Sprint(v) != strings.TrimPrefix(s, "v") {
		return 0, fmt.Errorf("%q is not a release (v3 or 3)", s)
	}
	return v, nil
}

// progressPrinter prints a deploy stream: log lines as they come, and
// the rollout's progress (bar, per-instance states, elapsed time). On a
// terminal the progress line is redrawn in place as the clock runs; on
// anything else (a CI log, a pipe, a file) one line is printed per change
// of the rollout, never one per update of its elapsed time.
type progressPrinter struct {
	w   io.Writer
	tty bool
	// cols is the terminal's width; a redrawn line is cut to fit, since
	// a wrapped one cannot be redrawn in place. 0: unknown.
	cols int
	// last is the last progress printed, without its elapsed time.
	last string
	// open is true on a terminal while the cursor ends a redrawn progress
	// line, which the next log line or the result must end first.
	open bool
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	p := &progressPrinter{w: w, tty: isTerminal(w)}
	if f, ok := w.(*os.File); ok && p.tty {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			p.cols = int(ws.Col)
		}
	}
	return p
}

// isTerminal reports whether w is a terminal (a TCGETS ioctl works on it);
// a character device such as /dev/null is not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progressPrinter) line(l client.DeployLine) {
	switch {
	case l.Log != "":
		p.endLine()
		fmt.Fprintln(p.w, "  "+l.Log)
	case l.Progress != nil:
		s := renderProgress(l.Progress)
		if p.tty {
			if r := []rune(s); p.cols > 1 && len(r) >= p.cols {
				s = string(r[:p.cols-1])
			}
			fmt.Fprint(p.w, "\r\033[K"+s)
			p.open = true
			return
		}
		if key := progressKey(l.Progress); key != p.last {
			p.last = key
			fmt.Fprintln(p.w, s)
		}
	}
}

// endLine ends a progress line being redrawn on a terminal.
func (p *progressPrinter) endLine() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// progressKey is the progress without its elapsed time: what must change
// for a new line to be printed when the output is not a terminal.
func progressKey(pr *client.RolloutProgress) string {
	c := *pr
	c.Elapsed = 0
	return renderProgress(&c)
}

// renderProgress is one line such as
// "[#####-----] 2/4 v5 surging 12.3s | v4 a in_service, v5 b starting".
func renderProgress(pr *client.RolloutProgress) string {
	const width = 20
	filled := 0
	if pr.Total > 0 {
		filled = width * pr.Done / pr.Total
	}
	bar := strings.Repeat("#", filled) + strings.Repeat("-", width-filled)
	var ins []string
	for _, in := range pr.Instances {
		ins = append(ins, fmt.Sprintf("v%d %s %s", in.Release, shortID(in.ID), in.State))
	}
	return fmt.Sprintf("[%s] %d/%d v%d %s %5.1fs | %s", bar, pr.Done, pr.Total, pr.Target, pr.Phase,
		pr.Elapsed.Seconds(), strings.Join(ins, ", "))
}

// shortID drops the app and release prefix of an instance id.
func shortID(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// finish prints the result and returns the command's error: non-nil
// (exit 1) when the rollout did not end on the new release.
func (p *progressPrinter) finish(verb string, res *client.DeployResult, err error) error {
	p.endLine()
	if err != nil {
		if client.IsStatus(err, http.StatusBadRequest) {
			return &UsageError{Err: apiErr(err)}
		}
		return apiErr(err)
	}
	switch {
	case res.Unchanged:
		fmt.Fprintf(p.w, "%s: %s\n", verb, res.Error) // "nothing to deploy: v3 already runs ..."
		return nil
	case res.OK:
		fmt.Fprintf(p.w, "%s: v%d serves\n", verb, res.Version)
		return nil
	}
	if f := res.Final; f != nil {
		fmt.Fprintln(p.w, renderProgress(f))
		if f.Failure != nil {
			fmt.Fprintf(p.w, "failing instance: %s (v%d)\nhealth/exit reason: %s\n", f.Failure.InstanceID, f.Failure.Release, f.Failure.Reason)
		}
	}
	if len(res.Logs) > 0 {
		fmt.Fprintln(p.w, "last log lines of the failing instance:")
		for _, l := range res.Logs {
			fmt.Fprintln(p.w, "  | "+l)
		}
	}
	return errors.New(res.Error)
}
