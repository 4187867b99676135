// Package hooks runs an app's pre- and post-deploy hook commands (a
// database migration, a cache warm-up, a chat notification) and streams
// their output. A hook is a shell command run with sh -c in its own
// process group: on timeout or cancellation the whole group gets SIGTERM,
// then SIGKILL after a grace, so nothing a hook started outlives it. What
// it left running after it exited is stopped the same way. Every output
// line goes through a redaction function before it is written or kept, so
// secrets in the hook's environment never reach the deploy's output,
// events or errors.
//
// The controller decides when hooks run and what a failure means (a
// failing pre-deploy hook stops the deploy); this package only runs them.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Defaults for a Hook's zero fields.
const (
	DefaultTimeout   = 10 * time.Minute
	DefaultKillGrace = 5 * time.Second
	DefaultTailLines = 20
)

// ErrTimeout is wrapped by a *[HookError] when the hook ran past its
// Timeout.
var ErrTimeout = errors.New("hook timed out")

// Hook is one command to run.
type Hook struct {
	// Name identifies the hook in output lines ("[migrate] ...") and
	// errors. Empty means "hook".
	Name string
	// Command is run with /bin/sh -c. Required.
	Command string
	// Dir is the working directory; empty means the current one.
	Dir string
	// Env is the hook's whole environment, as exec.Cmd.Env: nil means
	// Shoal's own environment.
	Env []string
	// Timeout bounds the run; zero means DefaultTimeout (10m). When it
	// passes, the process group is stopped and Run returns a *HookError
	// wrapping ErrTimeout.
	Timeout time.Duration
	// KillGrace is how long the process group has between SIGTERM and
	// SIGKILL; zero means DefaultKillGrace (5s).
	KillGrace time.Duration
	// Redact is applied to every output line before it is written to
	// out or kept for the error's tail; nil means lines are used as they
	// are. It must replace every secret value of Env.
	Redact func(string) string
	// TailLines is how many last output lines a *HookError keeps; zero
	// means DefaultTailLines (20).
	TailLines int
}

// HookError is returned by [Run] when a hook did not succeed: it exited
// non-zero, was killed, timed out or was cancelled.
type HookError struct {
	Name string
	// ExitCode is the shell's exit code, or -1 if it was ended by a
	// signal (including Shoal's own, on timeout or cancellation).
	ExitCode int
	// Tail is the last output lines, redacted, oldest first.
	Tail []string
	// Err is the cause: an *exec.ExitError, ErrTimeout, or the context's
	// cause on cancellation.
	Err error
}

// Error says which hook failed and why, with its last output line.
func (e *HookError) Error() string {
	msg := fmt.Sprintf("hook %q: %v", e.Name, e.Err)
	if n := len(e.Tail); n > 0 {
		msg += fmt.Sprintf("; last output: %q", e.Tail[n-1])
	}
	return msg
}

// Unwrap returns Err.
func (e *HookError) Unwrap() error { return e.Err }

// Run runs h to completion and returns nil if it exited with code 0. It
// writes the hook's stdout and stderr, merged in the order written, to out
// as they come, one "[name] line\n" per line (nil out discards them; write
// errors are ignored so the hook never blocks on a gone reader). It
// blocks until the hook and everything left in its process group have
// ended and all output is written. A failure of the hook is a
// *[HookError]; an error starting it is returned wrapped.
func Run(ctx context.Context, h Hook, out io.Writer) error {
	if h.Command == "" {
		return errors.New("run hook: empty command")
	}
	h = withDefaults(h)
	if out == nil {
		out = io.Discard
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("run hook %q: %w", h.Name, err)
	}
	cmd := exec.Command("/bin/sh", "-c", h.Command)
	cmd.Dir, cmd.Env = h.Dir, h.Env
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close() // the child has its copy; EOF comes when every holder exits
	if err != nil {
		pr.Close()
		return fmt.Errorf("run hook %q: %w", h.Name, err)
	}
	group := processGroup(cmd.Process.Pid)

	lines := newLineWriter(out, "["+h.Name+"] ", h.Redact, h.TailLines)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		lines.copyFrom(pr)
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	tctx, cancel := context.WithTimeoutCause(ctx, h.Timeout, fmt.Errorf("%w after %s", ErrTimeout, h.Timeout))
	defer cancel()
	var waitErr, cause error
	select {
	case waitErr = <-waitDone:
	case <-tctx.Done():
		cause = context.Cause(tctx)
		group.signal(syscall.SIGTERM)
		grace := time.NewTimer(h.KillGrace)
		select {
		case waitErr = <-waitDone:
		case <-grace.C:
			group.signal(syscall.SIGKILL)
			waitErr = <-waitDone
		}
		grace.Stop()
	}
	// The shell is gone. Whatever it left in its group is stopped too, so
	// that the output pipe closes and nothing outlives the hook.
	group.stop(h.KillGrace)
	select {
	case <-readDone:
	case <-time.After(h.KillGrace):
		// A process that left the group (setsid) still holds the pipe:
		// stop reading.
		pr.Close()
		<-readDone
	}
	pr.Close()

	if cause == nil && waitErr == nil {
		return nil
	}
	herr := &HookError{Name: h.Name, ExitCode: -1, Tail: lines.tail(), Err: waitErr}
	var exit *exec.ExitError
	if errors.As(waitErr, &exit) {
		herr.ExitCode = exit.ExitCode()
	}
	if cause != nil {
		herr.Err = cause
		if !errors.Is(cause, ErrTimeout) {
			herr.Err = fmt.Errorf("cancelled: %w", cause)
		}
	}
	return herr
}

// RunAll runs hooks one after the other and stops at the first failure,
// which it returns.
func RunAll(ctx context.Context, hooks []Hook, out io.Writer) error {
	for _, h := range hooks {
		if err := Run(ctx, h, out); err != nil {
			return err
		}
	}
	return nil
}

func withDefaults(h Hook) Hook {
	if h.Name == "" {
		h.Name = "hook"
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultTimeout
	}
	if h.KillGrace <= 0 {
		h.KillGrace = DefaultKillGrace
	}
	if h.TailLines <= 0 {
		h.TailLines = DefaultTailLines
	}
	return h
}

// processGroup is the process group a hook's shell leads.
type processGroup int

func (g processGroup) signal(sig syscall.Signal) { _ = syscall.Kill(-int(g), sig) }

// alive reports whether any process of the group still runs. Zombies do
// not count: once our shell is reaped, its orphans belong to init, which
// in a container may never reap them.
func (g processGroup) alive() bool {
	if syscall.Kill(-int(g), 0) != nil {
		return false
	}
	running, err := runningInGroup(int(g))
	return err != nil || running
}

// stop ends every process left in the group: SIGTERM, then SIGKILL if any
// is still there after grace. It polls for the group's end (its members
// are not our children, so there is nothing to wait on); the poll is
// bounded by grace.
func (g processGroup) stop(grace time.Duration) {
	if !g.alive() {
		return
	}
	g.signal(syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for g.alive() {
		select {
		case <-tick.C:
		case <-deadline.C:
			g.signal(syscall.SIGKILL)
			return
		}
	}
}
